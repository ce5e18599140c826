"""Rebuilds a jaxopt_ms optimizer from a fixture's config (scripts/mindspore_fixtures/family.py) and replays it."""

from __future__ import annotations

from parity import Case, assert_trajectory, load_case, run_trajectory

import jaxopt_ms

# JSON has no tuples; these arguments must be tuples (MindSpore's type checks).
_TUPLE_ARGS = {"etas", "step_sizes", "eps"}


def build(config: dict):
    """The optimizer a fixture's ``config`` describes: ``optimizer``, ``kwargs``, ``groups``."""
    kwargs = {k: tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else v for k, v in config["kwargs"].items()}
    return getattr(jaxopt_ms, config["optimizer"])(**kwargs, param_groups=config.get("groups"))


def replay(path: str, jit: bool = True, rtol: float = 1e-5, atol: float = 1e-6) -> Case:
    """Asserts that the optimizer of the fixture at ``path`` follows its trajectory at every step."""
    case = load_case(path)
    got = run_trajectory(build(case.config), case.params0, case.grads, jit=jit)
    assert_trajectory(got, case.traj, rtol=rtol, atol=atol, label=case.name)
    return case
