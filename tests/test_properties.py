"""Property tests (hypothesis) over random pytrees, shapes, dtypes and hyperparameters, for every optimizer in
tests/optimizer_zoo.py: jit equals no-jit; one group covering everything equals no groups (fixed learning rates:
a fixed group lr mixed with a dynamic one is quantised, reference §2.3); each alias equals its explicit chain of
blocks; loss_scale s with gradients multiplied by s equals the unscaled run (s a power of two: exact); the fused
flat-buffer path equals the per-leaf path (tests/test_fused.py's tolerance). Sharded equals single-device is in
tests/multidevice/check_sharding.py (it needs 8 host devices, set before JAX starts)."""

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizer_zoo import ZOO
from test_fused import assert_same_bits, fused_trajectory, per_leaf_trajectory

import jaxopt_ms
from jaxopt_ms import fused
from jaxopt_ms import transforms as T

IDS = [name for name, _, _ in ZOO]
SETTINGS = settings(max_examples=2, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
STEPS = 3

# Hyperparameters drawn when the zoo entry sets them or the factory has a float default for them.
FLOAT_HP = {
    "learning_rate": st.floats(1e-3, 0.5),
    "momentum": st.floats(0.0, 0.99),
    "dampening": st.floats(0.0, 0.9),
    "beta1": st.floats(0.5, 0.95),
    "beta2": st.floats(0.5, 0.999),
    "eps": st.floats(1e-6, 0.5),
    "weight_decay": st.floats(0.0, 0.1),
}
NAMES = ["w0", "layer.kernel", "layer.bias", "conv.weight"]   # no gamma/beta: the decay filter keeps them all


@st.composite
def hyperparameters(draw, factory, kwargs):
    signature = inspect.signature(factory).parameters
    out = dict(kwargs)
    for key, strategy in FLOAT_HP.items():
        if key in kwargs or (key in signature and key != "learning_rate" and isinstance(signature[key].default, float)):
            out[key] = draw(strategy)
    return out


@st.composite
def problems(draw, dtypes=(jnp.float32,), mixed=False):
    """(params, [grads per step]) with 1-4 leaves of rank 0-3, and a dtype; ``mixed``: 2-4 leaves whose dtypes
    alternate over ``dtypes`` (every dtype present), from a drawn start."""
    dtype = draw(st.sampled_from(dtypes))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2 if mixed else 1, max_size=4, unique=True))
    shapes = {n: tuple(draw(st.lists(st.integers(1, 4), max_size=3))) for n in names}
    leaf_dtypes = dict(zip(names, itertools.cycle(draw(st.permutations(dtypes))) if mixed else [dtype] * len(names)))
    rng = np.random.RandomState(draw(st.integers(0, 2**16)))
    params = {n: jnp.asarray(rng.randn(*s), leaf_dtypes[n]) for n, s in shapes.items()}
    grads = [{n: jnp.asarray(rng.randn(*s), leaf_dtypes[n]) for n, s in shapes.items()} for _ in range(STEPS)]
    return params, grads


def trajectory(opt, params, grads, jit=True):
    update = jax.jit(opt.update) if jit else opt.update
    state = opt.init(params)
    out = []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out


def assert_equal(a, b, rtol=0.0, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype
        if rtol == 0.0 and atol == 0.0:
            np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
        else:
            np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol)


def _chain(name, hp):
    """The explicit chain of blocks each alias is documented to be (None: no entry for this optimizer yet)."""
    wd, s = hp.get("weight_decay", 0.0), hp.get("loss_scale", 1.0)
    pre = [T.add_decayed_weights(wd, s)] if wd > 0 else []
    pre += [T.unscale_gradients(s)] if s != 1.0 else []
    lr = T.scale_by_learning_rate(hp["learning_rate"]) if "learning_rate" in hp else None
    if name == "sgd":
        return optax.chain(*pre, T.scale_by_sgd(hp.get("momentum", 0.0), hp.get("dampening", 0.0)), lr)
    if name == "momentum":
        return optax.chain(*pre, optax.trace(hp["momentum"]), lr)
    if name in ("adam", "lazy_adam"):
        return optax.chain(*pre, T.scale_by_adam(hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)),
                           lr)
    if name == "adam_offload":
        return optax.chain(*pre, T.scale_by_adam_offload(hp.get("beta1", 0.9), hp.get("beta2", 0.999),
                                                         hp.get("eps", 1e-8), on_host=hp.get("on_host")), lr)
    if name == "adam_weight_decay":
        post = [T.add_decayed_weights(wd)] if wd > 0 else []
        return optax.chain(T.scale_by_adam_weight_decay(hp.get("beta1", 0.9), hp.get("beta2", 0.999),
                                                        hp.get("eps", 1e-6)), *post, lr)
    arg = lambda key: hp.get(key, inspect.signature(getattr(jaxopt_ms, name)).parameters[key].default)  # noqa: E731
    if name == "adagrad":
        return optax.chain(*pre, T.apply_adagrad(hp["learning_rate"], arg("accum"), arg("update_slots")))
    if name == "adamax":
        return optax.chain(*pre, T.scale_by_adamax(arg("beta1"), arg("beta2"), arg("eps")), lr)
    if name == "adadelta":
        return optax.chain(*pre, T.scale_by_adadelta(arg("rho"), arg("epsilon")), lr)
    if name == "proximal_adagrad":
        return optax.chain(*pre, T.apply_proximal_adagrad(hp["learning_rate"], arg("accum"), arg("l1"), arg("l2")))
    if name == "ftrl":  # MindSpore's FTRL decays every leaf when not grouped
        pre = ([T.add_decayed_weights(wd, s, jaxopt_ms.decay_all)] if wd > 0 else []) + pre[1 if wd > 0 else 0:]
        return optax.chain(*pre, T.apply_ftrl(hp["learning_rate"], arg("initial_accum"), arg("lr_power"), arg("l1"),
                                              arg("l2")))
    if name == "rprop":
        return optax.chain(*pre, T.apply_rprop(hp["learning_rate"], arg("etas"), arg("step_sizes")))
    if name == "asgd":
        return optax.chain(*pre, T.apply_asgd(hp["learning_rate"], arg("lambd"), arg("alpha"), arg("t0")))
    if name == "lamb":  # decay inside the rule, no loss-scale division
        rule = T.scale_by_lamb(arg("beta1"), arg("beta2"), arg("eps"), wd, jaxopt_ms.mindspore_decay_filter)
        return optax.chain(rule, lr)
    if name in ("rmsprop", "rmsprop_centered"):
        hp = dict(inspect.signature(jaxopt_ms.rmsprop).bind(**hp).arguments)
        get = lambda key: hp.get(key, inspect.signature(jaxopt_ms.rmsprop).parameters[key].default)  # noqa: E731
        scale_by = optax.scale_by_stddev if get("centered") else optax.scale_by_rms
        # MindSpore's kernels take float32 hyperparameters (1 - decay is a float32 subtraction): rounded first.
        f32 = lambda key: float(np.float32(get(key)))  # noqa: E731
        trace = [optax.trace(decay=f32("momentum"))] if get("momentum") > 0 else []
        return optax.chain(*pre, scale_by(decay=f32("decay"), eps=f32("epsilon"), initial_scale=1.0, eps_in_sqrt=True),
                           lr, *trace)
    return None


def _single_group(factory, hp):
    """The optimizer with one group covering every leaf, with the optimizer's fixed lr and weight decay (no group
    lr where the optimizer takes none); None for an optimizer without ``param_groups``."""
    if "param_groups" not in inspect.signature(factory).parameters:
        return None
    group = {"params": lambda name, leaf: True}
    if "weight_decay" in hp:
        group["weight_decay"] = hp["weight_decay"]
    try:
        return factory(**hp, param_groups=[{**group, "lr": hp["learning_rate"]}] if "learning_rate" in hp else [group])
    except (TypeError, ValueError):   # no group lr (MindSpore's FTRL, AdaFactor)
        return factory(**hp, param_groups=[group])


def _honours_loss_scale(factory):
    # MindSpore's AdaFactor ignores loss_scale (reference §1): the property does not hold there, by design.
    return "loss_scale" in inspect.signature(factory).parameters and factory is not getattr(jaxopt_ms, "adafactor",
                                                                                              None)


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_properties_float32(name, factory, kwargs):
    """On one drawn problem (float32): the alias equals its chain of blocks bitwise (the same program); jit
    equals no-jit, one group covering everything equals no groups, and loss_scale s (a power of two) with
    gradients multiplied by s equals the unscaled run, to float32 rounding: the arithmetic is exact, but XLA
    contracts ``a * b + c`` into fused multiply-adds, and which product it fuses depends on the program."""
    has_loss_scale = _honours_loss_scale(factory)

    @SETTINGS
    @given(data=st.data())
    def check(data):
        hp = data.draw(hyperparameters(factory, kwargs))
        params, grads = data.draw(problems())
        reference = trajectory(factory(**hp), params, grads)
        assert_equal(trajectory(factory(**hp), params, grads, jit=False), reference, rtol=1e-5, atol=1e-5)
        grouped = _single_group(factory, hp)
        if grouped is not None:
            assert_equal(trajectory(grouped, params, grads), reference, rtol=1e-6, atol=1e-7)
        chain = _chain(name, hp)
        if chain is not None:
            assert_equal(trajectory(chain, params, grads), reference)
        if has_loss_scale:
            s = 2.0 ** data.draw(st.integers(1, 12))
            scaled = [jax.tree.map(lambda g: g * s, g) for g in grads]
            assert_equal(trajectory(factory(**hp, loss_scale=s), params, scaled), reference, rtol=1e-6, atol=1e-7)
    check()


@pytest.mark.parametrize("name, factory, kwargs", ZOO, ids=IDS)
def test_jit_equals_no_jit_low_precision(name, factory, kwargs):
    @settings(SETTINGS, max_examples=1)
    @given(data=st.data())
    def check(data):
        hp = data.draw(hyperparameters(factory, kwargs))
        params, grads = data.draw(problems((jnp.bfloat16, jnp.float16)))
        if params[next(iter(params))].dtype == jnp.float16 and "eps" in hp:
            hp["eps"] = max(hp["eps"], 1e-3)   # representable in float16 (docs/behaviour.md)
        opt = factory(**hp)
        assert_equal(trajectory(opt, params, grads, jit=True), trajectory(opt, params, grads, jit=False),
                     rtol=2e-2, atol=2e-2)
    check()


FUSED_FEW = [z for z in ZOO if z[0] in ("sgd", "adam", "lamb")]


@pytest.mark.parametrize("name, factory, kwargs", FUSED_FEW, ids=[z[0] for z in FUSED_FEW])
def test_fused_equals_per_leaf(name, factory, kwargs):
    """Random hyperparameters and pytrees mixing float32 and bfloat16 leaves: the fused path's trajectory is the
    per-leaf one (bfloat16 bitwise, float32 within test_fused.MAX_ULPS)."""
    @SETTINGS
    @given(data=st.data())
    def check(data):
        opt = factory(**data.draw(hyperparameters(factory, kwargs)))
        params, grads = data.draw(problems((jnp.float32, jnp.bfloat16), mixed=True))
        assert_same_bits(fused_trajectory(fused.fuse(opt), params, grads)[0],
                         per_leaf_trajectory(opt, params, grads)[0])
    check()


def test_every_zoo_optimizer_without_a_chain_is_reported():
    missing = [name for name, _, kwargs in ZOO if _chain(name, dict(kwargs)) is None]
    if missing:
        pytest.skip(f"alias == chain not checked for {missing}: add them to tests/test_properties.py:_chain")
