"""LARS against a NumPy reference of MindSpore 2.10's ``nn.LARS`` with its ``LARSUpdate`` op.

MindSpore cannot run LARS on the CPU (``Unsupported op [LARSUpdate] on CPU``, reference §8, and the
``SquareSumAll`` it uses for the norms is unreliable on the CPU, §10), so the expected values come from
``lars_gradient_reference`` below, a NumPy transcription of the op (Ascend kernel ``lars_v2_update``, reference
§3.13): gradients multiplied by the float32 reciprocal of the wrapped optimizer's loss scale, then on each leaf that
``lars_filter`` selects ``trust = coefficient ||w|| / (||g|| + wd ||w|| + eps)`` (with ``use_clip``:
``clip(trust / lr, 0, 1)`` with the wrapped optimizer's learning rate of this update), ``g <- trust (g + wd w)``;
other leaves unchanged and undecayed. The wrapped optimizer then runs without weight decay and loss scale
(Momentum in NumPy below; other optimizers through their own tested jaxopt_ms implementation).
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, run_trajectory

import jaxopt_ms

f32 = np.float32
SHAPES = {"conv1.weight": (4, 16, 3, 3), "fc.weight": (5, 32), "fc.bias": (5,), "bn1.gamma": (4,),
          "encoder.LayerNorm.beta": (4,)}


def make_case(seed=0, grad_scale=1.0):
    rng = np.random.RandomState(seed)
    params0 = {k: rng.randn(*s).astype(f32) for k, s in SHAPES.items()}
    grads = [{k: (grad_scale * rng.randn(*s)).astype(f32) for k, s in SHAPES.items()} for _ in range(6)]
    return params0, grads


def mindspore_lars_leaf(name):
    return "LayerNorm" not in name and "bias" not in name


def lars_gradient_reference(params, grads, *, wd_of_leaf, loss_scale, coefficient, epsilon, use_clip, lr_of_leaf):
    out = {}
    for name, p in params.items():
        g = grads[name] * f32(1.0 / loss_scale)
        if mindspore_lars_leaf(name):
            wd = f32(f32(wd_of_leaf(name) * loss_scale) / f32(loss_scale))
            w_norm, g_norm = np.sqrt(np.sum(p * p)), np.sqrt(np.sum(g * g))
            trust = f32(coefficient) * w_norm / (g_norm + wd * w_norm + f32(epsilon))
            if use_clip:
                trust = np.clip(trust / f32(lr_of_leaf(name)), 0, 1)
            g = trust * (g + wd * p)
        out[name] = g
    return out


def lars_momentum_reference(params0, grads, *, lr_of_step, momentum, **lars_kw):
    params = {k: v.copy() for k, v in params0.items()}
    moments = {k: np.zeros_like(v) for k, v in params0.items()}
    out = []
    for k, g_step in enumerate(grads):
        lr_of_leaf = lambda name, k=k: lr_of_step(k, name)  # noqa: E731
        g = lars_gradient_reference(params, g_step, lr_of_leaf=lr_of_leaf, **lars_kw)
        for name in params:
            moments[name] = f32(momentum) * moments[name] + g[name]
            params[name] = params[name] - f32(lr_of_leaf(name)) * moments[name]
        out.append({k: v.copy() for k, v in params.items()})
    return out


def not_beta_gamma(wd):
    return lambda name: wd if "beta" not in name and "gamma" not in name else 0.0


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_momentum_with_weight_decay_and_loss_scale(jit):
    params0, grads = make_case(grad_scale=4.0)
    inner = jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.01, loss_scale=4.0)
    opt = jaxopt_ms.lars(inner, epsilon=1e-5, coefficient=0.01)
    expected = lars_momentum_reference(params0, grads, lr_of_step=lambda k, n: 0.1, momentum=0.9,
                                       wd_of_leaf=not_beta_gamma(0.01), loss_scale=4.0, coefficient=0.01,
                                       epsilon=1e-5, use_clip=False)
    assert_trajectory(run_trajectory(opt, params0, grads, jit=jit), expected, label="lars momentum")


def test_use_clip_reads_the_wrapped_learning_rate_of_this_update():
    params0, grads = make_case(1)
    lrs = [0.1, 0.05, 0.02, 0.08, 0.01, 0.03]
    opt = jaxopt_ms.lars(jaxopt_ms.momentum(lrs, 0.9, weight_decay=0.001), coefficient=0.001, use_clip=True)
    expected = lars_momentum_reference(params0, grads, lr_of_step=lambda k, n: lrs[k], momentum=0.9,
                                       wd_of_leaf=not_beta_gamma(0.001), loss_scale=1.0, coefficient=0.001,
                                       epsilon=1e-5, use_clip=True)
    got = run_trajectory(optax.chain(optax.identity(), opt), params0, grads)
    assert_trajectory(got, expected, label="lars use_clip")


def test_use_clip_with_group_learning_rates_and_group_weight_decay():
    params0, grads = make_case(2)
    groups = [{"params": ["conv1.weight", "bn1.gamma"], "lr": 0.05, "weight_decay": 0.02},
              {"params": ["fc.weight", "fc.bias", "encoder.LayerNorm.beta"]}]
    inner = jaxopt_ms.momentum(0.1, 0.8, weight_decay=0.01, param_groups=groups)
    opt = jaxopt_ms.lars(inner, epsilon=1e-4, coefficient=0.002, use_clip=True)
    in_first = ("conv1.weight", "bn1.gamma")
    # group mode: every leaf of a group with wd > 0 is decayed (names ignored), bn1.gamma included
    expected = lars_momentum_reference(
        params0, grads, lr_of_step=lambda k, n: 0.05 if n in in_first else 0.1, momentum=0.8,
        wd_of_leaf=lambda n: 0.02 if n in in_first else 0.01, loss_scale=1.0, coefficient=0.002, epsilon=1e-4,
        use_clip=True)
    assert_trajectory(run_trajectory(opt, params0, grads), expected, label="lars groups")


def test_wraps_ftrl_which_decays_every_leaf():
    params0, grads = make_case(3)
    opt = jaxopt_ms.lars(jaxopt_ms.ftrl(learning_rate=0.1, l1=0.01, weight_decay=0.05), coefficient=0.05)
    inner = jaxopt_ms.ftrl(learning_rate=0.1, l1=0.01)
    params, state = dict(params0), inner.init(params0)
    expected = []
    for g in grads:
        g = lars_gradient_reference({k: np.asarray(v) for k, v in params.items()}, g, wd_of_leaf=lambda n: 0.05,
                                    loss_scale=1.0, coefficient=0.05, epsilon=1e-5, use_clip=False,
                                    lr_of_leaf=None)
        updates, state = inner.update(g, state, params)
        params = optax.apply_updates(params, updates)
        expected.append({k: np.asarray(v) for k, v in params.items()})
    assert_trajectory(run_trajectory(opt, params0, grads), expected, label="lars ftrl")


def test_current_lr_and_state():
    opt = jaxopt_ms.lars(jaxopt_ms.momentum([0.1, 0.2], 0.9))
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    assert float(jaxopt_ms.current_lr(state)) == pytest.approx(0.1)
    _, state = opt.update(params, state, params)
    assert float(jaxopt_ms.current_lr(state)) == pytest.approx(0.2)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(optimizer=optax.sgd(0.1)), TypeError, r"'optimizer'.*GradientTransformation"),
    (dict(epsilon=1), TypeError, r"'epsilon'.*int"),
    (dict(coefficient=1), TypeError, r"'coefficient'.*int"),
    (dict(use_clip=1), TypeError, r"'use_clip'.*int"),
    (dict(lars_filter="bias"), TypeError, r"'lars_filter'.*str"),
    (dict(optimizer=jaxopt_ms.momentum([0.1, 0.2], 0.9, param_groups=[{"params": "w", "lr": 0.1}]),
          use_clip=True), ValueError, r"'use_clip'.*\[0\.1\]"),
])
def test_validation(kwargs, error, match):
    kwargs = {"optimizer": jaxopt_ms.momentum(0.1, 0.9), **kwargs}
    with pytest.raises(error, match=match):
        jaxopt_ms.lars(**kwargs)


def test_dynamic_weight_decay_reads_global_step_advanced_twice_per_update():
    # MindSpore's LARS increments the shared global_step a second time per call when the wrapped optimizer has a
    # dynamic weight decay and a fixed learning rate, so update k reads wd(2k) (reference §3.13).
    params0, grads = make_case(4)
    schedule = lambda step: 0.01 * (step + 1.0)  # noqa: E731
    opt = jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.9, weight_decay=schedule), coefficient=0.01)
    params = {k: v.copy() for k, v in params0.items()}
    moments = {k: np.zeros_like(v) for k, v in params0.items()}
    expected = []
    for k, g_step in enumerate(grads):
        wd = 0.01 * (2 * k + 1.0)
        g = lars_gradient_reference(params, g_step, wd_of_leaf=not_beta_gamma(wd), loss_scale=1.0,
                                    coefficient=0.01, epsilon=1e-5, use_clip=False, lr_of_leaf=None)
        for name in params:
            moments[name] = f32(0.9) * moments[name] + g[name]
            params[name] = params[name] - f32(0.1) * moments[name]
        expected.append({k: v.copy() for k, v in params.items()})
    assert_trajectory(run_trajectory(opt, params0, grads), expected, label="lars dynamic wd")
