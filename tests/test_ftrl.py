"""FTRL against MindSpore 2.10 (CPU) trajectories in tests/fixtures/ftrl (scripts/mindspore_fixtures/family.py).

With ``l1 == 0`` the fixtures come from ``nn.FTRL``. With ``l1 > 0`` MindSpore's dense CPU kernel contradicts the
documented formula (it uses ``+l1`` where the formula, the GPU kernel and the sparse kernels use
``sign(lin) * l1``, reference §3.8), so ``ftrl_l1*`` come from MindSpore's ``SparseApplyFtrl`` applied to every
element, after MindSpore's weight decay and loss-scale division (see the generator).
"""

import jax.numpy as jnp
import numpy as np
import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths, load_case

import jaxopt_ms
from jaxopt_ms.transforms import FtrlState, ftrl_update


@pytest.mark.parametrize("path", fixture_params("ftrl"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(next(p for p in case_paths("ftrl") if p.endswith("ftrl_l1.npz")), jit=False)


def test_inside_optax_chain():
    replay(case_paths("ftrl")[0], in_chain=True)


def test_l1_fixture_discriminates_the_cpu_sign_bug():
    case = load_case(next(p for p in case_paths("ftrl") if p.endswith("ftrl_l1.npz")))
    kw = case.config["kwargs"]
    name = "fc.weight"
    p = case.params0[name]
    g = (case.grads[0][name] + p * np.float32(kw["weight_decay"] * kw["loss_scale"])) * np.float32(
        1 / kw["loss_scale"])
    acc = np.full_like(p, 0.1)
    new_acc = acc + g * g
    lin = g - (np.sqrt(new_acc) - np.sqrt(acc)) / np.float32(kw["learning_rate"]) * p
    quad = np.sqrt(new_acc) / np.float32(kw["learning_rate"]) + np.float32(2 * kw["l2"])
    cpu_bug = np.where(np.abs(lin) > kw["l1"], (np.float32(kw["l1"]) - lin) / quad, 0)
    documented = np.where(np.abs(lin) > kw["l1"], (np.sign(lin) * np.float32(kw["l1"]) - lin) / quad, 0)
    np.testing.assert_allclose(case.traj[0][name], documented, rtol=1e-5, atol=1e-6)
    assert not np.allclose(case.traj[0][name], cpu_bug, rtol=1e-3)


def test_ftrl_update_keyword_contract():
    g, p, a, lin = (jnp.asarray(x, jnp.float32) for x in ([0.3, -0.4], [1.0, 0.001], [0.1, 0.1], [0.0, 0.0]))
    new_p, new_a, new_lin = ftrl_update(g, p, a, lin, lr=0.1, l1=0.01, l2=0.02, lr_power=-0.5)
    np.testing.assert_allclose(new_a, [0.19, 0.26], rtol=1e-6)
    sigma = (np.sqrt(np.float32([0.19, 0.26])) - np.sqrt(np.float32(0.1))) / np.float32(0.1)
    np.testing.assert_allclose(new_lin, np.float32([0.3, -0.4]) - sigma * np.float32([1.0, 0.001]), rtol=1e-6)
    expected = (np.sign(new_lin) * 0.01 - new_lin) / (np.sqrt(np.float32([0.19, 0.26])) / 0.1 + 0.04)
    np.testing.assert_allclose(new_p, expected, rtol=1e-6)


def test_not_grouped_decays_every_leaf_and_groups_use_the_group_weight_decay():
    params = {"bn1.gamma": jnp.ones(2), "fc.weight": jnp.ones(2)}
    zero = {k: jnp.zeros(2) for k in params}
    with_wd = jaxopt_ms.ftrl(learning_rate=0.1, weight_decay=0.5)
    updates, state = with_wd.update(zero, with_wd.init(params), params)
    assert np.all(np.asarray(updates["bn1.gamma"]) == np.asarray(updates["fc.weight"]))
    assert isinstance(state[-1], FtrlState)
    np.testing.assert_allclose(state[-1].moments["bn1.gamma"], [0.35, 0.35], rtol=1e-6)  # 0.1 + 0.5²


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(learning_rate=1), TypeError, r"'learning_rate'.*int"),
    (dict(learning_rate=0.0), ValueError, r"'learning_rate'.*0\.0"),
    (dict(learning_rate=[0.1, 0.2]), ValueError, r"dynamic learning rate.*\[0\.1, 0\.2\]"),
    (dict(learning_rate=0.1, param_groups=[{"params": "w", "lr": 0.1}]), ValueError, r"group learning rate True"),
    (dict(initial_accum=1), TypeError, r"'initial_accum'.*int"),
    (dict(initial_accum=-0.1), ValueError, r"'initial_accum'.*-0\.1"),
    (dict(lr_power=0.5), ValueError, r"'lr_power'.*0\.5"),
    (dict(lr_power=-1), TypeError, r"'lr_power'.*int"),
    (dict(l1=-0.1), ValueError, r"'l1'.*-0\.1"),
    (dict(l2=1), TypeError, r"'l2'.*int"),
    (dict(use_locking=None), TypeError, r"'use_locking'.*NoneType"),
    (dict(loss_scale=-1.0), ValueError, r"'loss_scale'.*-1\.0"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.ftrl(**kwargs)
