"""ASGD against MindSpore 2.10 (CPU) trajectories: tests/fixtures/asgd (scripts/mindspore_fixtures/family.py)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths

import jaxopt_ms
from jaxopt_ms.transforms import ASGDState, apply_asgd


@pytest.mark.parametrize("path", fixture_params("asgd"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(case_paths("asgd")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("asgd")[-1], in_chain=True)


def test_running_average_and_step_sizes_follow_the_documented_rule():
    # reference §7, transcribed in NumPy: t0 = 2 makes mu leave 1 at the third update.
    lr, lambd, alpha, t0 = 0.1, 0.05, 0.5, 2.0
    rng = np.random.RandomState(0)
    p = rng.randn(5).astype(np.float32)
    grads = [rng.randn(5).astype(np.float32) for _ in range(5)]
    opt = apply_asgd(lr, lambd, alpha, t0)
    params = {"w": jnp.asarray(p)}
    state = opt.init(params)
    eta, mu, ax = 0.0, 1.0, np.zeros(5, np.float32)
    for t, g in enumerate(grads, 1):
        updates, state = opt.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        eta = lr if t == 1 else eta
        p = p * np.float32(1 - lambd * eta) - np.float32(eta) * g
        ax = ax + (p - ax) * np.float32(mu) if mu != 1 else p.copy()
        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1.0, t - t0)
        assert isinstance(state, ASGDState)
        np.testing.assert_allclose(params["w"], p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.ax["w"], ax, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.eta["w"], eta, rtol=1e-6)
        np.testing.assert_allclose(state.mu["w"], mu, rtol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lambd=1), TypeError, r"'lambd'.*int"),
    (dict(alpha=1), TypeError, r"'alpha'.*int"),
    (dict(t0=100), TypeError, r"'t0'.*int"),
    (dict(weight_decay=-1.0), ValueError, r"'weight_decay'.*-1\.0"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.asgd(**kwargs)
