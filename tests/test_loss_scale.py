"""jaxopt_ms.loss_scale against MindSpore 2.10 (fixtures: scripts/mindspore_fixtures/loss_scale.py).

The scale trajectories come from MindSpore's standalone ``DynamicLossScaleUpdateCell``. Its training cell
(``TrainOneStepWithLossScaleCell``) does not run on CPU, so the ``train_*`` fixtures compose the same step from
MindSpore's pieces (reciprocal unscale, ``amp.all_finite``, the update cell, the optimizer called only when finite).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_zoo import IDS, OPTIMIZERS
from parity import assert_trajectory, case_paths, load_case, run_final

import jaxopt_ms
from jaxopt_ms import loss_scale, schedules
from jaxopt_ms.transforms.adam import ScaleByAdamState

CASES = {c.name: c for c in (load_case(p) for p in case_paths("loss_scale"))}
SCALE_CASES = [c for c in CASES.values() if c.config["kind"] == "scale"]
ERRORS = {"TypeError": TypeError, "ValueError": ValueError}


def _adam_state(state):
    return [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScaleByAdamState))
            if isinstance(x, ScaleByAdamState)][0]


@pytest.mark.parametrize("case", SCALE_CASES, ids=lambda c: c.name)
def test_scale_trajectory_matches_dynamic_loss_scale_update_cell(case):
    cfg = case.config
    opt = loss_scale.dynamic_loss_scale(optax.identity(), cfg["init_loss_scale"], cfg["scale_factor"],
                                        cfg["scale_window"])
    params = {"w": jnp.zeros(3)}
    update = jax.jit(opt.update)

    def scan_step(state, flag):
        grads = {"w": jnp.array([1.0, 2.0, 3.0]).at[1].set(jnp.where(flag, jnp.inf, 2.0))}
        _, state = opt.update(grads, state, params)
        return state, loss_scale.loss_scale_value(state)

    state, scales = jax.jit(lambda s, f: jax.lax.scan(scan_step, s, f))(opt.init(params), case.extra["overflow"])
    np.testing.assert_array_equal(scales, case.extra["scale"])
    assert int(state.cur_iter) == int(case.extra["cur_iter"])
    assert int(state.last_overflow_iter) == int(case.extra["last_overflow_iter"])
    # The same, one jitted update at a time, with a NaN for the overflow.
    state = opt.init(params)
    for k, flag in enumerate(case.extra["overflow"][:30]):
        _, state = update({"w": jnp.array([1.0, np.nan if flag else 2.0, 3.0])}, state, params)
        assert bool(state.overflow) == bool(flag)
        assert np.float32(loss_scale.loss_scale_value(state)) == case.extra["scale"][k]


def test_mindspores_three_dynamic_scalers_agree_only_for_power_of_two_factors():
    # A MindSpore finding the port documents: the update cell multiplies by f32(1/factor); amp.DynamicLossScaler
    # divides and the Python manager works in float64, so they drift apart for factor 3 (the cell is reference).
    for case in SCALE_CASES:
        power_of_two = float(case.config["scale_factor"]) == 2.0
        same_manager = np.array_equal(case.extra["scale_manager"].astype(np.float32), case.extra["scale"])
        assert same_manager == power_of_two or case.config["scale_window"] == 1
    assert not np.array_equal(CASES["scale_3"].extra["scale_amp"], CASES["scale_3"].extra["scale"])


def _replay(opt, case):
    params, state = case.params0, opt.init(case.params0)
    update = jax.jit(opt.update)
    traj, scales, flags = [], [], []
    for g in case.grads:
        scales.append(np.float32(loss_scale.loss_scale_value(state)))
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        flags.append(bool(state.overflow))
        traj.append(jax.tree.map(np.asarray, params))
    return traj, np.array(scales), np.array(flags), state


def test_dynamic_loss_scale_adam_matches_mindspores_loss_scaled_step():
    case = CASES["train_dynamic_adam"]
    cfg = case.config
    opt = loss_scale.dynamic_loss_scale(jaxopt_ms.adam(**cfg["args"]), cfg["init_loss_scale"], cfg["scale_factor"],
                                        cfg["scale_window"])
    traj, scales, flags, state = _replay(opt, case)
    np.testing.assert_array_equal(flags, case.extra["overflow"])
    np.testing.assert_array_equal(scales, case.extra["scale_used"])
    assert_trajectory(traj, case.traj, label=case.name)
    good = int(np.sum(~case.extra["overflow"]))
    assert good == cfg["global_step"]
    # Skipped steps did not advance Adam's beta powers (running float32 products over the good steps only).
    adam = _adam_state(state)
    b1p = np.float32(1.0)
    for _ in range(good):
        b1p = np.float32(b1p * np.float32(0.9))
    assert np.float32(adam.beta1_power) == b1p


def test_fixed_loss_scale_with_schedule_matches_mindspore_and_skips_the_schedule():
    case = CASES["train_fixed_momentum_schedule"]
    sched = schedules.exponential_decay(**case.config["schedule"])
    opt = loss_scale.fixed_loss_scale(jaxopt_ms.momentum(sched, **case.config["args"]), case.config["init_loss_scale"])
    traj, scales, flags, state = _replay(opt, case)
    np.testing.assert_array_equal(flags, case.extra["overflow"])
    assert np.all(scales == np.float32(128.0))
    assert_trajectory(traj, case.traj, label=case.name)
    good = int(np.sum(~case.extra["overflow"]))
    np.testing.assert_array_equal(jaxopt_ms.current_lr(state), sched(good))


def test_fixed_loss_scale_without_drop_is_mindspores_trainonestepcell_with_sens():
    case = CASES["fixed_no_drop"]
    inner = jaxopt_ms.momentum(**case.config["args"])  # built with loss_scale=128, as MindSpore requires
    opt = loss_scale.fixed_loss_scale(inner, case.config["loss_scale"], drop_overflow_update=False)
    traj, scales, flags, _ = _replay(opt, case)
    assert_trajectory(traj, case.traj, label=case.name)
    assert np.all(scales == np.float32(128.0)) and not flags.any()
    # No overflow check: a non-finite gradient is applied, as in MindSpore.
    params = {"w": jnp.ones(2)}
    updates, _ = opt.update({"w": jnp.array([1.0, jnp.inf])}, opt.init(params), params)
    assert not np.isfinite(np.asarray(updates["w"])).all()


@pytest.mark.parametrize("case", CASES["invalid_arguments"].config["cases"],
                         ids=lambda c: f"{c['target']}-{list(c['args'].items())[0]}")
def test_validation_matches_mindspores_managers(case):
    factory = {"FixedLossScaleManager": loss_scale.fixed_loss_scale,
               "DynamicLossScaleManager": loss_scale.dynamic_loss_scale}[case["target"]]
    if case["error"] is None:
        factory(jaxopt_ms.sgd(), **case["args"])
    else:
        with pytest.raises(ERRORS[case["error"]]) as info:
            factory(jaxopt_ms.sgd(), **case["args"])
        assert case["target"] in str(info.value) and list(case["args"])[0] in str(info.value)


def test_optimizer_argument_must_be_a_gradient_transformation():
    with pytest.raises(TypeError, match="optimizer"):
        loss_scale.dynamic_loss_scale(0.1)
    with pytest.raises(TypeError, match="optimizer"):
        loss_scale.master_weights(lambda g: g)
    with pytest.raises(ValueError, match="no loss scale"):
        loss_scale.loss_scale_value(jaxopt_ms.sgd().init({"w": jnp.ones(1)}))


def _random_run(wrapped, plain, steps, seed):  # plain: None to skip the unwrapped run
    """Runs ``wrapped`` on scaled gradients with random overflow injections, then the same program on the same
    gradients with the overflowed steps left out, then ``plain`` (unwrapped) on those; each as one jitted scan."""
    rng = np.random.RandomState(seed)
    params = {"conv.weight": rng.randn(2, 3, 2, 2).astype(np.float32), "fc.bias": rng.randn(3).astype(np.float32),
              "bn.gamma": np.ones(2, np.float32)}
    grads = {k: rng.randn(steps, *v.shape).astype(np.float32) for k, v in params.items()}
    overflow = rng.rand(steps) < 0.15
    overflow[:3] = [False, True, True]
    poison = np.where(rng.rand(steps) < 0.5, np.inf, np.nan).astype(np.float32)

    def wrapped_step(carry, x):
        p, s = carry
        g, flag, bad = x
        scale = loss_scale.loss_scale_value(s)
        g = {k: v * scale for k, v in g.items()}  # the gradient of loss * scale
        g["fc.bias"] = g["fc.bias"].at[0].set(jnp.where(flag, bad, g["fc.bias"][0]))
        u, s = wrapped.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss_scale.loss_scale_value(s)

    def plain_step(carry, g):
        p, s = carry
        u, s = plain.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    run = jax.jit(lambda c, xs: jax.lax.scan(wrapped_step, c, xs))
    (p_a, s_a), scales = run((params, wrapped.init(params)), (grads, overflow, poison))
    kept = {k: v[~overflow] for k, v in grads.items()}
    n = int(np.sum(~overflow))
    (p_b, s_b), _ = run((params, wrapped.init(params)), (kept, np.zeros(n, bool), poison[:n]))
    (p_c, s_c) = (None, None) if plain is None else \
        jax.jit(lambda c, xs: jax.lax.scan(plain_step, c, xs))((params, plain.init(params)), kept)[0]
    return (p_a, s_a), (p_b, s_b), (p_c, s_c), np.asarray(scales), overflow


def _assert_bitwise_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.atleast_1d(np.asarray(x)), np.atleast_1d(np.asarray(y))
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


def _assert_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=IDS)
def test_long_random_run_equals_the_run_without_the_overflowed_steps(name, factory, kwargs):
    if "learning_rate" in kwargs and name != "ftrl":  # FTRL takes a fixed lr only; LARS/AdaFactor rows have none
        kwargs = dict(kwargs, learning_rate=schedules.cosine_decay(1e-4, kwargs["learning_rate"], 700))
    wrapped = loss_scale.dynamic_loss_scale(factory(**kwargs), 2.0 ** 20, 2, 25)
    plain = factory(**kwargs) if name == "adam" else None  # one unwrapped comparison keeps the file fast
    (p_a, s_a), (p_b, s_b), (p_c, s_c), scales, overflow = _random_run(wrapped, plain, 1200, len(name))
    assert overflow.sum() > 100 and len(np.unique(scales)) > 5  # the scale really moved both ways
    # Bit for bit against the same compiled step fed only the good steps (the scale differs, the unscaled
    # gradients do not: power-of-two scales are exact) ...
    _assert_bitwise_equal(p_a, p_b)
    _assert_bitwise_equal(s_a.inner_state, s_b.inner_state)
    # ... and against the unwrapped optimizer, a different XLA program (its own rounding of fused operations).
    if plain is not None:
        _assert_close(p_a, p_c)
        _assert_close(s_a.inner_state, s_c)


def test_long_random_run_with_fixed_scale():
    make = lambda: jaxopt_ms.adam(schedules.warmup(0.01, 300), weight_decay=0.01)  # noqa: E731
    (p_a, s_a), (p_b, s_b), _, scales, _ = _random_run(loss_scale.fixed_loss_scale(make(), 1024.0),
                                                                 None, 1000, 5)
    assert np.all(scales == 1024.0)
    _assert_bitwise_equal(p_a, p_b)
    _assert_bitwise_equal(s_a.inner_state, s_b.inner_state)


def test_skipped_step_changes_nothing_but_the_scale_bookkeeping():
    opt = loss_scale.dynamic_loss_scale(jaxopt_ms.adam(schedules.exponential_decay(0.1, 0.5, 1)), 2.0 ** 10, 2, 2)
    params = {"w": jnp.array([1.0, -0.0, 2.0])}
    state = opt.init(params)
    update = jax.jit(opt.update)
    updates, state = update({"w": jnp.array([1.0, 1.0, 1.0]) * 2.0 ** 10}, state, params)
    params = optax.apply_updates(params, updates)
    before = (params, state.inner_state)
    updates, state = update({"w": jnp.array([1.0, jnp.nan, 1.0])}, state, params)
    after = optax.apply_updates(params, updates)
    _assert_bitwise_equal(after, before[0])  # bit for bit, -0.0 included
    _assert_bitwise_equal(state.inner_state, before[1])  # step counter, lr, beta powers, moments
    assert bool(state.overflow) and float(loss_scale.loss_scale_value(state)) == 2.0 ** 9
    assert float(jaxopt_ms.current_lr(state)) == float(schedules.exponential_decay(0.1, 0.5, 1)(1))


def test_wraps_any_optax_transformation_and_passes_extra_args():
    inner = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))
    opt = loss_scale.dynamic_loss_scale(inner, 2.0 ** 8, 2, 3)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    update = jax.jit(opt.update)
    u, state = update({"w": jnp.full(3, 2.0 ** 8)}, state, params)
    ref_u, _ = inner.update({"w": jnp.ones(3)}, inner.init(params), params)
    np.testing.assert_array_equal(u["w"], ref_u["w"])
    u, state2 = update({"w": jnp.full(3, jnp.inf)}, state, params)
    assert np.all(np.asarray(u["w"]) == 0)
    _assert_bitwise_equal(state2.inner_state, state.inner_state)
    # Extra keyword arguments (optax.GradientTransformationExtraArgs) reach the inner transformation.
    seen = {}

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    probe = loss_scale.dynamic_loss_scale(optax.GradientTransformationExtraArgs(lambda p: (), update), 2.0, 2, 3)
    probe.update({"w": jnp.ones(3)}, probe.init(params), params, value=1.5)
    assert seen == {"value": 1.5}


def run_final_eager(opt, params, grads):
    return run_final(opt, params, grads, jit=False)


def _problem(dtype, steps=6):
    rng = np.random.RandomState(0)
    params = {"conv.weight": rng.randn(2, 3, 2, 2), "fc.bias": rng.randn(3), "bn.gamma": 1 + 0.1 * rng.randn(2)}
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    grads = [{k: jnp.asarray(rng.uniform(0.05, 1.0, v.shape) * rng.choice([-1, 1], v.shape), dtype)
              for k, v in params.items()} for _ in range(steps)]
    for g in grads:  # a zero gradient element (0/0 in a float16 Adam with eps=1e-8 flushed to 0)
        g["fc.bias"] = g["fc.bias"].at[1].set(0)
    return params, grads


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=IDS)
def test_every_optimizer_runs_on_low_precision_params(name, factory, kwargs, dtype):
    params, grads = _problem(dtype)
    got, state = run_final_eager(factory(**kwargs), params, grads)
    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)  # noqa: E731
    ref, _ = run_final_eager(factory(**kwargs), f32(params), f32(grads))
    for k in params:
        assert got[k].dtype == dtype
        assert np.isfinite(np.asarray(got[k], np.float32)).all(), (name, k)
        # rounding to the low-precision dtype at every step: within a few ulps of the parameter per step
        tol = 6 * float(jnp.finfo(dtype).eps) * (1 + np.abs(np.asarray(ref[k])))
        assert np.all(np.abs(np.asarray(got[k], np.float32) - np.asarray(ref[k])) <= tol), (name, k)
    assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree.leaves(state))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=IDS)
def test_master_weights_follow_the_float32_trajectory_exactly(name, factory, kwargs, dtype):
    params, grads = _problem(dtype, steps=8)
    scale = 2.0 ** 6
    scaled = [{k: v * jnp.asarray(scale, dtype) for k, v in g.items()} for g in grads]
    scaled[3]["fc.bias"] = scaled[3]["fc.bias"].at[0].set(jnp.inf)  # one overflow: skipped on both sides
    opt = loss_scale.master_weights(loss_scale.fixed_loss_scale(factory(**kwargs), scale))
    got, state = run_final_eager(opt, params, scaled)
    f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)  # noqa: E731
    ref, ref_state = run_final_eager(factory(**kwargs), f32(params), f32(grads[:3] + grads[4:]))
    _assert_bitwise_equal(state.master, ref)
    _assert_bitwise_equal(state.inner_state.inner_state, ref_state)
    for k in params:
        assert got[k].dtype == dtype
        np.testing.assert_array_equal(np.asarray(got[k], np.float32), np.asarray(state.master[k].astype(dtype),
                                                                                 np.float32))


def test_master_weights_keeps_float32_leaves_and_the_other_order_works():
    params = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
    opt = loss_scale.master_weights(jaxopt_ms.sgd(0.5))
    state = opt.init(params)
    assert state.master["w"].dtype == jnp.float32 and state.master["b"] is params["b"]
    u, state = jax.jit(opt.update)({"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2)}, state, params)
    new = optax.apply_updates(params, u)
    assert new["w"].dtype == jnp.bfloat16 and new["b"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), 0.5)
    np.testing.assert_array_equal(new["b"], -0.5)
    other = loss_scale.dynamic_loss_scale(loss_scale.master_weights(jaxopt_ms.adam(0.1)), 2.0 ** 4, 2, 10)
    s = other.init(params)
    u, s = jax.jit(other.update)({"w": jnp.ones(3, jnp.bfloat16) * 16, "b": jnp.ones(2) * 16}, s, params)
    assert float(loss_scale.loss_scale_value(s)) == 16.0
    np.testing.assert_allclose(np.asarray(optax.apply_updates(params, u)["w"], np.float32), 0.9, rtol=1e-2)


def test_update_is_branch_free_device_code():
    opt = loss_scale.dynamic_loss_scale(jaxopt_ms.adam(schedules.warmup(0.1, 10)), 2.0 ** 8, 2, 3)
    params = {"w": jnp.ones(3)}
    text = str(jax.make_jaxpr(opt.update)({"w": jnp.ones(3)}, opt.init(params), params))
    assert "select_n" in text  # the skip is a select on the device ...
    for primitive in ("cond[", "callback", "while["):  # ... not a branch, a loop or a trip to the host
        assert primitive not in text
    with pytest.raises(ValueError, match="params"):
        loss_scale.master_weights(jaxopt_ms.sgd()).update({"w": jnp.ones(1)}, None)


def test_eager_run_equals_the_unwrapped_optimizer_bit_for_bit():
    # Op by op (no compiled program to fuse differently), the wrapper's arithmetic is the optimizer's: 40 steps
    # with overflows equal the unwrapped Adam over the good steps exactly.
    rng = np.random.RandomState(1)
    make = lambda: jaxopt_ms.adam(schedules.cosine_decay(1e-3, 0.05, 40), weight_decay=0.01)  # noqa: E731
    opt = loss_scale.dynamic_loss_scale(make(), 2.0 ** 12, 2, 4)
    plain = make()
    params = {"w": jnp.asarray(rng.randn(2, 3), jnp.float32), "bn.beta": jnp.asarray(rng.randn(3), jnp.float32)}
    p_a, s_a, p_b, s_b = params, opt.init(params), params, plain.init(params)
    for k in range(40):
        g = {n: jnp.asarray(rng.randn(*v.shape), jnp.float32) for n, v in params.items()}
        bad = k % 7 in (2, 3)
        scaled = {n: v * loss_scale.loss_scale_value(s_a) for n, v in g.items()}
        if bad:
            scaled["w"] = scaled["w"].at[1, 1].set(jnp.inf)
        u, s_a = opt.update(scaled, s_a, p_a)
        p_a = optax.apply_updates(p_a, u)
        if not bad:
            u, s_b = plain.update(g, s_b, p_b)
            p_b = optax.apply_updates(p_b, u)
    _assert_bitwise_equal(p_a, p_b)
    _assert_bitwise_equal(s_a.inner_state, s_b)


def test_row_sparse_gradients_are_unscaled_by_their_values():
    """A RowSparse leaf's values are unscaled (its indices untouched); the result equals the unscaled sparse run."""
    from jaxopt_ms.sparse import RowSparse, is_row_sparse

    params = {"emb": jnp.arange(10.0).reshape(5, 2), "w": jnp.ones(3)}
    grads = {"emb": RowSparse(jnp.array([1, 3, 1]), jnp.arange(6.0).reshape(3, 2), (5, 2)), "w": jnp.full(3, 0.5)}
    scaled = jax.tree.map(lambda x: x * 8.0, grads, is_leaf=is_row_sparse)
    wrapped = jaxopt_ms.loss_scale.fixed_loss_scale(jaxopt_ms.lazy_adam(0.1), loss_scale=8.0)
    plain = jaxopt_ms.lazy_adam(0.1)
    u_wrapped, _ = jax.jit(wrapped.update)(scaled, wrapped.init(params), params)
    u_plain, _ = jax.jit(plain.update)(grads, plain.init(params), params)
    got = optax.apply_updates(params, u_wrapped)
    want = optax.apply_updates(params, u_plain)
    for k in params:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
