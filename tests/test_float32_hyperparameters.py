"""Float32 corner cases against MindSpore 2.10 (fixtures: scripts/mindspore_fixtures/float32_exact.py).

* Every LearningRateSchedule, jitted, at and around its boundary steps (``k * decay_steps`` and its neighbours)
  with random arguments: XLA's approximate division must neither give NaN (``(1 - s / D) ** 0.5`` with
  ``s / D`` a hair above 1) nor a stair or ceiling off by one.
* Optimizer trajectories whose hyperparameters make float32 and float64 arithmetic differ (``1 - beta2`` for
  ``beta2 = 0.9999``, beta1 near 1, large eps, ``wd * loss_scale``, schedules past their end), replayed per leaf
  and through :func:`jaxopt_ms.fused.fuse` at ``|got - want| <= 1e-6 + 1e-5 |want|`` on every leaf after every
  step.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms
from jaxopt_ms import fused, schedules

BOUNDARY_CASES = [load_case(p) for p in case_paths("schedule_boundaries")]
TRAJECTORY_PATHS = case_paths("float32")
_TUPLE_ARGS = {"etas", "step_sizes", "eps"}


def _ids(paths):
    return [os.path.splitext(os.path.basename(p))[0] for p in paths]


def test_boundary_fixtures_cover_every_schedule():
    names = [c.config["name"] for c in BOUNDARY_CASES]
    assert set(names) == {"exponential_decay", "natural_exp_decay", "inverse_decay", "cosine_decay",
                          "polynomial_decay", "warmup"}
    assert min(names.count(n) for n in set(names)) >= 6
    # stairs, non-integer powers past decay_steps, restarted decays: the cases that broke under jit
    args = [c.config["args"] for c in BOUNDARY_CASES]
    assert any(a.get("is_stair") for a in args)
    assert any(a.get("update_decay_steps") for a in args)
    assert any("power" in a and float(a["power"]) != int(a["power"]) and not a.get("update_decay_steps")
               for a in args)


@pytest.mark.parametrize("case", BOUNDARY_CASES, ids=lambda c: c.name)
def test_schedule_at_boundaries_under_jit_matches_mindspore(case):
    sched = getattr(schedules, case.config["name"])(**case.config["args"])
    steps, want = case.extra["steps"], case.extra["values"]
    # XLA on CPU flushes float32 denormals to zero; MindSpore keeps them (only natural_exp_decay reaches them).
    want = np.where(np.abs(want) < np.finfo(np.float32).tiny, np.float32(0), want)
    many = np.asarray(jax.jit(sched)(jnp.asarray(steps)))   # a vector of traced steps
    one = jax.jit(sched)
    single = np.array([one(jnp.int32(k)) for k in steps])  # one traced scalar step, as an optimizer calls it
    eager = np.array([sched(int(k)) for k in steps])
    for got in (many, single, eager):
        assert np.all(np.isfinite(got)), f"{case.name}: non-finite learning rate {got}"
        # XLA's pow / sin may differ by an ulp or two; a wrong stair or ratio is off by far more.
        np.testing.assert_allclose(got, want, rtol=5e-6, atol=0, err_msg=case.name)


def build(config: dict):
    kwargs = {k: tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else v for k, v in config["kwargs"].items()}
    groups = config.get("groups")
    if config.get("schedule"):
        sched = getattr(schedules, config["schedule"]["name"])(**config["schedule"]["args"])
        if groups is None or "learning_rate" not in kwargs:
            kwargs["learning_rate"] = sched
        if groups:
            groups = [{k: (sched if v == "schedule" else v) for k, v in g.items()} for g in groups]
    return getattr(jaxopt_ms, config["optimizer"])(**kwargs, param_groups=groups)


def fused_run(opt, params0: dict, grads: list) -> list:
    fopt = fused.fuse(opt)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(flat, state, g):
        updates, state = fopt.update(fused.flatten(g, fopt.partition), state, flat)
        flat = optax.apply_updates(flat, updates)
        return flat, state, fused.unflatten(flat)

    flat = fopt.flatten(jax.tree.map(jnp.asarray, params0))
    state, out = fopt.init(flat), []
    for g in grads:
        flat, state, tree = step(flat, state, g)
        out.append(jax.tree.map(np.asarray, tree))
    return out


@pytest.mark.parametrize("path", TRAJECTORY_PATHS, ids=_ids(TRAJECTORY_PATHS))
def test_trajectory_matches_mindspore_per_leaf_and_fused(path):
    case = load_case(path)
    opt = build(case.config)
    got = run_trajectory(opt, case.params0, case.grads)
    for step in got:
        assert all(np.all(np.isfinite(v)) for v in step.values()), f"{case.name}: non-finite parameters"
    assert_trajectory(got, case.traj, rtol=1e-5, atol=1e-6, label=f"{case.name} (per leaf)")
    assert_trajectory(fused_run(build(case.config), case.params0, case.grads), case.traj, rtol=1e-5, atol=1e-6,
                      label=f"{case.name} (fused)")


@pytest.mark.parametrize("factory, hyper", [
    (jaxopt_ms.transforms.scale_by_adam, dict(beta1=0.99999, beta2=0.9999, eps=1e-3)),
    (jaxopt_ms.transforms.scale_by_adam_weight_decay, dict(beta1=0.9, beta2=0.9999, eps=1e-6)),
    (jaxopt_ms.transforms.scale_by_adadelta, dict(rho=0.9999, epsilon=1e-6)),
    (jaxopt_ms.transforms.scale_by_adamax, dict(beta1=0.99999, beta2=0.9999, eps=0.5)),
], ids=["adam", "adam_weight_decay", "adadelta", "adamax"])
def test_float32_hyperparameter_arithmetic_is_the_same_for_injected_arrays(factory, hyper):
    # Hyperparameters given as (traced) float32 arrays, e.g. by optax.inject_hyperparams, give the numbers that
    # Python floats give: both are the float32 value, and 1 - beta is computed from it in float32.
    plain, injected = factory(**hyper), optax.inject_hyperparams(factory)(**hyper)
    params = {"w": jnp.linspace(-2.0, 3.0, 7)}
    grads = [{"w": jnp.linspace(-1.0, 1.0, 7) * (k + 1)} for k in range(4)]
    s_plain, s_inj = plain.init(params), injected.init(params)
    step_plain, step_inj = jax.jit(plain.update), jax.jit(injected.update)
    for g in grads:
        u_plain, s_plain = step_plain(g, s_plain, params)
        u_inj, s_inj = step_inj(g, s_inj, params)
        np.testing.assert_array_equal(u_inj["w"], u_plain["w"])
