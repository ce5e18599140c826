"""Reliability of every optimizer in tests/optimizer_zoo.py: orbax checkpoints, resumed and repeated runs
bit-identical, bad pytrees, non-finite gradients (docs/behaviour.md) and dtypes float16 / bfloat16 / float32 /
float64 (x64). Checkpoints of fused and loss-scale-wrapped states are checked for a few optimizers; sharded (ZeRO-1)
ones in tests/multidevice/check_sharding.py."""

import functools
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from optimizer_zoo import ZOO

import jaxopt_ms
from jaxopt_ms import fused
from jaxopt_ms.loss_scale import dynamic_loss_scale, loss_scale_value

IDS = [name for name, _, _ in ZOO]
STEPS = 6
SHAPES = {"conv1.weight": (2, 16, 3, 3), "fc.weight": (3, 16), "fc.bias": (3,), "bn1.gamma": (2,)}


def _params(dtype=jnp.float32):
    rng = np.random.RandomState(0)
    return {k: jnp.asarray(rng.randn(*s), dtype) for k, s in SHAPES.items()}


def _batches(n=STEPS):
    rng = np.random.RandomState(1)
    return [{k: rng.randn(*s).astype(np.float32) for k, s in SHAPES.items()} for _ in range(n)]


def _loss(params, batch):
    return sum(jnp.sum(jnp.tanh(p.astype(jnp.float32)) * batch[k]) + 0.05 * jnp.sum(jnp.square(p.astype(jnp.float32)))
               for k, p in params.items())


RICH_GROUPS = [{"params": "^conv", "lr": [0.05, 0.04, 0.03, 0.02, 0.01, 0.005]},
               {"params": ["fc.weight", "fc.bias"], "lr": 0.02}]
# For optimizers that take no group lr (MindSpore's FTRL and AdaFactor): the groups alone.
PLAIN_GROUPS = [{"params": "^conv"}, {"params": ["fc.weight", "fc.bias"]}]


def _with_groups(factory, kwargs):
    """The optimizer with parameter groups (bn1.gamma in no group): per-group lrs (a per-step list on the conv, a
    fixed lr on fc.*) where the optimizer accepts them, else plain groups; without groups for an optimizer that
    takes no ``param_groups`` (a wrapper such as LARS)."""
    if "param_groups" not in inspect.signature(factory).parameters:
        return factory(**kwargs)
    try:
        return factory(**kwargs, param_groups=RICH_GROUPS)
    except (TypeError, ValueError):
        return factory(**kwargs, param_groups=PLAIN_GROUPS)


def _variant(factory, kwargs, variant):
    """``plain``, or ``groups_in_chain``: global-norm clipping, then the optimizer with parameter groups."""
    if variant == "plain":
        return factory(**kwargs)
    return optax.chain(optax.clip_by_global_norm(1.0), _with_groups(factory, kwargs))


def _step_fn(opt):
    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(_loss)(params, batch)
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return step


def _train(opt, params, state, batches, step=None):
    step = step or _step_fn(opt)
    for b in batches:
        params, state = step(params, state, b)
    return params, state


def _assert_bitwise(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- checkpoints -------------------------------------------------------------------------------------------------

def _save_and_restore(tmp_path, tree, like):
    """``tree`` saved with orbax and restored into the structure (and dtypes) of ``like``; checked bitwise."""
    checkpointer = ocp.StandardCheckpointer()
    path = os.path.join(tmp_path, "ckpt")
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
    _assert_bitwise(restored, tree)
    return restored


# One variant covers the three kinds of state: per-leaf, parameter groups, inside optax.chain.
@pytest.mark.parametrize("variant", ["groups_in_chain"])
@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_resume_from_checkpoint_is_bit_identical(tmp_path, name, factory, kwargs, variant):
    batches = _batches()
    opt = _variant(factory, kwargs, variant)
    params0 = _params()
    step = _step_fn(opt)
    full_params, full_state = _train(opt, params0, opt.init(params0), batches, step)

    half = STEPS // 2
    params, state = _train(opt, params0, opt.init(params0), batches[:half], step)
    # A fresh optimizer, as in a new process: restore into the structure its init gives.
    opt2 = _variant(factory, kwargs, variant)
    restored = _save_and_restore(tmp_path, {"params": params, "opt_state": state},
                                 {"params": params0, "opt_state": opt2.init(params0)})
    resumed_params, resumed_state = _train(opt2, restored["params"], restored["opt_state"], batches[half:])
    _assert_bitwise(resumed_params, full_params)
    _assert_bitwise(resumed_state, full_state)


# The other kinds of state, for a few optimizers (element-wise with momentum; Adam; Lamb's per-leaf trust ratio).
FEW = [z for z in ZOO if z[0] in ("sgd", "adam", "lamb")]


def _fused_step_fn(fopt):
    @jax.jit
    def step(flat, state, batch):
        grads = jax.grad(lambda f: _loss(fused.view(f), batch))(flat)   # arrive as flat buffers
        updates, state = fopt.update(grads, state, flat)
        return optax.apply_updates(flat, updates), state
    return step


@pytest.mark.parametrize("name, factory, kwargs", FEW, ids=[z[0] for z in FEW])
def test_fused_resume_from_checkpoint_is_bit_identical(tmp_path, name, factory, kwargs):
    # A float32 and a bfloat16 buffer: the flat parameters and the fused state (FlatParams nodes) both saved.
    params0 = {k: p.astype(jnp.bfloat16) if k.startswith("fc") else p for k, p in _params().items()}
    batches, half = _batches(), STEPS // 2
    fopt = fused.fuse(factory(**kwargs))
    flat0 = fopt.flatten(params0)
    step = _fused_step_fn(fopt)
    full = _train(fopt, flat0, fopt.init(flat0), batches, step)
    flat, state = _train(fopt, flat0, fopt.init(flat0), batches[:half], step)

    fopt2 = fused.fuse(factory(**kwargs))
    like = fopt2.flatten(params0)
    restored = _save_and_restore(tmp_path, {"params": flat, "opt_state": state},
                                 {"params": like, "opt_state": fopt2.init(like)})
    assert restored["params"].layout == flat.layout
    resumed = _train(fopt2, restored["params"], restored["opt_state"], batches[half:], _fused_step_fn(fopt2))
    _assert_bitwise(resumed, full)
    _assert_bitwise(fused.unflatten(resumed[0]), fused.unflatten(full[0]))


def _scaled_step_fn(opt):
    @jax.jit
    def step(params, state, batch):
        scale = loss_scale_value(state)
        grads = jax.grad(lambda p: _loss(p, batch) * scale)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return step


@pytest.mark.parametrize("name, factory, kwargs", FEW, ids=[z[0] for z in FEW])
def test_loss_scale_resume_after_an_overflow_is_bit_identical(tmp_path, name, factory, kwargs):
    batches, half = _batches(), STEPS // 2
    batches[1]["fc.bias"][0] = np.inf   # step 1 overflows: skipped, scale halved
    make = lambda: dynamic_loss_scale(factory(**kwargs), 2.0 ** 10, 2, 2)   # window 2: grows again after
    opt, params0 = make(), _params()
    step = _scaled_step_fn(opt)
    full = _train(opt, params0, opt.init(params0), batches, step)
    params, state = _train(opt, params0, opt.init(params0), batches[:half], step)
    assert float(loss_scale_value(state)) == 2.0 ** 9 and int(state.last_overflow_iter) == 2

    opt2 = make()
    restored = _save_and_restore(tmp_path, {"params": params, "opt_state": state},
                                 {"params": params0, "opt_state": opt2.init(params0)})
    resumed = _train(opt2, restored["params"], restored["opt_state"], batches[half:], _scaled_step_fn(opt2))
    _assert_bitwise(resumed, full)
    assert float(loss_scale_value(full[1])) == 2.0 ** 11   # grown twice after the checkpoint (window 2)


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_two_runs_are_bit_identical(name, factory, kwargs):
    # The float32 run the dtype tests share (cached), and the same run built and compiled afresh.
    _assert_bitwise(_dtype_run(factory, kwargs, jnp.float32), _float32_reference(name))


# --- inputs MindSpore never sees ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_mismatched_gradients_are_a_value_error(name, factory, kwargs):
    opt = factory(**kwargs)
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="structure of the parameters"):
        opt.update({"a": jnp.ones(2), "c": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match="structure of the parameters"):
        opt.update({"a": jnp.ones(2)}, state, params)
    with pytest.raises(ValueError, match=r"'b' has shape \(1,\)"):   # would silently broadcast otherwise
        opt.update({"a": jnp.ones(2), "b": jnp.ones(1)}, state, params)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.complex64])
@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_non_float_leaves_are_a_type_error(name, factory, kwargs, dtype):
    opt = factory(**kwargs)
    with pytest.raises(TypeError, match=r"'step' has dtype"):
        opt.init({"w": jnp.ones(2), "step": jnp.ones(2, dtype)})


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_none_leaves_are_skipped(name, factory, kwargs):
    opt = factory(**kwargs)
    params = {"w": jnp.ones(2), "frozen": None}
    updates, _ = jax.jit(opt.update)({"w": jnp.ones(2), "frozen": None}, opt.init(params), params)
    assert updates["frozen"] is None and updates["w"].shape == (2,)


@pytest.mark.parametrize("empty", [{}, [], ()], ids=["dict", "list", "tuple"])
@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_empty_pytree_is_a_no_op(name, factory, kwargs, empty):
    opt = factory(**kwargs)
    state = opt.init(empty)
    updates, state = jax.jit(opt.update)(empty, state, empty)
    assert updates == empty


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_empty_learning_rate_list_is_an_error(name, factory, kwargs):
    if "learning_rate" not in inspect.signature(factory).parameters:
        pytest.skip(f"{name} takes no learning_rate")
    # ValueError (empty per-step lr); TypeError where the optimizer accepts only a fixed float (FTRL).
    with pytest.raises((ValueError, TypeError), match="learning_rate"):
        factory(**{**kwargs, "learning_rate": []})


# --- non-finite gradients (docs/behaviour.md) ---------------------------------------------------------------------

def _non_finite_kind(factory):
    """How a non-finite gradient element spreads (docs/behaviour.md): ``element`` for element-wise rules;
    ``leaf`` where the rule uses a norm or RMS of the whole leaf (LARS' trust ratio, AdaFactor's RMS); ``zero``
    for FTRL, whose ``|linear| > l1`` test is false for NaN, so the parameter element becomes 0."""
    if factory in (getattr(jaxopt_ms, "lars", None), getattr(jaxopt_ms, "adafactor", None)):
        return "leaf"
    if factory is getattr(jaxopt_ms, "ftrl", None):
        return "zero"
    return "element"


@functools.cache
def _jitted_update(name):
    _, factory, kwargs = ZOO[IDS.index(name)]
    opt = factory(**kwargs)
    return opt, jax.jit(opt.update)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_non_finite_gradient_behaviour(name, factory, kwargs, bad):
    # As in MindSpore without a loss-scale manager: nothing checks the gradients.
    opt, step = _jitted_update(name)   # one compilation for nan and inf
    params = {"w": jnp.ones(3), "v": jnp.ones(2)}
    state = opt.init(params)
    grads = {"w": jnp.array([0.5, bad, 0.5]), "v": jnp.full(2, 0.5)}
    for _ in range(3):
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
        grads = {"w": jnp.full(3, 0.5), "v": jnp.full(2, 0.5)}
    w = np.asarray(params["w"])
    assert np.all(np.isfinite(params["v"])), "another leaf is never affected"
    kind = _non_finite_kind(factory)
    if kind == "leaf":
        assert not np.any(np.isfinite(w))
        return
    assert np.all(np.isfinite(w[[0, 2]]))
    if kind == "zero":
        assert w[1] == 0.0
        return
    assert not np.isfinite(w[1])
    # The element's per-element state is non-finite too (so it stays poisoned); the others are not.
    state_w = [np.asarray(x) for x in jax.tree.leaves(state) if np.shape(x) == (3,)]
    assert state_w and any(not np.isfinite(x[1]) for x in state_w)
    assert all(np.all(np.isfinite(x[[0, 2]])) for x in state_w)


def test_gradient_centralization_spreads_a_nan_over_its_slice():
    opt = jaxopt_ms.sgd(0.1, param_groups=[{"params": ["conv"], "grad_centralization": True}])
    params = {"conv": jnp.ones((2, 16))}
    grads = {"conv": jnp.ones((2, 16)).at[0, 3].set(np.nan)}
    updates, _ = opt.update(grads, opt.init(params), params)
    assert np.all(np.isnan(updates["conv"][0])) and np.all(np.isfinite(updates["conv"][1]))


def test_sgd_momentum_buffer_keeps_the_nan():
    opt = jaxopt_ms.sgd(0.1, momentum=0.9)
    params = {"w": jnp.ones(2)}
    _, state = opt.update({"w": jnp.array([np.nan, 1.0])}, opt.init(params), params)
    accum = [x for x in jax.tree.leaves(state) if np.shape(x) == (2,)][0]
    assert np.isnan(accum[0]) and np.isfinite(accum[1])


# --- dtypes -------------------------------------------------------------------------------------------------------

# float16: moments of tiny gradients underflow (docs/behaviour.md), a few elements drift by some 1e-2.
TOL = {jnp.float16: 5e-2, jnp.bfloat16: 1e-1}


@functools.cache
def _float32_reference(name):
    _, factory, kwargs = ZOO[IDS.index(name)]
    return _dtype_run(factory, kwargs, jnp.float32)


def _dtype_run(factory, kwargs, dtype):
    eps = inspect.signature(factory).parameters.get("eps")
    if eps is not None and isinstance(eps.default, float):
        # An eps float16 can hold (1e-8 is 0 there: docs/behaviour.md), the same for every dtype compared.
        kwargs = {**kwargs, "eps": 1e-3}
    opt = factory(**kwargs)
    params = _params(dtype)
    params, state = _train(opt, params, opt.init(params), _batches(3))
    return params, state


def _check_dtypes(params, state, dtype, state_dtype=None):
    for p in jax.tree.leaves(params):
        assert p.dtype == dtype and np.all(np.isfinite(np.asarray(p, np.float64)))
    # Per-element state has the parameter's dtype (AdaFactor: at least float32, since g² + 1e-30 underflows in
    # float16); scalars (step count, lr, Adam's beta powers) are int32/float32.
    for x in jax.tree.leaves(state):
        if np.ndim(x) > 0:
            assert x.dtype == (state_dtype or dtype)
        else:
            assert x.dtype in (jnp.int32, jnp.float32)


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_float32(name, factory, kwargs):
    _check_dtypes(*_float32_reference(name), jnp.float32)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_low_precision_dtypes(name, factory, kwargs, dtype):
    params, state = _dtype_run(factory, kwargs, dtype)
    _check_dtypes(params, state, dtype, jnp.float32 if name.startswith("adafactor") else None)
    reference, _ = _float32_reference(name)
    for k in params:
        np.testing.assert_allclose(np.asarray(params[k], np.float32), reference[k], rtol=TOL[dtype],
                                   atol=TOL[dtype])


def test_float16_adam_with_tiny_gradients_takes_huge_steps_as_documented():
    # (1 - b2) g^2 underflows to 0 in float16 for |g| < ~8e-3: m / (sqrt(v) + eps) is then m / eps.
    # MindSpore (moments cloned in the parameter's dtype) and PyTorch behave the same way.
    opt = jaxopt_ms.adam(0.01)
    params = {"w": jnp.ones(2, jnp.float16)}
    updates, _ = opt.update({"w": jnp.array([1e-3, 0.5], jnp.float16)}, opt.init(params), params)
    u = np.abs(np.asarray(updates["w"], np.float32))
    assert not (u[0] < 1.0) and u[1] == pytest.approx(0.01, rel=1e-2)   # inf or >= 100 x lr; a normal step


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_float64_in_x64_mode(name, factory, kwargs):
    reference, _ = _float32_reference(name)
    with jax.enable_x64(True):
        params, state = _dtype_run(factory, kwargs, jnp.float64)
        _check_dtypes(params, state, jnp.float64)
    for k in params:
        np.testing.assert_allclose(np.asarray(params[k]), reference[k], rtol=1e-5, atol=1e-6)


def test_zoo_lists_every_public_optimizer_factory():
    names = {name for name, _, _ in ZOO}
    for name in ("sgd", "momentum", "adam", "lazy_adam", "adam_weight_decay"):
        assert name in names
    for _, factory, kwargs in ZOO:
        inspect.signature(factory).bind(**kwargs)
