"""Each building block alone inside an ``optax.chain``, against a NumPy transcription of its documented formula,
and each optimizer equal (bitwise) to the explicit chain of its blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import run_trajectory

import jaxopt_ms
from jaxopt_ms import transforms as T

RNG = np.random.RandomState(0)
PARAMS = {"conv1.weight": RNG.randn(4, 16, 3, 3).astype(np.float32), "fc.weight": RNG.randn(5, 7).astype(np.float32),
          "bn1.gamma": RNG.randn(4).astype(np.float32)}
GRADS = [{k: RNG.randn(*v.shape).astype(np.float32) for k, v in PARAMS.items()} for _ in range(4)]


def _update(block, grads=GRADS[0], params=PARAMS):
    tx = optax.chain(block)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return jax.tree.map(np.asarray, updates)


def test_add_decayed_weights_uses_the_filter_and_the_scaled_decay():
    out = _update(T.add_decayed_weights(0.1, 8.0))
    for k, g in GRADS[0].items():
        expected = g if "gamma" in k else g + PARAMS[k] * np.float32(0.1 * 8.0)
        np.testing.assert_allclose(out[k], expected, rtol=1e-6, atol=1e-7)  # XLA may fuse into an FMA


def test_add_decayed_weights_dynamic_reads_the_step():
    tx = optax.chain(T.add_decayed_weights(lambda step: 0.5 * (step + 1), 1.0, jaxopt_ms.decay_all))
    state = tx.init(PARAMS)
    zeros = jax.tree.map(np.zeros_like, PARAMS)
    for k in range(3):
        updates, state = tx.update(zeros, state, PARAMS)
        np.testing.assert_allclose(updates["fc.weight"], PARAMS["fc.weight"] * 0.5 * (k + 1), rtol=1e-6)


def test_centralize_gradients_only_qualifying_leaves():
    out = _update(T.centralize_gradients())
    g = GRADS[0]["conv1.weight"]
    np.testing.assert_allclose(out["conv1.weight"], g - g.mean(axis=(1, 2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["fc.weight"], GRADS[0]["fc.weight"])      # 7 % 16 != 0
    np.testing.assert_array_equal(out["bn1.gamma"], GRADS[0]["bn1.gamma"])      # rank 1


@pytest.mark.parametrize("scale", [8.0, 3.0])
def test_unscale_gradients_multiplies_by_the_float32_reciprocal(scale):
    out = _update(T.unscale_gradients(scale))
    for k, g in GRADS[0].items():
        np.testing.assert_array_equal(out[k], g * np.float32(1.0 / scale))


def test_scale_by_learning_rate_per_step():
    tx = optax.chain(T.scale_by_learning_rate([0.5, 0.25]))
    got = run_trajectory(tx, {"w": np.zeros(2, np.float32)}, [{"w": np.ones(2, np.float32)}] * 3)
    np.testing.assert_array_equal(got[-1]["w"], np.full(2, -1.0, np.float32))


def test_scale_by_sgd_alone():
    tx = optax.chain(T.scale_by_sgd(0.9, 0.3, False), optax.scale(-0.1))
    got = run_trajectory(tx, PARAMS, GRADS)
    p = {k: v.copy() for k, v in PARAMS.items()}
    acc = {}
    for i, g in enumerate(GRADS):
        for k in p:
            acc[k] = g[k] if i == 0 else np.float32(0.9) * acc[k] + np.float32(0.7) * g[k]
            p[k] = p[k] - np.float32(0.1) * acc[k]
    for k in p:
        np.testing.assert_allclose(got[-1][k], p[k], rtol=1e-5, atol=1e-6)


def _adam_numpy(b1, b2, eps, nesterov=False, amsgrad=False, corrected=True):
    f = np.float32
    p = {k: v.copy() for k, v in PARAMS.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    vh = {k: np.zeros_like(x) for k, x in p.items()}
    b1p = b2p = f(1)
    for g in GRADS:
        b1p, b2p = f(b1p * f(b1)), f(b2p * f(b2))
        for k in p:
            m[k] = f(b1) * m[k] + f(1 - b1) * g[k]
            v[k] = f(b2) * v[k] + f(1 - b2) * g[k] * g[k]
            vh[k] = np.maximum(vh[k], v[k])
            num = f(b1) * m[k] + f(1 - b1) * g[k] if nesterov else m[k]
            corr = np.sqrt(f(1) - b2p) / (f(1) - b1p) if corrected else f(1)
            p[k] = p[k] - f(0.01) * corr * num / (np.sqrt(vh[k] if amsgrad else v[k]) + f(eps))
    return p


@pytest.mark.parametrize("nesterov, amsgrad", [(False, False), (True, False), (False, True)])
def test_scale_by_adam_alone(nesterov, amsgrad):
    tx = optax.chain(T.scale_by_adam(0.8, 0.9, 0.1, nesterov, amsgrad), optax.scale(-0.01))
    got = run_trajectory(tx, PARAMS, GRADS)
    expected = _adam_numpy(0.8, 0.9, 0.1, nesterov, amsgrad)
    for k in expected:
        np.testing.assert_allclose(got[-1][k], expected[k], rtol=1e-5, atol=1e-6)


def test_scale_by_adam_weight_decay_alone():
    tx = optax.chain(T.scale_by_adam_weight_decay(0.8, 0.9, 0.1), optax.scale(-0.01))
    got = run_trajectory(tx, PARAMS, GRADS)
    expected = _adam_numpy(0.8, 0.9, 0.1, corrected=False)
    for k in expected:
        np.testing.assert_allclose(got[-1][k], expected[k], rtol=1e-5, atol=1e-6)


EXPLICIT_CHAINS = {
    "sgd": (lambda: jaxopt_ms.sgd(0.1, 0.9, 0.3, 0.01, False, 8.0),
            lambda: optax.chain(T.add_decayed_weights(0.01, 8.0), T.unscale_gradients(8.0), T.scale_by_sgd(0.9, 0.3),
                                T.scale_by_learning_rate(0.1))),
    "momentum": (lambda: jaxopt_ms.momentum(0.1, 0.9, 0.01, 8.0, True),
                 lambda: optax.chain(T.add_decayed_weights(0.01, 8.0), T.unscale_gradients(8.0),
                                     optax.trace(0.9, nesterov=True), T.scale_by_learning_rate(0.1))),
    "adam": (lambda: jaxopt_ms.adam(0.01, 0.8, 0.9, 0.1, False, True, 0.01, 4.0, True),
             lambda: optax.chain(T.add_decayed_weights(0.01, 4.0), T.unscale_gradients(4.0),
                                 T.scale_by_adam(0.8, 0.9, 0.1, True, True), T.scale_by_learning_rate(0.01))),
    "adam_weight_decay": (lambda: jaxopt_ms.adam_weight_decay(0.01, 0.8, 0.9, 0.1, 0.01),
                          lambda: optax.chain(T.scale_by_adam_weight_decay(0.8, 0.9, 0.1), T.add_decayed_weights(0.01),
                                              T.scale_by_learning_rate(0.01))),
}


@pytest.mark.parametrize("name", sorted(EXPLICIT_CHAINS))
def test_optimizer_is_its_chain_of_blocks(name):
    alias, chain = EXPLICIT_CHAINS[name]
    got = run_trajectory(alias(), PARAMS, GRADS)
    expected = run_trajectory(chain(), PARAMS, GRADS)
    for a, b in zip(got, expected):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_blocks_compose_with_optax_blocks():
    tx = optax.chain(optax.clip_by_global_norm(1.0), T.unscale_gradients(2.0), T.scale_by_adam(0.9, 0.99, 1e-3),
                     T.scale_by_learning_rate(jnp.asarray(0.1)))
    params = {"w": jnp.ones(3)}
    updates, state = jax.jit(tx.update)({"w": jnp.full(3, 10.0)}, tx.init(params), params)
    assert np.all(np.isfinite(updates["w"])) and float(jaxopt_ms.current_lr(state)) == pytest.approx(0.1)
