"""Builds the JAX optimizer of a ``spine`` fixture (scripts/mindspore_fixtures/spine.py) and replays it.

A fixture's config is the JAX call: ``optimizer`` (a ``jaxopt_ms`` factory name) and ``args``. Tagged values:
``{"schedule": ...}`` is a MindSpore ``LearningRateSchedule``, expressed here as an inline ``jnp`` function of the
step (float32, as MindSpore computes it); ``{"array": x}`` is a 0-d or 1-d tensor.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from parity import Case, assert_trajectory, case_paths, load_case, run_trajectory

import jaxopt_ms


def exponential_decay(learning_rate: float, decay_rate: float, decay_steps: int, **_: Any):
    """``nn.ExponentialDecayLR``: ``lr * decay_rate ** (step / decay_steps)`` in float32."""
    return lambda step: jnp.float32(learning_rate) * jnp.power(
        jnp.float32(decay_rate), jnp.asarray(step, jnp.float32) / jnp.float32(decay_steps))


def polynomial_decay(learning_rate: float, end_learning_rate: float, decay_steps: int, power: float, **_: Any):
    """``nn.PolynomialDecayLR`` (no ``update_decay_steps``): ``(lr - end)(1 - min(step, D)/D)**power + end``."""
    def schedule(step):
        s = jnp.minimum(jnp.asarray(step, jnp.float32), jnp.float32(decay_steps))
        p = s / jnp.float32(decay_steps)
        return jnp.float32(learning_rate - end_learning_rate) * jnp.power(1.0 - p, jnp.float32(power)) + \
            jnp.float32(end_learning_rate)
    return schedule


SCHEDULES = {"exponential_decay": exponential_decay, "polynomial_decay": polynomial_decay}


def decode(spec: Any) -> Any:
    if isinstance(spec, dict) and "schedule" in spec:
        return SCHEDULES[spec["schedule"]](**{k: v for k, v in spec.items() if k != "schedule"})
    if isinstance(spec, dict) and "array" in spec:
        return jnp.asarray(np.asarray(spec["array"], np.float32))
    return spec


def build(config: dict, **overrides: Any) -> optax.GradientTransformation:
    """The ``jaxopt_ms`` optimizer a fixture config describes (``overrides`` replace arguments)."""
    args = {k: decode(v) for k, v in config["args"].items() if k != "param_groups"}
    if "param_groups" in config["args"]:
        args["param_groups"] = [{k: (v if k in ("params", "order_params") else decode(v)) for k, v in g.items()}
                                for g in config["args"]["param_groups"]]
    args.update(overrides)
    return getattr(jaxopt_ms, config["optimizer"])(**args)


def spine_cases(select) -> list[str]:
    """Paths of the spine fixtures whose (name, config) satisfy ``select``."""
    out = []
    for path in case_paths("spine"):
        case = load_case(path)
        if select(case.name, case.config):
            out.append(path)
    assert out, "no spine fixture selected"
    return out


def case_id(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".npz")


def check_case(case: Case, mode: str, **overrides: Any) -> None:
    """Replays ``case`` with its optimizer plain (``mode='nojit'``), jitted (``'jit'``) or inside an
    ``optax.chain`` with identity blocks around it (``'chain'``, jitted) and compares every step."""
    opt = build(case.config, **overrides)
    if mode == "chain":
        opt = optax.chain(optax.identity(), opt, optax.identity())
    got = run_trajectory(opt, case.params0, case.grads, jit=mode != "nojit")
    assert_trajectory(got, case.traj, rtol=1e-5, atol=1e-6, label=f"{case.name} [{mode}]")


MODES = ("jit", "nojit", "chain")


def parity_params(paths: list[str], every_mode: tuple[str, ...]) -> list:
    """``(path, mode)`` pytest params: every case jitted; the cases named in ``every_mode`` also un-jitted and
    inside ``optax.chain`` (so each optimizer runs all three ways while the suite stays fast)."""
    import pytest

    out = [pytest.param(p, "jit", id=f"{case_id(p)}-jit") for p in paths]
    for p in paths:
        if case_id(p) in every_mode:
            out += [pytest.param(p, m, id=f"{case_id(p)}-{m}") for m in MODES if m != "jit"]
    missing = set(every_mode) - {case_id(p) for p in paths}
    assert not missing, f"unknown cases {missing}"
    return out
