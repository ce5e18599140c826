"""Lamb against a NumPy reference of MindSpore 2.10's ``Lamb`` op.

MindSpore cannot run Lamb on the CPU (``Unsupported op [Lamb] on CPU``, reference §8), so the expected values come
from ``lamb_reference`` below, a NumPy transcription of the op's GPU kernel (reference §3.7): moments as Adam,
``pow(beta, t)`` bias correction with ``t`` the step after the update, eps outside the root for the update and
inside it for the trust ratio, the per-leaf trust ratio ``||p|| / ||ghat||`` (1 when a norm is 0) clipped to
[0, 10], weight decay only on the decayed leaves, gradient centralization before the rule, no loss scale.
"""

import numpy as np
import pytest
from parity import assert_trajectory, run_trajectory

import jaxopt_ms
from jaxopt_ms.transforms import lamb_trust_ratio

f32 = np.float32
SHAPES = {"conv1.weight": (4, 16, 3, 3), "fc.weight": (5, 32), "fc.bias": (5,), "bn1.gamma": (4,), "bn1.beta": (4,),
          "zero.weight": (3, 2), "tiny.weight": (6,)}
STEPS = 6


def make_case(seed=0):
    rng = np.random.RandomState(seed)
    params0 = {k: rng.randn(*s).astype(f32) for k, s in SHAPES.items()}
    params0["zero.weight"][:] = 0.0  # ||p|| == 0: trust ratio 1
    grads = [{k: rng.randn(*s).astype(f32) for k, s in SHAPES.items()} for _ in range(STEPS)]
    for g in grads:
        g["tiny.weight"] *= f32(1e-7)  # ||ghat|| tiny: the trust ratio is clipped at 10
    return params0, grads


def lamb_reference(params0, grads, lr_of_step, beta1, beta2, eps, wd_of_leaf, centralized=()):
    params = {k: v.copy() for k, v in params0.items()}
    m = {k: np.zeros_like(v) for k, v in params0.items()}
    v = {k: np.zeros_like(x) for k, x in params0.items()}
    out = []
    b1, b2 = f32(beta1), f32(beta2)
    for k, g_step in enumerate(grads):
        t = f32(k + 1)
        lr = f32(lr_of_step(k))
        for name, p in params.items():
            g = g_step[name]
            if name in centralized:
                g = g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)
            wd = f32(wd_of_leaf(name, k))
            m[name] = b1 * m[name] + (f32(1) - b1) * g
            v[name] = b2 * v[name] + (f32(1) - b2) * g * g
            mh = m[name] / (f32(1) - np.power(b1, t))
            vh = v[name] / (f32(1) - np.power(b2, t))
            r = mh / (np.sqrt(vh) + f32(eps)) + wd * p
            ghat = mh / np.sqrt(vh + f32(eps)) + wd * p
            p_norm, g_norm = np.linalg.norm(p), np.linalg.norm(ghat)
            trust = p_norm / g_norm if p_norm > 0 and g_norm > 0 else f32(1)
            trust = np.clip(trust, 0, 10)
            params[name] = p - f32(trust) * lr * r
        out.append({k: x.copy() for k, x in params.items()})
    return out


def not_beta_gamma(wd):
    return lambda name, k: wd if "beta" not in name and "gamma" not in name else 0.0


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_matches_reference_not_grouped(jit):
    params0, grads = make_case()
    lrs = [0.01, 0.02, 0.015, 0.01, 0.005, 0.002]
    opt = jaxopt_ms.lamb(lrs, beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.05)
    expected = lamb_reference(params0, grads, lambda k: lrs[k], 0.8, 0.9, 1e-3, not_beta_gamma(0.05))
    assert_trajectory(run_trajectory(opt, params0, grads, jit=jit), expected, label="lamb")


def test_trust_ratio_edge_cases_are_exercised():
    params0, grads = make_case()
    opt = jaxopt_ms.lamb(0.01, weight_decay=0.0)
    got = run_trajectory(opt, params0, grads[:1])[0]
    # step 1: mh/sqrt(vh) = sign(g), so |update| = 1 and the zero leaf moves by lr (trust 1), the tiny one by
    # 10 * lr * |g|/(|g| + eps) (trust clipped at 10)
    np.testing.assert_allclose(np.abs(got["zero.weight"]), 0.01 * np.abs(grads[0]["zero.weight"]) / (
        np.abs(grads[0]["zero.weight"]) + 1e-6), rtol=1e-5)
    step = np.abs(got["tiny.weight"] - params0["tiny.weight"])
    g = np.abs(grads[0]["tiny.weight"])
    np.testing.assert_allclose(step, 10 * 0.01 * g / (g + 1e-6), rtol=1e-4)


def test_matches_reference_with_groups_dynamic_weight_decay_and_centralization():
    params0, grads = make_case(1)
    wd_schedule = lambda step: 0.01 * (step + 1)  # noqa: E731
    groups = [
        {"params": ["conv1.weight", "bn1.gamma"], "weight_decay": wd_schedule, "grad_centralization": True},
        {"params": ["fc.weight", "fc.bias", "bn1.beta", "zero.weight", "tiny.weight"], "lr": 0.005,
         "weight_decay": 0.0},
    ]
    opt = jaxopt_ms.lamb(0.01, beta1=0.9, beta2=0.99, eps=1e-4, weight_decay=0.02, param_groups=groups)

    def wd(name, k):
        return 0.01 * (k + 1) if name in ("conv1.weight", "bn1.gamma") else 0.0

    first = lamb_reference({k: params0[k] for k in ("conv1.weight", "bn1.gamma")}, grads, lambda k: 0.01, 0.9,
                           0.99, 1e-4, wd, centralized=("conv1.weight",))
    rest = lamb_reference({k: v for k, v in params0.items() if k not in ("conv1.weight", "bn1.gamma")}, grads,
                          lambda k: 0.005, 0.9, 0.99, 1e-4, wd)
    expected = [{**a, **b} for a, b in zip(first, rest)]
    assert_trajectory(run_trajectory(opt, params0, grads), expected, label="lamb groups")


def test_trust_ratio_nan_is_zero():
    assert float(lamb_trust_ratio(np.full(2, np.inf, f32), np.full(2, np.inf, f32))) == 0.0  # inf / inf


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(beta1=1), TypeError, r"'beta1'.*int"),
    (dict(beta2=1.0), ValueError, r"'beta2'.*1\.0"),
    (dict(eps=0.0), ValueError, r"'eps'.*0\.0"),
    (dict(weight_decay=-0.1), ValueError, r"'weight_decay'.*-0\.1"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.lamb(0.01, **kwargs)


def test_learning_rate_is_required():
    with pytest.raises(TypeError, match="learning_rate"):
        jaxopt_ms.lamb()
