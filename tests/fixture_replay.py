"""Rebuilds a jaxopt_ms optimizer from a fixture's config (scripts/mindspore_fixtures/family.py) and replays it."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import Case, assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms

# JSON has no tuples; these arguments must be tuples (MindSpore's type checks).
_TUPLE_ARGS = {"etas", "step_sizes", "eps"}


def decode(spec):
    """A tagged config value: ``{"schedule": name, ...}`` (``jaxopt_ms.schedules``), ``{"dynamic_lr": name, ...}``
    (``jaxopt_ms.dynamic_lr``), ``{"array": x}`` (a float32 array), ``{"optimizer": ...}`` (a nested config, LARS's
    wrapped optimizer); anything else as it is."""
    if isinstance(spec, dict):
        if "schedule" in spec:
            return getattr(jaxopt_ms.schedules, spec["schedule"])(**{k: v for k, v in spec.items() if k != "schedule"})
        if "dynamic_lr" in spec:
            return getattr(jaxopt_ms.dynamic_lr, spec["dynamic_lr"])(
                **{k: v for k, v in spec.items() if k != "dynamic_lr"})
        if "array" in spec:
            return jnp.asarray(np.asarray(spec["array"], np.float32))
        if "optimizer" in spec:
            return build(spec)
    return spec


def build(config: dict):
    """The optimizer a fixture's ``config`` describes: ``optimizer``, ``kwargs``, ``groups`` (tagged values
    decoded by :func:`decode`)."""
    kwargs = {k: tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else decode(v)
              for k, v in config["kwargs"].items()}
    groups = config.get("groups")
    if groups is not None:
        groups = [{k: (v if k == "params" else decode(v)) for k, v in g.items()} for g in groups]
    extra = {} if groups is None else {"param_groups": groups}  # LARS takes no param_groups
    return getattr(jaxopt_ms, config["optimizer"])(**kwargs, **extra)


def replay(path: str, jit: bool = True, in_chain: bool = False, rtol: float = 1e-5, atol: float = 1e-6) -> Case:
    """Asserts that the optimizer of the fixture at ``path`` follows its trajectory at every step.

    ``in_chain`` runs it inside ``optax.chain`` (after an identity block) to check it composes.
    """
    case = load_case(path)
    opt = build(case.config)
    if in_chain:
        opt = optax.chain(optax.identity(), opt)
    got = run_trajectory(opt, case.params0, case.grads, jit=jit)
    assert_trajectory(got, case.traj, rtol=rtol, atol=atol, label=case.name)
    return case


def fixture_params(family: str) -> list:
    """``pytest.param`` per fixture of ``family`` (id: the case name); fails loudly if there is none."""
    paths = case_paths(family)
    assert paths, f"no fixtures for {family!r}: run scripts/mindspore_fixtures/family.py"
    return [pytest.param(p, id=os.path.splitext(os.path.basename(p))[0]) for p in paths]
