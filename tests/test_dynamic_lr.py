"""jaxopt_ms.dynamic_lr against MindSpore 2.10's nn.dynamic_lr (fixtures: schedules.py), and the per-step
semantics of a 1-d learning-rate list in a MindSpore optimizer (nn.SGD), including the call past its end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms
from jaxopt_ms import dynamic_lr

CASES = [load_case(p) for p in case_paths("schedules")]
LIST_CASES = [c for c in CASES if c.config["kind"] == "dynamic_lr"]
INVALID = [c for c in CASES if c.config["kind"] == "invalid"][0].config["cases"]
ERRORS = {"TypeError": TypeError, "ValueError": ValueError}


def test_every_builder_is_covered():
    assert {c.config["name"] for c in LIST_CASES} == set(dynamic_lr.__all__)


@pytest.mark.parametrize("case", LIST_CASES, ids=lambda c: c.name)
def test_lists_equal_mindspores_bit_for_bit(case):
    got = getattr(dynamic_lr, case.config["name"])(**case.config["args"])
    assert isinstance(got, list) and all(isinstance(x, float) for x in got)
    np.testing.assert_array_equal(np.array(got, np.float64), case.extra["values"])


@pytest.mark.parametrize("case", [c for c in INVALID if c["target"] in dynamic_lr.__all__],
                         ids=lambda c: c["target"])
def test_invalid_arguments_raise_mindspores_exception_type(case):
    with pytest.raises(ERRORS[case["error"]]):
        getattr(dynamic_lr, case["target"])(**case["args"])


@pytest.mark.parametrize("fn, args, error, words", [
    ("piecewise_constant_lr", ([3, 2], [0.1, 0.2]), ValueError, ["milestone[1]", "2", "3"]),
    ("piecewise_constant_lr", ([2, 3], [0.1, 1]), TypeError, ["learning_rates[1]", "float"]),
    ("piecewise_constant_lr", ([2], (0.1, 0.2)), ValueError, ["size", "1", "2"]),
    ("exponential_decay_lr", (0.1, 0.9, 8, 0, 2), ValueError, ["step_per_epoch", "0"]),
    ("inverse_decay_lr", (0.1, 0.9, 8, 2, 2, None), TypeError, ["is_stair", "bool"]),
    ("cosine_decay_lr", (0.1, 0.05, 8, 2, 2), ValueError, ["max_lr", "min_lr"]),
    ("polynomial_decay_lr", (0.1, 0.0, 8, 2, 2, 2), TypeError, ["power", "float", "int"]),
    ("warmup_lr", (0.1, 8, 2, 2.0), TypeError, ["warmup_epoch", "int"]),
])
def test_error_messages_name_function_argument_and_value(fn, args, error, words):
    with pytest.raises(error) as info:
        getattr(dynamic_lr, fn)(*args)
    for word in [fn] + words:
        assert word in str(info.value)


def test_piecewise_allows_equal_milestones():
    assert dynamic_lr.piecewise_constant_lr([2, 2, 3], [0.1, 0.2, 0.3]) == [0.1, 0.1, 0.3]


def _case(name):
    return next(c for c in CASES if c.name == name)


def test_per_step_list_in_sgd_matches_mindspore_update_by_update():
    case = _case("opt_sgd_lr_list")
    args = case.config["args"]
    opt = jaxopt_ms.sgd(**args)
    assert_trajectory(run_trajectory(opt, case.params0, case.grads), case.traj, label=case.name)
    state, params = opt.init(case.params0), case.params0
    step = jax.jit(opt.update)
    for k, g in enumerate(case.grads):
        # update k uses element k (MindSpore reads the lr before incrementing global_step)
        np.testing.assert_array_equal(jaxopt_ms.current_lr(state), np.float32(args["learning_rate"][k]))
        np.testing.assert_array_equal(case.extra[f"lr__{k}"], np.float32(args["learning_rate"][k]))
        updates, state = step(g, state, params)
        params = optax.apply_updates(params, updates)


def test_past_the_end_mindspore_raises_and_we_hold_the_last_value():
    case = _case("opt_sgd_lr_list")
    lrs = case.config["args"]["learning_rate"]
    # MindSpore: the call after the last element raises and changes nothing.
    assert case.config["past_end"]["raised"] == "RuntimeError"
    assert "Gather" in case.config["past_end"]["message"]
    assert case.config["past_end_params_unchanged"] and case.config["global_step_after"] == len(lrs)
    # jaxopt_ms (documented policy): a jitted update cannot raise, so the last element is held.
    rng = np.random.RandomState(0)
    grads = [{k: rng.randn(*v.shape).astype(np.float32) for k, v in case.params0.items()} for _ in range(10)]
    args = dict(case.config["args"])
    held = run_trajectory(jaxopt_ms.sgd(**args), case.params0, grads)
    args["learning_rate"] = lrs + [lrs[-1]] * 4
    extended = run_trajectory(jaxopt_ms.sgd(**args), case.params0, grads)
    for a, b in zip(held, extended):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    opt = jaxopt_ms.sgd(lrs)
    state = opt.init({"w": jnp.zeros(2)})
    for _ in range(len(lrs) + 3):
        _, state = opt.update({"w": jnp.ones(2)}, state)
    np.testing.assert_array_equal(jaxopt_ms.current_lr(state), np.float32(lrs[-1]))


def test_list_as_group_lr_and_quantisation_of_fixed_groups():
    lrs = dynamic_lr.warmup_lr(0.1, 6, 2, 2)
    opt = jaxopt_ms.sgd(0.1, param_groups=[{"params": ["a"], "lr": lrs}, {"params": ["b"], "lr": 1e-8}])
    state = opt.init({"a": jnp.zeros(1), "b": jnp.zeros(1)})
    seen = []
    for _ in range(6):
        seen.append(tuple(float(x) for x in jaxopt_ms.current_lr(state)))
        _, state = opt.update({"a": jnp.ones(1), "b": jnp.ones(1)}, state)
    assert [a for a, _ in seen] == [float(np.float32(x)) for x in lrs]
    assert all(b == 0.0 for _, b in seen)  # f32((1e-8 + 1) - 1) == 0, as in MindSpore
