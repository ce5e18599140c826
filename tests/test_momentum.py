"""Momentum against MindSpore 2.10 golden trajectories (tests/fixtures/spine).

MindSpore's CPU kernel of ``ApplyMomentum`` ignores ``use_nesterov`` (reference §9.6). The nesterov cases
(``momentum_nesterov*``) therefore follow the documented formula / GPU kernel ``p -= lr*g + lr*momentum*v``: their
fixtures were computed by MindSpore's ``nn.SGD(momentum, nesterov=True)`` (the same recurrence) and cross-checked
against a NumPy transcription of the formula in the generator; their config's ``reference`` says so.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from parity import load_case, run_trajectory
from spine_cases import check_case, parity_params, spine_cases

import jaxopt_ms

CASES = spine_cases(lambda name, cfg: cfg["optimizer"] == "momentum" and "param_groups" not in cfg["args"])
# Also run un-jitted and inside optax.chain (all cases run jitted).
EVERY_MODE = ("momentum_nesterov_weight_decay_loss_scale", "momentum_weight_decay_loss_scale")


@pytest.mark.parametrize("path, mode", parity_params(CASES, EVERY_MODE))
def test_momentum_matches_mindspore(path, mode):
    case = load_case(path)
    if case.config["args"].get("use_nesterov"):
        assert "documented formula" in case.config["reference"]
    check_case(case, mode)


def test_nesterov_is_not_the_cpu_kernel_behaviour():
    # The CPU kernel would give the plain trajectory; we follow the documented nesterov formula instead.
    params = {"w": jnp.ones(3)}
    grads = [{"w": jnp.full(3, float(i + 1))} for i in range(3)]
    plain = run_trajectory(jaxopt_ms.momentum(0.1, 0.9), params, grads)
    nesterov = run_trajectory(jaxopt_ms.momentum(0.1, 0.9, use_nesterov=True), params, grads)
    assert not np.allclose(plain[-1]["w"], nesterov[-1]["w"])
    # NumPy transcription: v = m v + g; p -= lr g + lr m v.
    p, v = np.ones(3, np.float32), np.zeros(3, np.float32)
    for g in grads:
        g = np.asarray(g["w"])
        v = np.float32(0.9) * v + g
        p = p - (np.float32(0.1) * g + np.float32(0.1) * np.float32(0.9) * v)
    np.testing.assert_allclose(nesterov[-1]["w"], p, rtol=1e-6)
