"""jaxopt_ms.schedules against MindSpore 2.10's LearningRateSchedule classes (fixtures: schedules.py).

Values are compared over steps 0..239 for several argument sets per schedule; the optimizer cases replay
MindSpore trajectories that use a schedule as the learning rate (alone and in a parameter group).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_zoo import IDS, OPTIMIZERS
from parity import assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms
from jaxopt_ms import schedules

CASES = [load_case(p) for p in case_paths("schedules")]
SCHEDULE_CASES = [c for c in CASES if c.config["kind"] == "schedule"]
INVALID = [c for c in CASES if c.config["kind"] == "invalid"][0].config["cases"]
MS_CLASS = {"ExponentialDecayLR": "exponential_decay", "NaturalExpDecayLR": "natural_exp_decay",
            "InverseDecayLR": "inverse_decay", "CosineDecayLR": "cosine_decay",
            "PolynomialDecayLR": "polynomial_decay", "WarmUpLR": "warmup"}
STEPS = 240


def _schedule(case):
    return getattr(schedules, case.config["name"])(**case.config["args"])


def _expected(case) -> np.ndarray:
    # XLA on CPU flushes float32 denormals to zero; MindSpore keeps them (only natural_exp_decay reaches them).
    values = case.extra["values"]
    return np.where(np.abs(values) < np.finfo(np.float32).tiny, np.float32(0), values)


def test_every_schedule_has_several_cases():
    names = {c.config["name"] for c in SCHEDULE_CASES}
    assert names == set(MS_CLASS.values())
    for name in names:
        assert sum(c.config["name"] == name for c in SCHEDULE_CASES) >= 3


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=lambda c: c.name)
def test_values_match_mindspore_step_by_step(case):
    sched = _schedule(case)
    got = np.array([sched(k) for k in range(STEPS)])
    assert got.dtype == np.float32
    # Scalar evaluation is MindSpore's float32 arithmetic operation for operation: equal up to 2 ulp (sin).
    np.testing.assert_allclose(got, _expected(case), rtol=3e-7, atol=0)


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=lambda c: c.name)
def test_values_under_jit_with_traced_step(case):
    sched = _schedule(case)
    one = jax.jit(sched)
    got = np.array([one(jnp.int32(k)) for k in (0, 1, 3, 4, 5, 59, 60, 61, 100, 150, 239)])
    exp = _expected(case)[[0, 1, 3, 4, 5, 59, 60, 61, 100, 150, 239]]
    # Compiled, XLA uses its own (few-ulp) division and transcendentals; stairs and ceilings must still land on
    # the same integers (a wrong one would be off by a whole decay factor).
    scale = max(float(np.max(np.abs(exp))), 1e-30)
    np.testing.assert_allclose(got, exp, rtol=5e-6, atol=1e-7 * scale)
    many = np.asarray(jax.jit(sched)(jnp.arange(STEPS, dtype=jnp.int32)))
    np.testing.assert_allclose(many, _expected(case), rtol=5e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("case", [c for c in INVALID if c["target"] in MS_CLASS], ids=lambda c: c["target"])
def test_invalid_arguments_raise_mindspores_exception_type(case):
    assert case["error"] in ("TypeError", "ValueError")
    factory = getattr(schedules, MS_CLASS[case["target"]])
    with pytest.raises({"TypeError": TypeError, "ValueError": ValueError}[case["error"]]):
        factory(**case["args"])


@pytest.mark.parametrize("call, error, words", [
    (lambda: schedules.exponential_decay(1, 0.9, 4), TypeError, ["ExponentialDecayLR", "learning_rate", "float"]),
    (lambda: schedules.natural_exp_decay(0.1, 0.9, 0), ValueError, ["NaturalExpDecayLR", "decay_steps", "0"]),
    (lambda: schedules.inverse_decay(0.1, 0.5, 4, is_stair=1), TypeError, ["InverseDecayLR", "is_stair", "bool"]),
    (lambda: schedules.cosine_decay(0.2, 0.1, 10), ValueError, ["CosineDecayLR", "max_lr", "min_lr", "0.2"]),
    (lambda: schedules.polynomial_decay(0.1, 0.0, 4, 2), TypeError, ["PolynomialDecayLR", "power", "int"]),
    (lambda: schedules.polynomial_decay(0.1, float("nan"), 4, 2.0), ValueError, ["end_learning_rate", "nan"]),
    (lambda: schedules.warmup(-0.1, 4), ValueError, ["WarmUpLR", "learning_rate", "-0.1"]),
])
def test_error_messages_name_class_argument_and_value(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)


def _case(name):
    return next(c for c in CASES if c.name == name)


def test_join_schedules_composes_warmup_and_cosine():
    warm, cos = _case("sched_warmup_0"), _case("sched_cosine_decay_0")
    joined = optax.join_schedules([_schedule(warm), _schedule(cos)], boundaries=[4])
    expected = np.concatenate([warm.extra["values"][:4], cos.extra["values"][: STEPS - 4]])
    got = np.array([jax.jit(joined)(jnp.int32(k)) for k in range(0, STEPS, 7)])
    np.testing.assert_allclose(got, expected[::7], rtol=3e-7)
    # ... and the composition drives an optimizer: the learning rate logged per step is the joined schedule.
    opt = jaxopt_ms.sgd(joined)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    step = jax.jit(opt.update)
    for k in range(12):
        np.testing.assert_allclose(jaxopt_ms.current_lr(state), expected[k], rtol=3e-7)
        _, state = step({"w": jnp.ones(3)}, state, params)


def test_momentum_with_schedule_matches_mindspore():
    case = _case("opt_momentum_polynomial")
    sched = getattr(schedules, case.config["schedule"]["name"])(**case.config["schedule"]["args"])
    opt = jaxopt_ms.momentum(sched, **case.config["args"])
    assert_trajectory(run_trajectory(opt, case.params0, case.grads), case.traj, label=case.name)
    state = opt.init(case.params0)
    step = jax.jit(opt.update)
    params = case.params0
    for k, g in enumerate(case.grads):
        np.testing.assert_allclose(jaxopt_ms.current_lr(state), case.extra[f"lr__{k}"][0], rtol=3e-7)
        updates, state = step(g, state, params)
        params = optax.apply_updates(params, updates)


def test_schedule_as_group_lr_matches_mindspore_and_current_lr_is_per_group():
    case = _case("opt_adam_groups")
    cfg = case.config
    sched = getattr(schedules, cfg["schedule"]["name"])(**cfg["schedule"]["args"])
    first = cfg["group0"]
    opt = jaxopt_ms.adam(learning_rate=0.05, param_groups=[
        {"params": first, "lr": sched},
        {"params": lambda name, leaf: name not in first, "lr": cfg["group1_lr"]},
    ])
    assert_trajectory(run_trajectory(opt, case.params0, case.grads), case.traj, label=case.name)
    order = cfg["lr_order"]
    in_first = np.array([n in first for n in order])
    state, params = opt.init(case.params0), case.params0
    step = jax.jit(opt.update)
    for k, g in enumerate(case.grads):
        ms_lr = case.extra[f"lr__{k}"]
        lr0, lr1 = jaxopt_ms.current_lr(state)
        np.testing.assert_allclose(lr0, ms_lr[in_first], rtol=3e-7)
        # The fixed group lr is quantised by (lr + 1) - 1 because another group's lr is dynamic: 1e-4 -> 1.00017e-4.
        np.testing.assert_array_equal(np.float32(lr1), ms_lr[~in_first])
        updates, state = step(g, state, params)
        params = optax.apply_updates(params, updates)


def test_schedule_inside_optax_chain_and_scan():
    sched = schedules.exponential_decay(0.1, 0.5, 3, is_stair=True)
    opt = optax.chain(optax.clip(10.0), jaxopt_ms.sgd(sched))
    params = {"w": jnp.zeros(2)}

    def body(carry, _):
        p, s = carry
        u, s = opt.update({"w": jnp.ones(2)}, s, p)
        return (optax.apply_updates(p, u), s), jaxopt_ms.current_lr(s)

    (params, _), lrs = jax.jit(lambda c: jax.lax.scan(body, c, None, length=9))((params, opt.init(params)))
    expected_lrs = np.array([sched(k) for k in range(1, 10)])
    np.testing.assert_allclose(lrs, expected_lrs, rtol=3e-7)
    np.testing.assert_allclose(params["w"], -sum(float(sched(k)) for k in range(9)) * np.ones(2), rtol=1e-6)


@pytest.mark.parametrize("name, factory, kwargs", OPTIMIZERS, ids=IDS)
def test_every_optimizer_takes_a_schedule_as_learning_rate_and_as_group_lr(name, factory, kwargs):
    sched = schedules.polynomial_decay(0.1, 0.01, 3, 2.0, update_decay_steps=True)
    kwargs = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    params = {"fc.weight": jnp.ones((2, 3)), "fc.bias": jnp.zeros(3)}
    if name.startswith("lars"):
        pytest.skip("LARS reads the learning rate of the optimizer it wraps (schedules covered in test_lars)")
    if name == "ftrl":  # MindSpore's FTRL takes a fixed float learning rate only
        with pytest.raises(ValueError, match="learning"):
            factory(learning_rate=sched, **kwargs)
        return
    if name.startswith("adafactor"):  # a schedule needs relative_step=False; AdaFactor rejects group lrs
        kwargs.update(relative_step=False, scale_parameter=False)
        with pytest.raises(ValueError, match="lr"):
            factory(learning_rate=0.05, **kwargs, param_groups=[{"params": ["fc.weight"], "lr": sched}])
    whole = factory(learning_rate=sched, **kwargs)
    grouped = None if name.startswith("adafactor") else factory(
        learning_rate=0.05, **kwargs, param_groups=[{"params": ["fc.weight"], "lr": sched}, {"params": ["fc.bias"]}])
    for opt in (whole, grouped):
        if opt is None:
            continue
        state = opt.init(params)
        update = opt.update  # eager: compiling ten small programs would dominate this file's time
        for k in range(5):
            lr = jaxopt_ms.current_lr(state)
            np.testing.assert_array_equal(lr if opt is whole else lr[0], sched(k))
            if opt is grouped:  # the fixed group lr is quantised by (lr + 1) - 1 next to a dynamic one
                one = np.float32(1.0)
                np.testing.assert_array_equal(lr[1], (np.float32(0.05) + one) - one)
            _, state = update(jax.tree.map(jnp.ones_like, params), state, params)
