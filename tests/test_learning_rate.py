"""Learning-rate forms (reference §2.2), current_lr and set_lr.

Parity against MindSpore fixtures (tests/fixtures/spine): a per-step list given as list, tuple, NumPy and JAX
1-d arrays (``sgd_lr_list``, ``adam_lr_tensor_1d``); a 0-d tensor given as float, 0-d NumPy and JAX arrays
(``momentum_lr_tensor_0d``); MindSpore schedules (``adam_lr_exponential``, ``momentum_lr_polynomial``) as inline
``jnp`` functions of the step and as the equivalent Optax schedule.
Past the end of a per-step list MindSpore raises (a jitted update cannot): jaxopt_ms holds the last value.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, case_paths, load_case, run_trajectory
from spine_cases import build

import jaxopt_ms
from jaxopt_ms.transforms import resolve_learning_rate, scale_by_learning_rate


def _case(name):
    return load_case([p for p in case_paths("spine") if p.endswith(f"/{name}.npz")][0])


@pytest.mark.parametrize("form", [list, tuple, np.asarray, jnp.asarray, lambda x: np.asarray(x, np.float64)])
@pytest.mark.parametrize("name", ["sgd_lr_list", "adam_lr_tensor_1d"])
def test_per_step_forms_match_mindspore(name, form):
    case = _case(name)
    lr = case.config["args"]["learning_rate"]
    values = lr["array"] if isinstance(lr, dict) else lr
    got = run_trajectory(build(case.config, learning_rate=form(values)), case.params0, case.grads)
    assert_trajectory(got, case.traj)


@pytest.mark.parametrize("form", [float, lambda x: np.asarray(x, np.float32), jnp.asarray,
                                  lambda x: np.asarray(x, np.float64)])
def test_fixed_forms_match_mindspore(form):
    case = _case("momentum_lr_tensor_0d")
    got = run_trajectory(build(case.config, learning_rate=form(case.config["args"]["learning_rate"]["array"])),
                         case.params0, case.grads, jit=False)
    assert_trajectory(got, case.traj)


def test_optax_schedule_is_accepted():
    case = _case("adam_lr_exponential")
    s = case.config["args"]["learning_rate"]
    sched = optax.exponential_decay(s["learning_rate"], s["decay_steps"], s["decay_rate"])
    got = run_trajectory(build(case.config, learning_rate=sched), case.params0, case.grads)
    assert_trajectory(got, case.traj)


def test_int_and_bool_are_fixed_rates():
    params = {"w": jnp.zeros(2)}
    g = {"w": jnp.ones(2)}
    for lr, expected in [(2, -2.0), (True, -1.0), (0, 0.0)]:
        opt = jaxopt_ms.sgd(lr)
        updates, _ = opt.update(g, opt.init(params), params)
        np.testing.assert_array_equal(updates["w"], [expected, expected])


def test_lr_is_read_before_the_step_counter_increments():
    seen = []
    opt = scale_by_learning_rate(lambda step: (seen.append(step), 0.1 * (step + 1))[1])
    state = opt.init({"w": jnp.zeros(())})
    updates, state = opt.update({"w": jnp.ones(())}, state)
    assert float(updates["w"]) == pytest.approx(-0.1)   # update 0 uses lr(0)
    updates, state = opt.update({"w": jnp.ones(())}, state)
    assert float(updates["w"]) == pytest.approx(-0.2)   # update 1 uses lr(1)
    assert int(state.count) == 2


@pytest.mark.parametrize("jit", [True, False])
def test_past_the_end_holds_the_last_value(jit):
    lrs = [0.1, 0.2, 0.3]
    params = {"w": jnp.zeros(())}
    grads = [{"w": jnp.ones(())}] * 5
    got = run_trajectory(jaxopt_ms.sgd(lrs), params, grads, jit=jit)
    expected = np.cumsum(-np.float32([0.1, 0.2, 0.3, 0.3, 0.3]))
    np.testing.assert_allclose([float(p["w"]) for p in got], expected, rtol=1e-6)


def test_current_lr_follows_the_schedule_and_the_groups():
    opt = jaxopt_ms.sgd([0.5, 0.25, 0.125])
    params = {"w": jnp.zeros(())}
    state = opt.init(params)
    for expected in (0.5, 0.25, 0.125, 0.125):
        assert float(jaxopt_ms.current_lr(state)) == expected
        _, state = opt.update({"w": jnp.ones(())}, state, params)
    grouped = jaxopt_ms.adam(0.1, param_groups=[{"params": ["a"], "lr": 0.01}, {"params": ["b"]}])
    lrs = jaxopt_ms.current_lr(grouped.init({"a": jnp.ones(1), "b": jnp.ones(1)}))
    assert len(lrs) == 2 and float(lrs[0]) == pytest.approx(0.01) and float(lrs[1]) == pytest.approx(0.1)


def test_set_lr_changes_the_trajectory_without_recompiling():
    traces = []
    opt = jaxopt_ms.momentum(0.1, 0.9)

    @jax.jit
    def step(params, state, grads):
        traces.append(1)  # runs only while tracing
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"w": jnp.zeros(3)}
    state = opt.init(params)
    grads = [{"w": jnp.full(3, float(i + 1))} for i in range(4)]
    schedule = [0.1, 0.1, 0.01, 0.01]
    for g, lr in zip(grads, schedule):
        state = jaxopt_ms.set_lr(state, lr)
        assert float(jaxopt_ms.current_lr(state)) == pytest.approx(lr)
        params, state = step(params, state, g)
    assert len(traces) == 1
    # The same trajectory from a per-step lr list (a different, but equivalent, optimizer).
    expected = run_trajectory(jaxopt_ms.momentum(schedule, 0.9), {"w": jnp.zeros(3)}, grads)[-1]
    np.testing.assert_allclose(params["w"], expected["w"], rtol=1e-6)


def test_set_lr_per_group():
    opt = jaxopt_ms.sgd(0.1, param_groups=[{"params": ["a"], "lr": 0.01}, {"params": ["b"]}])
    params = {"a": jnp.zeros(()), "b": jnp.zeros(())}
    state = jaxopt_ms.set_lr(opt.init(params), [1.0, 2.0])
    updates, _ = opt.update({"a": jnp.ones(()), "b": jnp.ones(())}, state, params)
    assert float(updates["a"]) == -1.0 and float(updates["b"]) == -2.0
    with pytest.raises(ValueError, match="3 learning rates for 2 groups"):
        jaxopt_ms.set_lr(state, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad, exc", [
    ([], ValueError), (np.zeros((2, 2)), ValueError), (-0.1, ValueError), ("a", ValueError),
    ([[0.1, 0.2], [0.3, 0.4]], ValueError), (object(), TypeError), (None, TypeError),
])
def test_bad_learning_rates(bad, exc):
    with pytest.raises(exc, match="learning_rate"):
        resolve_learning_rate(bad, "SGD")
    with pytest.raises(exc, match="learning_rate"):
        jaxopt_ms.sgd(bad)
