"""RMSProp against MindSpore 2.10.

Centred RMSProp: MindSpore (CPU) trajectories in tests/fixtures/rmsprop (scripts/mindspore_fixtures/family.py).
Non-centred RMSProp: MindSpore's CPU kernel contradicts its documented formula (its vectorised path computes
``sqrt(ms) + eps``, its scalar tail and the GPU kernel ``sqrt(ms + eps)``, reference §3.9), so the expected values
come from a NumPy transcription of the documented rule below, with MindSpore's pipeline (coupled weight decay
pre-multiplied by the loss scale, then multiplication by the float32 reciprocal of the loss scale, reference §1).
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from fixture_replay import fixture_params, replay
from parity import assert_trajectory, case_paths, run_trajectory

import jaxopt_ms

f32 = np.float32
SHAPES = {"conv1.weight": (4, 16, 3, 3), "fc.weight": (5, 32), "fc.bias": (5,), "bn1.gamma": (4,), "bn1.beta": (4,)}


def rmsprop_reference(params0, grads, lr, decay, momentum, eps, wd, loss_scale):
    """The documented rule (eps inside the root, mean square starting at 1, lr folded into the moment)."""
    out, state = [], {}
    params = {k: v.copy() for k, v in params0.items()}
    for g_step in grads:
        for name, p in params.items():
            ms, mom = state.get(name, (np.ones_like(p), np.zeros_like(p)))
            g = g_step[name]
            if wd > 0 and "beta" not in name and "gamma" not in name:
                g = g + p * f32(wd * loss_scale)
            g = g * f32(1.0 / loss_scale)
            ms = f32(decay) * ms + f32(1 - decay) * g * g
            mom = f32(momentum) * mom + f32(lr) * g / np.sqrt(ms + f32(eps))
            params[name] = p - mom
            state[name] = (ms, mom)
        out.append({k: v.copy() for k, v in params.items()})
    return out


@pytest.mark.parametrize("path", fixture_params("rmsprop"))
def test_centered_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_centered_matches_mindspore_without_jit():
    replay(case_paths("rmsprop")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("rmsprop")[-1], in_chain=True)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
def test_not_centered_matches_documented_formula(momentum, jit):
    rng = np.random.RandomState(1)
    params0 = {k: rng.randn(*s).astype(f32) for k, s in SHAPES.items()}
    grads = [{k: (4 * rng.randn(*s)).astype(f32) for k, s in SHAPES.items()} for _ in range(6)]
    kw = dict(learning_rate=0.01, decay=0.8, momentum=momentum, epsilon=0.3, weight_decay=0.01, loss_scale=4.0)
    got = run_trajectory(jaxopt_ms.rmsprop(**kw), params0, grads, jit=jit)
    expected = rmsprop_reference(params0, grads, 0.01, 0.8, momentum, 0.3, 0.01, 4.0)
    assert_trajectory(got, expected, label="rmsprop not centred")
    # eps placement is discriminated: eps outside the root would be far off.
    p1 = params0["fc.bias"] - f32(0.01) * grads[0]["fc.bias"] / 4 / (np.sqrt(f32(0.8) + f32(0.2) * (grads[0][
        "fc.bias"] / 4) ** 2) + f32(0.3))
    assert not np.allclose(got[0]["fc.bias"], p1, rtol=1e-3)


def test_is_built_from_optax_pieces_with_mindspore_initial_scale():
    state = jaxopt_ms.rmsprop(0.1, centered=True, momentum=0.9).init({"w": jnp.zeros(3)})
    stddev = [s for s in state if isinstance(s, optax.ScaleByRStdDevState)]
    assert len(stddev) == 1
    np.testing.assert_array_equal(stddev[0].nu["w"], np.ones(3, f32))  # MindSpore's mean_square starts at 1
    assert any(isinstance(s, optax.TraceState) for s in state)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(decay=1), TypeError, r"'decay'.*int"),
    (dict(decay=-0.1), ValueError, r"'decay'.*-0\.1"),
    (dict(momentum=1), TypeError, r"'momentum'.*int"),
    (dict(momentum=-0.5), ValueError, r"'momentum'.*-0\.5"),
    (dict(epsilon=0.0), ValueError, r"'epsilon'.*0\.0"),
    (dict(epsilon=1), TypeError, r"'epsilon'.*int"),
    (dict(use_locking=1), TypeError, r"'use_locking'.*int"),
    (dict(centered="yes"), TypeError, r"'centered'.*str"),
    (dict(loss_scale=0.0), ValueError, r"'loss_scale'.*0\.0"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.rmsprop(**kwargs)


def test_decay_has_no_upper_bound_as_in_mindspore():
    jaxopt_ms.rmsprop(decay=1.5)
