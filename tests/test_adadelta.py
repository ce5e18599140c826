"""Adadelta against MindSpore 2.10 (CPU) trajectories in tests/fixtures/adadelta (family.py generator)."""

import jax
import jax.numpy as jnp
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths

import jaxopt_ms


@pytest.mark.parametrize("path", fixture_params("adadelta"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(case_paths("adadelta")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("adadelta")[-1], in_chain=True)


def test_state_uses_mindspore_slot_names():
    state = jaxopt_ms.adadelta().init({"w": jnp.ones(3)})
    inner = [s for s in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "accum_update"))
             if hasattr(s, "accum_update")]
    assert len(inner) == 1 and inner[0]._fields == ("accum", "accum_update")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rho=1), TypeError, r"'rho'.*int"),
    (dict(rho=1.5), ValueError, r"'rho'.*1\.5"),
    (dict(rho=-0.1), ValueError, r"'rho'.*-0\.1"),
    (dict(epsilon=1), TypeError, r"'epsilon'.*int"),
    (dict(epsilon=-1e-3), ValueError, r"'epsilon'.*-0\.001"),
    (dict(loss_scale=0.0), ValueError, r"'loss_scale'.*0\.0"),
    (dict(weight_decay=-0.1), ValueError, r"'weight_decay'.*-0\.1"),
    (dict(learning_rate=-1.0), ValueError, r"'learning_rate'.*-1\.0"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.adadelta(**kwargs)
