"""Adagrad and ProximalAdagrad against MindSpore 2.10 (CPU) trajectories in tests/fixtures/adagrad and
tests/fixtures/proximal_adagrad (scripts/mindspore_fixtures/family.py).

``adagrad_no_update_slots``: MindSpore's Adagrad CPU kernel ignores ``update_slots=False`` (reference §3.11), so
that fixture comes from MindSpore's ``ApplyAdagradV2(epsilon=0, update_slots=False)``, which computes the documented
rule, after MindSpore's weight decay and loss-scale division (see the generator).
"""

import jax.numpy as jnp
import numpy as np
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths, load_case

import jaxopt_ms
from jaxopt_ms.transforms import AdagradState, ProximalAdagradState, proximal_adagrad_update


@pytest.mark.parametrize("path", fixture_params("adagrad") + fixture_params("proximal_adagrad"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


@pytest.mark.parametrize("family", ["adagrad", "proximal_adagrad"])
def test_matches_mindspore_without_jit(family):
    replay(case_paths(family)[0], jit=False)


@pytest.mark.parametrize("family", ["adagrad", "proximal_adagrad"])
def test_inside_optax_chain(family):
    replay(case_paths(family)[-1], in_chain=True)


def test_no_update_slots_fixture_discriminates():
    # With a growing accumulator the trajectory would differ: the fixture really tests update_slots=False.
    case = load_case(next(p for p in case_paths("adagrad") if "no_update_slots" in p))
    config = dict(case.config["kwargs"], update_slots=True)
    opt = jaxopt_ms.adagrad(**config)
    params = {k: jnp.asarray(v) for k, v in case.params0.items()}
    updates, _ = opt.update({k: jnp.asarray(v) for k, v in case.grads[0].items()}, opt.init(params), params)
    assert not np.allclose(params["fc.weight"] + updates["fc.weight"], case.traj[0]["fc.weight"], rtol=1e-4)


def test_accumulator_starts_at_accum_and_has_no_epsilon():
    state = jaxopt_ms.adagrad(accum=0.0, learning_rate=0.1).init({"w": jnp.zeros(2)})
    slots = [s for s in state if isinstance(s, AdagradState)]
    np.testing.assert_array_equal(slots[0].accum["w"], np.zeros(2, np.float32))
    updates, _ = jaxopt_ms.adagrad(accum=0.0).update({"w": jnp.zeros(2)}, state, {"w": jnp.zeros(2)})
    assert np.isnan(updates["w"]).all()  # 0 / sqrt(0): MindSpore has no epsilon either


def test_proximal_adagrad_update_is_the_documented_rule():
    g, p, a = (jnp.asarray(x, jnp.float32) for x in ([0.5, -0.2, 0.01], [1.0, -0.3, 0.002], [0.1, 0.2, 0.3]))
    new_p, new_a = proximal_adagrad_update(g, p, a, lr=0.1, l1=0.05, l2=0.2)
    acc = np.float32([0.1, 0.2, 0.3]) + np.float32([0.5, -0.2, 0.01]) ** 2
    eta = np.float32(0.1) / np.sqrt(acc)
    v = np.float32([1.0, -0.3, 0.002]) - eta * np.float32([0.5, -0.2, 0.01])
    expected = np.sign(v) * np.maximum(np.abs(v) - eta * np.float32(0.05), 0) / (1 + eta * np.float32(0.2))
    np.testing.assert_allclose(new_a, acc, rtol=1e-6)
    np.testing.assert_allclose(new_p, expected, rtol=1e-6)
    assert new_p[2] == 0.0  # l1 shrinks a small weight to exactly 0
    state = jaxopt_ms.proximal_adagrad().init({"w": p})
    assert isinstance(state[-1], ProximalAdagradState)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(accum=1), TypeError, r"'accum'.*int"),
    (dict(accum=-0.1), ValueError, r"'accum'.*-0\.1"),
    (dict(update_slots=0), TypeError, r"'update_slots'.*int"),
    (dict(loss_scale=0.0), ValueError, r"'loss_scale'.*0\.0"),
    (dict(learning_rate=np.ones((2, 2))), ValueError, r"'learning_rate'.*2"),
])
def test_adagrad_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.adagrad(**kwargs)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(accum=1), TypeError, r"'accum'.*int"),
    (dict(l1=1), TypeError, r"'l1'.*int"),
    (dict(l2=-0.1), ValueError, r"'l2'.*-0\.1"),
    (dict(use_locking="no"), TypeError, r"'use_locking'.*str"),
    (dict(weight_decay=-1.0), ValueError, r"'weight_decay'.*-1\.0"),
])
def test_proximal_adagrad_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.proximal_adagrad(**kwargs)
