"""Parameter groups (reference §2.3-§2.5).

MindSpore parity (tests/fixtures/spine, ``groups_*``): per-group lr (fixed, list, schedule) and weight decay
(fixed, schedule), a group without ``weight_decay`` that inherits the default and so decays gamma/beta (group mode
ignores names), ``order_params``, a fixed group lr mixed with dynamic ones (MindSpore's ``(lr + 1) - 1`` float32
quantisation), and leaves in no group (never updated).

Gradient centralization cannot run on MindSpore's CPU (``Unsupported op [Centralization]``, reference §8), so its
expectations come from the plain-NumPy reference of the documented semantics below (``numpy_reference``).
"""

import re

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, load_case, run_trajectory
from spine_cases import build, case_id, check_case, parity_params, spine_cases

import jaxopt_ms

CASES = spine_cases(lambda name, cfg: "param_groups" in cfg["args"])
# Also run un-jitted and inside optax.chain (all cases run jitted).
EVERY_MODE = ("groups_adam", "groups_lr_quantisation")


def _case(name):
    return load_case([p for p in CASES if case_id(p) == name][0])


@pytest.mark.parametrize("path, mode", parity_params(CASES, EVERY_MODE))
def test_groups_match_mindspore(path, mode):
    check_case(load_case(path), mode)


def test_leaf_in_no_group_is_not_updated():
    case = _case("groups_adam")
    got = run_trajectory(build(case.config), case.params0, case.grads)
    np.testing.assert_array_equal(got[-1]["fc.bias"], case.params0["fc.bias"])


def test_quantisation_is_what_makes_the_fixture_match():
    # The same lr 1e-4 given as a schedule is not quantised: it must then miss the MindSpore trajectory.
    case = _case("groups_lr_quantisation")
    groups = [dict(g) for g in case.config["args"]["param_groups"]]
    groups[0]["lr"] = lambda step: jnp.float32(1e-4)
    got = run_trajectory(build(case.config, param_groups=groups), case.params0, case.grads)
    with pytest.raises(AssertionError):
        assert_trajectory(got, case.traj, rtol=1e-5, atol=1e-6)


def test_current_lr_per_group_shows_quantised_value():
    case = _case("groups_lr_quantisation")
    opt = build(case.config)
    lrs = jaxopt_ms.current_lr(opt.init(case.params0))
    one = np.float32(1.0)
    assert float(lrs[0]) == float((np.float32(1e-4) + one) - one) == pytest.approx(1.00016594e-4, rel=1e-7)
    assert float(lrs[1]) == pytest.approx(0.1)


@pytest.mark.parametrize("selector", ["names", "regex", "callable"])
def test_selector_forms_are_equivalent(selector):
    case = _case("groups_adam")
    groups = [dict(g) for g in case.config["args"]["param_groups"]]
    for g in groups:
        if "params" not in g:
            continue
        names = list(g["params"])
        if selector == "regex":
            g["params"] = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        elif selector == "callable":
            g["params"] = lambda name, leaf, names=tuple(names): name in names
    got = run_trajectory(build(case.config, param_groups=groups), case.params0, case.grads)
    assert_trajectory(got, case.traj)


def test_overlapping_groups_are_an_error():
    opt = jaxopt_ms.sgd(0.1, param_groups=[{"params": "weight"}, {"params": ["fc.weight"]}])
    with pytest.raises(ValueError, match="fc.weight"):
        opt.init({"fc.weight": jnp.ones(2), "fc.bias": jnp.ones(2)})
    with pytest.raises(RuntimeError):  # MindSpore raises RuntimeError: GroupOverlapError is both
        opt.init({"fc.weight": jnp.ones(2)})


def test_overlapping_name_lists_fail_at_construction():
    with pytest.raises(ValueError, match="fc.weight"):
        jaxopt_ms.adam(0.1, param_groups=[{"params": ["fc.weight", "a"]}, {"params": ["fc.weight"]}])


def test_group_that_selects_nothing_is_an_error():
    opt = jaxopt_ms.sgd(0.1, param_groups=[{"params": "nothing"}, {"params": ["w"]}])
    with pytest.raises(ValueError, match=r"group 0 selects no parameter .*'nothing'"):
        opt.init({"w": jnp.ones(2)})


# ----------------------------------------------------------------------------------------------------------------
# Gradient centralization: NumPy reference of the documented semantics (MindSpore cannot run it on the CPU).

def _qualifies(shape):
    return len(shape) >= 2 and shape[1] % 16 == 0


def numpy_reference(params0, grads, leaf_cfg, loss_scale, rule, hp):
    """MindSpore's pipeline per leaf: ``g += w*f32(wd*s)`` (wd > 0), centralize (flagged group, qualifying
    shape: rank >= 2 and shape[1] % 16 == 0; ``g -= mean over axes 1..``), ``g *= f32(1/s)``, then ``rule``.
    ``leaf_cfg[name] = (lr, wd, gc)`` or None for a leaf in no group."""
    f32 = np.float32
    p = {k: v.astype(f32).copy() for k, v in params0.items()}
    slots = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in p.items()}
    b1p = b2p = f32(1.0)
    traj = []
    for grad in grads:
        b1p, b2p = f32(b1p * f32(hp.get("beta1", 0.9))), f32(b2p * f32(hp.get("beta2", 0.999)))
        for k in p:
            if leaf_cfg[k] is None:
                continue
            lr, wd, gc = leaf_cfg[k]
            g = grad[k].astype(f32)
            if wd > 0:
                g = g + p[k] * f32(wd * loss_scale)
            if gc and _qualifies(g.shape):
                g = g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True, dtype=np.float64).astype(f32)
            if loss_scale != 1.0:
                g = g * f32(1.0 / loss_scale)
            a, b = slots[k]
            if rule == "momentum":
                a = f32(hp["momentum"]) * a + g
                p[k] = p[k] - f32(lr) * a
            else:  # adam
                b1, b2 = f32(hp["beta1"]), f32(hp["beta2"])
                a = b1 * a + (f32(1) - b1) * g
                b = b2 * b + (f32(1) - b2) * g * g
                lr_t = f32(lr) * np.sqrt(f32(1) - b2p) / (f32(1) - b1p)
                p[k] = p[k] - lr_t * a / (np.sqrt(b) + f32(hp["eps"]))
            slots[k] = (a, b)
        traj.append({k: v.copy() for k, v in p.items()})
    return traj


GC_SHAPES = {
    "conv1.weight": (4, 16, 3, 3),   # qualifies
    "fc.weight": (5, 32),            # dense, in_features % 16 == 0: qualifies
    "fc2.weight": (3, 10),           # dense, 10 % 16 != 0: passes through
    "fc.bias": (5,),                 # rank 1: passes through
    "bn1.gamma": (4,),
    "other.weight": (2, 16),         # qualifies but in a group without gc
    "frozen.weight": (2, 16),        # in no group
}


def _gc_problem(seed=0, steps=6):
    rng = np.random.RandomState(seed)
    params = {k: rng.randn(*s).astype(np.float32) for k, s in GC_SHAPES.items()}
    grads = [{k: (rng.randn(*s) + 3.0).astype(np.float32) for k, s in GC_SHAPES.items()} for _ in range(steps)]
    groups = [
        {"params": ["conv1.weight", "fc.weight", "fc2.weight"], "grad_centralization": True, "weight_decay": 0.1},
        {"params": ["fc.bias", "bn1.gamma"], "grad_centralization": True, "lr": 0.05},
        {"params": ["other.weight"]},
        {"order_params": None},
    ]
    return params, grads, groups


@pytest.mark.parametrize("rule, mode", [("momentum", "jit"), ("momentum", "nojit"), ("adam", "jit"), ("adam", "chain")])
def test_grad_centralization_matches_numpy_reference(rule, mode):
    params, grads, groups = _gc_problem()
    lr, wd, s = 0.1, 0.01, 4.0
    cfg = {"conv1.weight": (lr, 0.1, True), "fc.weight": (lr, 0.1, True), "fc2.weight": (lr, 0.1, True),
           "fc.bias": (0.05, wd, True), "bn1.gamma": (0.05, wd, True), "other.weight": (lr, wd, False),
           "frozen.weight": None}
    if rule == "momentum":
        hp = {"momentum": 0.9}
        opt = jaxopt_ms.momentum(lr, 0.9, weight_decay=wd, loss_scale=s, param_groups=groups)
    else:
        hp = {"beta1": 0.8, "beta2": 0.9, "eps": 0.1}
        opt = jaxopt_ms.adam(lr, weight_decay=wd, loss_scale=s, param_groups=groups, **hp)
    if mode == "chain":
        opt = optax.chain(optax.identity(), opt)
    expected = numpy_reference(params, grads, cfg, s, rule, hp)
    got = run_trajectory(opt, params, grads, jit=mode != "nojit")
    assert_trajectory(got, expected, rtol=1e-5, atol=1e-6, label=f"gc {rule}")


def test_grad_centralization_changes_only_qualifying_leaves():
    params, grads, groups = _gc_problem(steps=1)
    with_gc = run_trajectory(jaxopt_ms.sgd(0.1, param_groups=groups), params, grads)[0]
    no_gc = [dict(g, grad_centralization=False) if "params" in g else g for g in groups]
    without = run_trajectory(jaxopt_ms.sgd(0.1, param_groups=no_gc), params, grads)[0]
    for name in GC_SHAPES:
        changed = not np.array_equal(with_gc[name], without[name])
        assert changed == (name in ("conv1.weight", "fc.weight")), name
