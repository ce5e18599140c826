"""SGD against MindSpore 2.10 golden trajectories (tests/fixtures/spine, scripts/mindspore_fixtures/spine.py).

Covered: momentum 0 (dampening ignored), momentum, dampening (first step takes ``accum = g`` undamped), nesterov,
weight decay with the gamma/beta filter and loss_scale 8, a per-step lr list; plain, jitted and inside optax.chain.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import load_case, run_trajectory
from spine_cases import check_case, parity_params, spine_cases

import jaxopt_ms

CASES = spine_cases(lambda name, cfg: cfg["optimizer"] == "sgd" and "param_groups" not in cfg["args"])
# Also run un-jitted and inside optax.chain (all cases run jitted).
EVERY_MODE = ("sgd_weight_decay_loss_scale", "sgd_nesterov")


@pytest.mark.parametrize("path, mode", parity_params(CASES, EVERY_MODE))
def test_sgd_matches_mindspore(path, mode):
    check_case(load_case(path), mode)


def test_first_step_is_undamped_then_damped():
    # MindSpore's `stat` buffer: step 1 sets accum = g (no (1 - dampening) factor), later steps damp.
    opt = jaxopt_ms.sgd(1.0, momentum=0.5, dampening=0.5)
    params = {"w": jnp.zeros(())}
    g = {"w": jnp.ones(())}
    traj = run_trajectory(opt, params, [g, g])
    assert float(traj[0]["w"]) == -1.0                    # accum = g = 1
    assert float(traj[1]["w"]) == -1.0 - (0.5 * 1 + 0.5 * 1)  # accum = 0.5*1 + (1-0.5)*1


def test_momentum_zero_has_no_state_and_is_plain_sgd():
    opt = jaxopt_ms.sgd(0.1, momentum=0.0, dampening=0.7)
    params = {"w": jnp.arange(3.0)}
    g = {"w": jnp.ones(3)}
    updates, _ = opt.update(g, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3), rtol=1e-7)


def test_sgd_inside_chain_with_clipping():
    opt = optax.chain(optax.clip(0.5), jaxopt_ms.sgd(1.0))
    params = {"w": jnp.zeros(2)}
    updates, _ = opt.update({"w": jnp.array([2.0, -0.1])}, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.5, 0.1], rtol=1e-7)
