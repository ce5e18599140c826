"""AdamWeightDecay against MindSpore 2.10 golden trajectories (tests/fixtures/spine): no bias correction,
decoupled decay scaled by lr, eps 0.1 / beta2 0.9, a dynamic (schedule) weight decay with a schedule lr."""

import jax.numpy as jnp
import numpy as np
import pytest
from parity import load_case
from spine_cases import check_case, parity_params, spine_cases

import jaxopt_ms

CASES = spine_cases(lambda name, cfg: cfg["optimizer"] == "adam_weight_decay" and "param_groups" not in cfg["args"])
# Also run un-jitted and inside optax.chain (all cases run jitted).
EVERY_MODE = ("adam_weight_decay_dynamic_wd",)


@pytest.mark.parametrize("path, mode", parity_params(CASES, EVERY_MODE))
def test_adam_weight_decay_matches_mindspore(path, mode):
    check_case(load_case(path), mode)


def test_first_step_has_no_bias_correction():
    # m = 0.1 g, v = 0.001 g^2 -> d = 0.1 g / (sqrt(0.001) |g| + eps); with eps tiny: 0.1/sqrt(0.001) sign(g).
    opt = jaxopt_ms.adam_weight_decay(1.0, eps=1e-12)
    params = {"w": jnp.zeros(2)}
    updates, _ = opt.update({"w": jnp.array([2.0, -3.0])}, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 / np.sqrt(0.001) * np.array([1.0, -1.0]), rtol=1e-5)


def test_decay_skips_gamma_beta_and_is_scaled_by_lr():
    opt = jaxopt_ms.adam_weight_decay(0.5, weight_decay=0.1)
    params = {"fc.weight": jnp.ones(2), "bn.gamma": jnp.ones(2)}
    zeros = {k: jnp.zeros(2) for k in params}
    updates, _ = opt.update(zeros, opt.init(params), params)
    np.testing.assert_allclose(updates["fc.weight"], -0.5 * 0.1 * np.ones(2), rtol=1e-6)
    np.testing.assert_allclose(updates["bn.gamma"], np.zeros(2))
