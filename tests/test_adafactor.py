"""AdaFactor against MindSpore 2.10 (CPU) trajectories in tests/fixtures/adafactor
(scripts/mindspore_fixtures/family.py): relative steps, warmup, scale_parameter, fixed lr, beta1, weight decay,
clip_threshold, decay_rate, the eps pair, compression, an ignored loss_scale and parameter groups, on a 4-D conv
weight and a 2-D dense weight (factored second moments) and vectors (full second moments)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths

import jaxopt_ms
from jaxopt_ms.transforms import AdaFactorState, ScaleByFactoredRmsState, scale_by_factored_rms


@pytest.mark.parametrize("path", fixture_params("adafactor"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(case_paths("adafactor")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("adafactor")[-1], in_chain=True)


def _state(opt, params):
    return next(s for s in jax.tree.leaves(opt.init(params), is_leaf=lambda x: isinstance(x, AdaFactorState))
                if isinstance(s, AdaFactorState))


def test_state_shapes_and_compression_dtype_are_mindspore_s():
    params = {"w": jnp.ones((2, 3, 4)), "b": jnp.ones(4)}
    state = _state(jaxopt_ms.adafactor(compression=True), params)
    assert state.exp_avg_sq_row["w"].shape == (2, 3) and state.exp_avg_sq_col["w"].shape == (2, 4)
    assert state.exp_avg_sq["w"].shape == (1,) and state.exp_avg_sq_row["b"].shape == (1,)
    assert state.exp_avg_sq["b"].dtype == jnp.float16 and state.exp_avg["b"].dtype == jnp.float32
    assert _state(jaxopt_ms.adafactor(beta1=None), params).exp_avg is None


def test_current_lr_reports_the_relative_step():
    opt = jaxopt_ms.adafactor(warmup_init=True)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    for step in range(1, 4):
        np.testing.assert_allclose(jaxopt_ms.current_lr(state), min(1e-6 * step, 1 / np.sqrt(step)), rtol=1e-6)
        _, state = opt.update(params, state, params)


def test_factored_rms_block_alone():
    rng = np.random.RandomState(0)
    g = rng.randn(3, 4).astype(np.float32)
    opt = scale_by_factored_rms(decay_rate=0.8, eps=1e-30)
    d, state = opt.update({"w": jnp.asarray(g)}, opt.init({"w": jnp.zeros((3, 4))}))
    # step 1: beta2t = 0, so row = mean(g², -1) and col = mean(g², -2)
    row, col = (g * g).mean(-1), (g * g).mean(-2)
    expected = g / np.sqrt(row / row.mean())[:, None] / np.sqrt(col)[None, :]
    assert isinstance(state, ScaleByFactoredRmsState)
    np.testing.assert_allclose(d["w"], expected, rtol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(learning_rate=0.1), ValueError, r"'learning_rate' \(0\.1\).*'relative_step'"),
    (dict(relative_step=False), ValueError, r"'learning_rate' is None"),
    (dict(learning_rate=0.1, relative_step=False, warmup_init=True), ValueError, r"'warmup_init'"),
    (dict(eps=1e-30), TypeError, r"'eps'.*float"),
    (dict(eps=(1e-30, 1e-3, 1.0)), ValueError, r"'eps'.*1\.0"),
    (dict(eps=(1e-30, 1)), TypeError, r"'eps1'.*int"),
    (dict(eps=(-1e-30, 1e-3)), ValueError, r"'eps0'.*-1e-30"),
    (dict(clip_threshold=1), TypeError, r"'clip_threshold'.*int"),
    (dict(decay_rate=1.0), ValueError, r"'decay_rate'.*1\.0"),
    (dict(decay_rate=1), TypeError, r"'decay_rate'.*int"),
    (dict(weight_decay=0), TypeError, r"'weight_decay'.*int"),
    (dict(weight_decay=1.0), ValueError, r"'weight_decay'.*1\.0"),
    (dict(beta1=-0.1), ValueError, r"'beta1'.*-0\.1"),
    (dict(beta1="0.9"), TypeError, r"'beta1'.*str"),
    (dict(scale_parameter=1), TypeError, r"'scale_parameter'.*int"),
    (dict(compression=None), TypeError, r"'compression'.*NoneType"),
    (dict(loss_scale=0.0), ValueError, r"'loss_scale'.*0\.0"),
    (dict(learning_rate=0.1, relative_step=False, param_groups=[{"params": "w", "lr": 0.05}]), ValueError,
     r"'lr' 0\.05"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.adafactor(**kwargs)


def test_group_lr_is_ignored_with_relative_step_as_mindspore():
    # MindSpore accepts a group 'lr' with relative_step=True and replaces every rate by the relative step
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    grads = {"w": jnp.full((2, 3), 0.5), "b": jnp.full(3, -0.25)}
    with_lr = jaxopt_ms.adafactor(param_groups=[{"params": "w", "lr": 0.5}, {"params": "b"}])
    without = jaxopt_ms.adafactor(param_groups=[{"params": "w"}, {"params": "b"}])
    got, _ = with_lr.update(grads, with_lr.init(params), params)
    want, _ = without.update(grads, without.init(params), params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g, w)


def test_beta1_accepts_int_and_none_as_mindspore():
    jaxopt_ms.adafactor(beta1=0)
    jaxopt_ms.adafactor(beta1=None)


def test_state_can_be_donated():
    # every placeholder of the state is an array of its own: XLA refuses to donate one buffer twice
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3), "c": jnp.ones(2)}
    opt = jaxopt_ms.adafactor()
    step = jax.jit(lambda p, s: opt.update(p, s, p), donate_argnums=(1,))
    updates, state = step(params, opt.init(params))
    updates, state = step(params, state)
    assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))


def test_fused_needs_its_own_partition():
    # packed without adafactor's partition a factored leaf would share a buffer: refused, not updated unfactored
    from jaxopt_ms import fused

    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    flat = fused.flatten(params)
    with pytest.raises(ValueError, match="factored"):
        jaxopt_ms.transforms.apply_adafactor(0.01).init(flat)
    with pytest.raises(ValueError, match="opt.flatten"):
        fused.fuse(jaxopt_ms.adafactor()).init(flat)
    packed = fused.fuse(jaxopt_ms.adafactor()).flatten(params)
    assert sorted(b.shape for b in packed.buffers) == [(3,), (12,)]


# ---------------------------------------------------------------------------------------------------------------
# scale_parameter and the form of the learning rate (tests/fixtures/adafactor_lr_forms, from
# scripts/mindspore_fixtures/adafactor_lr_forms.py): MindSpore keeps it only for a Python number; jaxopt_ms also for a
# 0-d JAX array (optax.inject_hyperparams's float) and turns it off for every other array, NumPy scalars included.

def _spellings(form: str, tagged):
    """Every JAX spelling of the MindSpore learning rate of case ``form``."""
    from fixture_replay import ADAFACTOR_FORMS, PER_STEP_FORMS, respell

    if form in ("float", "int", "numpy_float64"):
        return {"python": tagged, "numpy_float64": np.float64(tagged),
                **{f: respell(tagged, f) for f in ADAFACTOR_FORMS["number"]}}
    if form == "tensor_0d":
        return {f: respell(tagged, f) for f in ADAFACTOR_FORMS["tensor"]}
    if form in ("tensor_1d", "list"):
        return {f: respell(tagged, f) for f in PER_STEP_FORMS}
    return {"schedule": respell(tagged, "as_is")}


LR_FORM_PATHS = fixture_params("adafactor_lr_forms")


@pytest.mark.parametrize("path", LR_FORM_PATHS)
def test_scale_parameter_follows_the_learning_rate_form_as_mindspore(path):
    from parity import assert_trajectory, load_case, run_trajectory

    case = load_case(path)
    form, kwargs = case.config["form"], case.config["kwargs"]
    assert case.config["scale_parameter_kept"] == (form in ("float", "int", "numpy_float64"))  # MindSpore's rule
    for spelling, lr in _spellings(form, kwargs["learning_rate"]).items():
        opt = jaxopt_ms.adafactor(**{**kwargs, "learning_rate": lr})
        got = run_trajectory(opt, case.params0, case.grads, jit=False)
        assert_trajectory(got, case.traj, rtol=1e-5, atol=1e-6, label=f"{case.name} as {spelling}")


def test_inject_hyperparams_keeps_a_float_learning_rate_meaning():
    """optax.inject_hyperparams passes the float as a 0-d JAX array: scale_parameter stays on (MindSpore's float);
    with scale_parameter=False it follows MindSpore's 0-d Tensor."""
    import optax
    from parity import assert_trajectory, load_case, run_trajectory

    for name, extra in (("float", {}), ("tensor_0d", {"scale_parameter": False})):
        (path,) = [p for p in case_paths("adafactor_lr_forms") if p.endswith(f"{name}.npz")]
        case = load_case(path)
        kwargs = {**case.config["kwargs"], **extra}
        kwargs["learning_rate"] = float(np.asarray(kwargs["learning_rate"]["array"] if isinstance(
            kwargs["learning_rate"], dict) else kwargs["learning_rate"]))
        got = run_trajectory(optax.inject_hyperparams(jaxopt_ms.adafactor)(**kwargs), case.params0, case.grads)
        assert_trajectory(got, case.traj, rtol=1e-5, atol=1e-6, label=f"{name} under inject_hyperparams")
