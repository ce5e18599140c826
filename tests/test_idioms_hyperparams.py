"""Optax / Flax / JAX idioms over the whole family (tests/optimizer_zoo.py), and what raises when one cannot work.

* ``optax.inject_hyperparams(factory)(...)``: every numeric hyperparameter is injected, the trajectory is the plain
  floats' one, changing ``state.hyperparams`` between steps does not retrace, and a hyperparameter whose value
  decides structure (weight decay, momentum, beta1) takes the general path, so that setting it later works.
* meta-gradients: ``jax.grad`` through two unrolled updates w.r.t. params, grads and the learning rate is finite
  (zero-gradient leaf included) and agrees with central finite differences in float64.
* learning-rate validation by value (any type), ``set_lr`` / ``current_lr`` on inject and ``flax.nnx`` states,
  integer / wrongly shaped gradients, ``repr`` of every factory.

Small trees (three leaves, one of rank 2 for AdaFactor's factored path, one with an exactly zero gradient) and one
jitted function per optimizer and test keep this cheap.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_zoo import ZOO

import jaxopt_ms

IDS = [name for name, _, _ in ZOO]


def _params(dtype=jnp.float32):
    return {"w": jnp.asarray([0.5, -1.0, 2.0], dtype), "k": jnp.asarray([[0.3, -0.6, 0.9], [1.2, -0.4, 0.7]], dtype),
            "z": jnp.asarray([0.3, -0.2], dtype)}


def _grads(dtype=jnp.float32):
    # 'z' has an exactly zero gradient (a frozen embedding row, an unused bias)
    return {"w": jnp.asarray([0.1, -0.3, 0.2], dtype), "k": jnp.asarray([[-0.2, 0.1, 0.05], [0.3, -0.15, 0.25]],
                                                                        dtype),
            "z": jnp.zeros(2, dtype)}


def _bound(factory, kwargs):
    sig = inspect.signature(factory)
    bound = sig.bind(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _numeric(factory, kwargs):
    """The arguments optax.inject_hyperparams injects (numbers, not bools)."""
    return {k: v for k, v in _bound(factory, kwargs).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _static_args(factory, kwargs):
    # a callable argument that is not a schedule (LARS's name filter) must be declared static, as optax documents
    return [k for k, v in _bound(factory, kwargs).items() if callable(v) and k.endswith("_filter")]


def _run(opt, params, grads, steps=3, update=None):
    # both sides jitted: XLA's fusion may round differently from op-by-op execution (not what is compared here)
    update = update or jax.jit(opt.update)
    state = opt.init(params)
    out = []
    for _ in range(steps):
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


def _assert_same(got, want):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _other_value(name, value):
    """Another valid value of a hyperparameter (for the no-retrace check)."""
    if value == 0:
        return 0.01
    return value * 0.9


# ----------------------------------------------------------------------------------------------------------------
# inject_hyperparams
# ----------------------------------------------------------------------------------------------------------------


_COMPILED: dict = {}


def _compiled(name, factory, kwargs):
    """One injected and one plain optimizer per zoo row, with jitted updates shared by the tests below; the
    injected update counts its traces."""
    if name not in _COMPILED:
        tx = optax.inject_hyperparams(factory, static_args=_static_args(factory, kwargs))(**kwargs)
        plain = factory(**kwargs)
        traces = []

        def update(grads, state, params):
            traces.append(1)
            return tx.update(grads, state, params)

        _COMPILED[name] = (tx, jax.jit(update), traces, plain, jax.jit(plain.update))
    return _COMPILED[name]


@pytest.mark.parametrize("name,factory,kwargs", ZOO, ids=IDS)
def test_inject_hyperparams_every_numeric_hyperparameter(name, factory, kwargs):
    numeric = _numeric(factory, kwargs)
    tx, update, traces, plain, plain_update = _compiled(name, factory, kwargs)
    params, grads = _params(), _grads()
    before = len(traces)
    got, state = _run(tx, params, grads, update=update)
    want, _ = _run(plain, params, grads, update=plain_update)
    assert set(state.hyperparams) == set(numeric)  # every numeric hyperparameter is injected
    _assert_same(got, want)

    # every hyperparameter changed between steps: data, not a constant: no retrace
    compiled = len(traces)
    assert compiled - before <= 1  # one trace for three steps (none when another test traced this update first)
    for k, v in numeric.items():
        state.hyperparams[k] = jnp.asarray(_other_value(k, v), state.hyperparams[k].dtype)
    updates, state = update(grads, state, got[-1])
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    assert len(traces) == compiled


LR_ZOO = [row for row in ZOO if "learning_rate" in _numeric(row[1], row[2])]


@pytest.mark.parametrize("name,factory,kwargs", LR_ZOO, ids=[r[0] for r in LR_ZOO])
def test_inject_hyperparams_learning_rate_is_set_lr(name, factory, kwargs):
    """Changing the injected learning rate (by hand or with set_lr) is set_lr on the plain optimizer."""
    params, grads = _params(), _grads()
    tx, update, traces, plain, plain_update = _compiled(name, factory, kwargs)
    s_inj, s_plain = tx.init(params), plain.init(params)
    p_inj = p_plain = params
    new_lr = 0.5 * kwargs["learning_rate"]
    for step in range(3):
        if step == 1:
            s_inj = jaxopt_ms.set_lr(s_inj, new_lr)
            s_plain = jaxopt_ms.set_lr(s_plain, new_lr)
            assert float(jaxopt_ms.current_lr(s_inj)) == float(jaxopt_ms.current_lr(s_plain)) == np.float32(new_lr)
            assert float(s_inj.hyperparams["learning_rate"]) == np.float32(new_lr)
        u, s_inj = update(grads, s_inj, p_inj)
        p_inj = optax.apply_updates(p_inj, u)
        u, s_plain = plain_update(grads, s_plain, p_plain)
        p_plain = optax.apply_updates(p_plain, u)
    _assert_same(p_inj, p_plain)


# hyperparameters whose value decides structure: injected at the "off" value and switched on after init
STRUCTURAL = [
    ("sgd_momentum", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.0), "momentum", 0.9),
    ("sgd_dampening", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.9), "dampening", 0.3),
    ("sgd_weight_decay", jaxopt_ms.sgd, dict(learning_rate=0.1), "weight_decay", 0.1),
    ("adam_weight_decay", jaxopt_ms.adam, dict(learning_rate=0.01), "weight_decay", 0.1),
    ("adam_loss_scale", jaxopt_ms.adam, dict(learning_rate=0.01, weight_decay=0.1), "loss_scale", 8.0),
    ("adamw_weight_decay", jaxopt_ms.adam_weight_decay, dict(learning_rate=0.01), "weight_decay", 0.1),
    ("rmsprop_momentum", jaxopt_ms.rmsprop, dict(learning_rate=0.01, epsilon=1e-3), "momentum", 0.5),
    ("lamb_weight_decay", jaxopt_ms.lamb, dict(learning_rate=0.01), "weight_decay", 0.1),
    # -0.7 -> -0.5: the square-root special case chosen by value. XLA compiles the traced select between sqrt and
    # pow differently from the constant sqrt: the same formula, one ulp apart on some elements (ULPS below)
    ("ftrl_lr_power", jaxopt_ms.ftrl, dict(learning_rate=0.1, lr_power=-0.7), "lr_power", -0.5),
    ("adafactor_beta1", jaxopt_ms.adafactor, dict(learning_rate=0.01, relative_step=False, beta1=0.3), "beta1", 0.0),
    ("adafactor_weight_decay", jaxopt_ms.adafactor, dict(learning_rate=0.01, relative_step=False), "weight_decay",
     0.1),
]


ULPS = {"ftrl_lr_power": 2}


@pytest.mark.parametrize("name,factory,kwargs,hparam,value", STRUCTURAL, ids=[r[0] for r in STRUCTURAL])
def test_inject_hyperparams_structural_hyperparameter_takes_the_general_path(name, factory, kwargs, hparam, value):
    """Init at the value that would leave a block out; set it after init: the same trajectory as building with it
    (the state structure does not depend on a traced value)."""
    params, grads = _params(), _grads()
    tx = optax.inject_hyperparams(factory)(**kwargs)
    state = tx.init(params)
    state.hyperparams[hparam] = jnp.asarray(value, jnp.float32)
    update = jax.jit(tx.update)
    p = params
    for _ in range(3):
        u, state = update(grads, state, p)
        p = optax.apply_updates(p, u)
    want, _ = _run(factory(**{**kwargs, hparam: value}), params, grads)
    if name in ULPS:
        for g, w in zip(jax.tree.leaves(p), jax.tree.leaves(want[-1])):
            np.testing.assert_array_max_ulp(np.asarray(g), np.asarray(w), maxulp=ULPS[name])
        return
    _assert_same(p, want[-1])


GROUPS = [{"params": ["w"], "weight_decay": 0.01}, {"params": ["k", "z"], "lr": 0.05}]
GROUPED = [("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.9)),
           ("adam", jaxopt_ms.adam, dict(learning_rate=0.01)),
           ("lamb", jaxopt_ms.lamb, dict(learning_rate=0.01)),
           ("rmsprop", jaxopt_ms.rmsprop, dict(learning_rate=0.01, momentum=0.5, epsilon=1e-3))]


@pytest.mark.parametrize("name,factory,kwargs", GROUPED, ids=[r[0] for r in GROUPED])
def test_inject_hyperparams_with_groups_and_fused(name, factory, kwargs):
    """Grouped (the group list is a static argument) and fused (inject around ``fuse``) variants."""
    from jaxopt_ms.fused import fuse, unflatten

    params, grads = _params(), _grads()
    tx = optax.inject_hyperparams(factory)(**kwargs, param_groups=GROUPS)
    got, state = _run(tx, params, grads, update=jax.jit(tx.update))
    want, _ = _run(factory(**kwargs, param_groups=GROUPS), params, grads)
    _assert_same(got, want)

    layout = fuse(factory(**kwargs))
    fused = optax.inject_hyperparams(lambda learning_rate: fuse(factory(learning_rate, **{
        k: v for k, v in kwargs.items() if k != "learning_rate"})))(kwargs["learning_rate"])
    flat_p, flat_g = layout.flatten(params), layout.flatten(grads)
    got, _ = _run(fused, flat_p, flat_g, update=jax.jit(fused.update))
    want, _ = _run(factory(**kwargs), params, grads)
    _assert_same(unflatten(got[-1]), want[-1])


def test_inject_hyperparams_keeps_mindspore_validation():
    # Python values: MindSpore's types (an int beta is a TypeError), checked when optax builds the optimizer
    with pytest.raises(TypeError, match="beta1"):
        jaxopt_ms.adam(beta1=1)
    # NumPy floating scalars and JAX arrays: accepted with a valid value (checked when concrete); type before value:
    # MindSpore rejects such types outright (TypeError), so an invalid one is its TypeError, not a ValueError
    jaxopt_ms.adam(beta1=np.float32(0.8), beta2=jnp.asarray(0.99), eps=np.float64(1e-6))
    with pytest.raises(TypeError, match="beta1.*must be in range"):
        jaxopt_ms.adam(beta1=jnp.asarray(1.0))
    with pytest.raises(TypeError, match="beta2"):
        jaxopt_ms.adam(beta2=np.float32(1.5))
    with pytest.raises(TypeError, match="momentum.*finite"):
        jaxopt_ms.sgd(momentum=jnp.asarray(float("nan")))
    with pytest.raises(ValueError, match="beta2"):
        jaxopt_ms.adam(beta2=1.5)  # the Python float: MindSpore's ValueError
    with pytest.raises(TypeError, match="beta1"):
        jaxopt_ms.adam(beta1=jnp.asarray(1))  # an integer array where MindSpore wants a float
    with pytest.raises(TypeError, match="beta1"):
        jaxopt_ms.adam(beta1=jnp.asarray([0.9, 0.8]))
    # inject_hyperparams: out of range is caught at init (the value is concrete there; optax made it an array, so
    # it is the array's TypeError, naming the range); a Python int beta (an integer array there) stays a TypeError
    tx = optax.inject_hyperparams(jaxopt_ms.adam)(learning_rate=0.1, beta2=1.5)
    with pytest.raises(TypeError, match="beta2.*must be in range"):
        tx.init(_params())
    with pytest.raises(TypeError, match="beta1"):
        optax.inject_hyperparams(jaxopt_ms.adam)(beta1=1).init(_params())


# ----------------------------------------------------------------------------------------------------------------
# meta-gradients
# ----------------------------------------------------------------------------------------------------------------

# settings away from kinks (clips, maxima, thresholds) and with an eps large enough that float64 central
# differences with h = 1e-6 resolve the curvature (|g| ~ h against eps)
FD_OVERRIDES = {
    "adam": dict(eps=1e-2), "lazy_adam": dict(eps=1e-2), "adam_weight_decay": dict(eps=1e-2),
    "adam_offload": dict(eps=1e-2, on_host=False), "adamax": dict(eps=1e-2), "lamb": dict(eps=1e-2),
    "adafactor": dict(eps=(1e-2, 1e-3)), "adafactor_fixed_lr": dict(eps=(1e-2, 1e-3)),
}
# MindSpore computes these in float32 even for float64 leaves (Lamb's and LARS's norms, ASGD's eta and mu): their
# rounding (~1e-7 of the loss) over a central difference of step h is ~1e-7 / h, so a larger step and tolerance
FLOAT32_INSIDE = {"lamb", "lars_momentum", "asgd"}
# discontinuous at an exactly zero gradient, so no derivative along that leaf's gradient: Lamb's trust ratio jumps
# from 1 (zero norm) to the clipped ratio; Rprop's sign(g).
# LARS's trust ratio has ||g|| in its denominator: g f(|g|) is differentiable at 0 but central differences along
# that leaf have an O(h) error, which hides the comparison
KINK_AT_ZERO = {"lamb", "rprop", "lars_momentum"}


def _has_lr(name, factory, kwargs):
    return "learning_rate" in _numeric(factory, kwargs) or name == "lars_momentum"


def _meta_loss(name, factory, kwargs):
    weights = jax.tree.map(lambda x: jnp.linspace(0.5, 1.5, x.size, dtype=x.dtype).reshape(x.shape), _params())

    def loss(params, grads, lr):
        kw = dict(kwargs, **FD_OVERRIDES.get(name, {}))
        if name == "lars_momentum":
            kw["optimizer"] = jaxopt_ms.momentum(lr, 0.9, weight_decay=0.01)
        elif "learning_rate" in kw:
            kw["learning_rate"] = lr
        opt = factory(**kw)
        state = opt.init(params)
        p = params
        for g in (grads, jax.tree.map(lambda x: x * (1.3 - 0.5 * x), grads)):  # zero stays zero
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return sum(jnp.sum(w * x) for w, x in zip(jax.tree.leaves(weights), jax.tree.leaves(p)))

    return loss


@pytest.mark.parametrize("name,factory,kwargs", ZOO, ids=IDS)
def test_meta_gradients_finite_and_match_finite_differences(name, factory, kwargs):
    with jax.enable_x64(True):
        params, grads = _params(jnp.float64), _grads(jnp.float64)
        lr = jnp.asarray(kwargs.get("learning_rate", 0.1), jnp.float64)
        value_and_grad = jax.jit(jax.value_and_grad(_meta_loss(name, factory, kwargs), argnums=(0, 1, 2)))
        _, (dp, dg, dlr) = value_and_grad(params, grads, lr)
        for leaf in jax.tree.leaves((dp, dg, dlr)):
            assert bool(jnp.all(jnp.isfinite(leaf))), (name, dp, dg, dlr)

        rng = np.random.default_rng(0)
        has_lr = _has_lr(name, factory, kwargs)
        tol = 1e-3 if name in FLOAT32_INSIDE else 1e-5
        for which in ("params", "grads", "lr") if has_lr else ("params", "grads"):
            up = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)) * (which == "params"), params)
            ug = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)) * (which == "grads"), grads)
            if name in KINK_AT_ZERO:
                ug["z"] = jnp.zeros_like(ug["z"])
            ulr = 0.1 * lr * (which == "lr")
            ad = sum(jnp.vdot(a, u) for a, u in zip(jax.tree.leaves((dp, dg)), jax.tree.leaves((up, ug)))) + dlr * ulr

            def fd(h):
                shift = lambda t: (jax.tree.map(lambda x, u: x + t * u, params, up),
                                   jax.tree.map(lambda x, u: x + t * u, grads, ug), lr + t * ulr)
                return float((value_and_grad(*shift(h))[0] - value_and_grad(*shift(-h))[0]) / (2 * h))

            # the best central difference over a range of steps: truncation error falls and rounding error grows
            # as the step shrinks (the float32 parts of FLOAT32_INSIDE need the larger steps)
            errors = [abs(fd(h) - float(ad)) for h in (3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6)]
            assert min(errors) <= tol * abs(float(ad)) + 1e-9, (name, which, float(ad), errors)


def test_meta_gradients_lars_and_lamb_at_zero():
    """The cases that were NaN: LARS around Momentum (every leaf), Lamb with an exactly zero gradient leaf."""
    params, grads = _params(), _grads()
    params["b"] = jnp.zeros(2)  # a zero-initialised bias: a zero norm
    grads["b"] = jnp.zeros(2)
    for opt_fn in (lambda lr: jaxopt_ms.lars(jaxopt_ms.momentum(lr, 0.9)),
                   lambda lr: jaxopt_ms.lamb(lr, weight_decay=0.01)):
        def loss(p, g, lr):
            opt = opt_fn(lr)
            state = opt.init(p)
            for _ in range(2):
                u, state = opt.update(g, state, p)
                p = optax.apply_updates(p, u)
            return sum(jnp.sum(x * x) for x in jax.tree.leaves(p))

        out = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, grads, jnp.float32(0.1))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))


VARIANTS = [("adam", lambda lr, **kw: jaxopt_ms.adam(lr, **kw)),
            ("lamb", lambda lr, **kw: jaxopt_ms.lamb(lr, weight_decay=0.01, **kw)),
            ("lars_momentum", lambda lr, **kw: jaxopt_ms.lars(jaxopt_ms.momentum(lr, 0.9, weight_decay=0.01, **kw)))]


@pytest.mark.parametrize("name,build", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_meta_gradients_finite_fused_and_grouped(name, build):
    """The fused (flat-buffer) and grouped variants: finite meta-gradients at a zero-gradient leaf too."""
    from jaxopt_ms.fused import fuse, unflatten

    params, grads = _params(), _grads()
    groups = [{"params": ["w", "z"], "weight_decay": 0.01}, {"params": ["k"], "lr": 0.05}]

    def loss(p, g, lr, fused):
        opt = build(lr, param_groups=groups) if not fused else fuse(build(lr))
        if fused:
            p, g = opt.flatten(p), opt.flatten(g)
        state = opt.init(p)
        for _ in range(2):
            u, state = opt.update(g, state, p)
            p = optax.apply_updates(p, u)
        p = unflatten(p) if fused else p
        return sum(jnp.sum(x * x) for x in jax.tree.leaves(p))

    for fused in (False, True):
        out = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(params, grads, jnp.float32(0.1), fused)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out)), (name, fused, out)
        assert float(jnp.abs(out[2])) > 0  # the learning rate matters


# ----------------------------------------------------------------------------------------------------------------
# learning-rate validation by value
# ----------------------------------------------------------------------------------------------------------------

BAD_LRS = [-0.1, np.float32(-0.1), np.float64(-0.1), jnp.asarray(-0.1), float("nan"), float("inf"),
           np.float32("nan"), jnp.asarray(float("inf")), [0.1, -0.1], np.asarray([0.1, float("nan")])]


@pytest.mark.parametrize("name,factory,kwargs", LR_ZOO, ids=[r[0] for r in LR_ZOO])
def test_learning_rate_rule_is_by_value(name, factory, kwargs):
    """Every invalid concrete rate is refused; with MindSpore's exception type, the type checked first: a NumPy scalar
    (np.float64, a float, aside) is a type MindSpore rejects (TypeError), so is any array for FTRL (a float only);
    MindSpore takes a 0-d Tensor rate (a JAX array here) unchecked, and jaxopt_ms checks its value (ValueError)."""
    for bad in BAD_LRS:
        if name == "ftrl" and np.ndim(bad) == 1:
            continue  # FTRL rejects every per-step rate (ValueError too, for its own reason)
        by_type = isinstance(bad, np.generic) and not isinstance(bad, float) or (
            name == "ftrl" and isinstance(bad, (jax.Array, np.ndarray)))
        with pytest.raises(TypeError if by_type else ValueError, match="learning"):
            factory(**{**kwargs, "learning_rate": bad})
    state = factory(**kwargs).init(_params())
    for bad in (-1.0, np.float32(-1.0), jnp.asarray(-1.0), float("nan"), float("inf")):
        with pytest.raises(ValueError, match="learning_rate"):
            jaxopt_ms.set_lr(state, bad)


def test_schedule_returning_a_non_scalar_is_a_clear_error():
    opt = jaxopt_ms.sgd(lambda step: jnp.full((2,), 0.1))
    with pytest.raises(ValueError, match="schedule must return a scalar"):
        opt.init(_params())


def test_set_lr_where_it_would_be_ignored_is_refused():
    # a rate that inject_hyperparams schedules is overwritten at every update
    tx = optax.inject_hyperparams(jaxopt_ms.adam)(learning_rate=optax.linear_schedule(0.1, 0.01, 10))
    with pytest.raises(ValueError, match="schedule"):
        jaxopt_ms.set_lr(tx.init(_params()), 0.2)


# ----------------------------------------------------------------------------------------------------------------
# gradients: dtype and shape
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,factory,kwargs", ZOO, ids=IDS)
def test_integer_gradients_and_wrong_shapes_raise(name, factory, kwargs):
    # the checks run when update is traced: eval_shape traces without running (cheap)
    opt = factory(**kwargs)
    params = _params()
    state = jax.eval_shape(opt.init, params)
    update = lambda g, p=None: jax.eval_shape(lambda g, s, p: opt.update(g, s, p), g, state, p)
    int_grads = jax.tree.map(lambda x: jnp.ones(x.shape, jnp.int32), params)
    with pytest.raises(TypeError, match="floating"):
        update(int_grads, params)
    wrong = dict(_grads(), w=jnp.ones((3, 3)))  # would broadcast against (3,)
    with pytest.raises(ValueError, match="shape"):
        update(wrong, params)
    try:
        update(_grads())
    except ValueError as e:  # the optimizer needs params (weight decay, trust ratios, AdaFactor's RMS)
        assert "needs the parameters" in str(e)
        return
    for bad in (dict(_grads(), w=jnp.ones((3, 3))), dict(_grads(), w=jnp.ones((1,)))):
        with pytest.raises(ValueError, match="shape"):
            update(bad)


# ----------------------------------------------------------------------------------------------------------------
# flax.nnx.Optimizer
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,factory,kwargs", LR_ZOO, ids=[r[0] for r in LR_ZOO])
def test_set_lr_and_current_lr_on_nnx_optimizer(name, factory, kwargs):
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, factory(**kwargs), wrt=nnx.Param)
    lr = jaxopt_ms.current_lr(opt.opt_state)
    assert isinstance(lr, jax.Array) and float(lr) == np.float32(kwargs["learning_rate"])
    opt.opt_state = jaxopt_ms.set_lr(opt.opt_state, 0.5 * kwargs["learning_rate"])
    assert float(jaxopt_ms.current_lr(opt.opt_state)) == np.float32(0.5 * kwargs["learning_rate"])
    jaxopt_ms.set_lr(opt.opt_state, 0.25 * kwargs["learning_rate"])  # in place: nnx Variables are mutable
    assert float(jaxopt_ms.current_lr(opt.opt_state)) == np.float32(0.25 * kwargs["learning_rate"])


def test_nnx_optimizer_update_uses_the_new_rate():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    start = jax.tree.map(jnp.array, params)
    opt = nnx.Optimizer(model, jaxopt_ms.sgd(0.1), wrt=nnx.Param)
    jaxopt_ms.set_lr(opt.opt_state, 0.5)
    grads = jax.tree.map(jnp.ones_like, params)
    opt.update(model, grads)
    got = nnx.state(model, nnx.Param)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(start)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b) - 0.5, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------
# repr
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,factory,kwargs", ZOO, ids=IDS)
def test_repr_shows_factory_and_arguments(name, factory, kwargs):
    text = repr(factory(**kwargs))
    assert text.startswith(f"{factory.__name__}(")
    for key, value in _bound(factory, kwargs).items():
        assert f"{key}=" in text
        if isinstance(value, float):
            assert f"{key}={value!r}" in text
    assert repr(jaxopt_ms.adam(1e-3)).startswith("adam(learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-08")
