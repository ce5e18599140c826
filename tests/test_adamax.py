"""AdaMax against MindSpore 2.10 (CPU) trajectories: tests/fixtures/adamax (scripts/mindspore_fixtures/family.py)."""

import jax.numpy as jnp
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths

import jaxopt_ms
from jaxopt_ms.transforms import ScaleByAdamaxState


@pytest.mark.parametrize("path", fixture_params("adamax"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(case_paths("adamax")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("adamax")[-1], in_chain=True)


def test_beta1_power_is_a_running_float32_product():
    opt = jaxopt_ms.transforms.scale_by_adamax(beta1=0.9)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update(params, state)
    assert isinstance(state, ScaleByAdamaxState)
    assert state.beta1_power == jnp.float32(jnp.float32(jnp.float32(0.9) * 0.9) * 0.9)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(beta1=1), TypeError, r"'beta1'.*int"),
    (dict(beta1=1.0), ValueError, r"'beta1'.*1\.0"),
    (dict(beta2=0.0), ValueError, r"'beta2'.*0\.0"),
    (dict(eps=0.0), ValueError, r"'eps'.*0\.0"),
    (dict(eps=1), TypeError, r"'eps'.*int"),
    (dict(loss_scale=-1.0), ValueError, r"'loss_scale'.*-1\.0"),
    (dict(learning_rate="a"), ValueError, r"'learning_rate'.*str"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.adamax(**kwargs)
