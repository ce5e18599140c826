"""Rebuilds a jaxopt_ms optimizer from a fixture's config (scripts/mindspore_fixtures/family.py) and replays it."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import Case, apply_steps, assert_trajectory, case_paths, load_case, run_trajectory

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


# ---------------------------------------------------------------------------------------------------------------
# Variants of a fixture's call: every JAX form of each learning rate, per leaf / fused, eager / jitted, injected.
#
# A MindSpore learning rate has several JAX spellings with the same meaning; a variant picks one per learning-rate
# spot (the optimizer's ``learning_rate``, each group's ``lr``, LARS's wrapped optimizer's) and runs the call per
# leaf or fused, eagerly, with ``jax.jit(update)`` or with ``jax.jit(init)`` and ``jax.jit(update)``, plain or under
# ``optax.inject_hyperparams``. Every variant must follow MindSpore's trajectory.

FIXED_FORMS = ("float", "jax0d", "numpy0d", "numpy_scalar")  # a fixed rate: float or 0-d Tensor in MindSpore
PER_STEP_FORMS = ("list", "tuple", "numpy1d", "jax1d", "schedule")  # a 1-d Tensor, list or dynamic_lr list
# AdaFactor keeps scale_parameter for a Python number (and a 0-d JAX array: how inject_hyperparams passes one) and
# turns it off for MindSpore's 0-d Tensor (NumPy forms here): the two fixed kinds have different spellings
ADAFACTOR_FORMS = {"number": ("float", "jax0d"), "tensor": ("numpy0d", "numpy_scalar")}
MODES = ("eager", "jit_update", "jit_init_update")


def lr_kind(spec) -> str:
    """``'fixed'``, ``'tensor'`` (a fixed 0-d Tensor), ``'per_step'``, or ``'schedule'`` (a LearningRateSchedule)."""
    if isinstance(spec, dict):
        if "schedule" in spec:
            return "schedule"
        if "dynamic_lr" in spec:
            return "per_step"
        if "array" in spec:
            return "per_step" if np.ndim(spec["array"]) == 1 else "tensor"
    if isinstance(spec, (list, tuple)):
        return "per_step"
    return "fixed"


def lr_spots(config: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths of the learning rates of a fixture's config: ``('kwargs',)``, ``('groups', i)``, and below
    ``('kwargs', 'optimizer')`` those of LARS's wrapped optimizer."""
    out = []
    if "learning_rate" in config["kwargs"]:
        out.append(prefix + ("kwargs",))
    for i, g in enumerate(config.get("groups") or []):
        if "lr" in g:
            out.append(prefix + ("groups", i))
    inner = config["kwargs"].get("optimizer")
    if isinstance(inner, dict) and "optimizer" in inner:
        out.extend(lr_spots(inner, prefix + ("kwargs", "optimizer")))
    return out


def _node(config: dict, spot: tuple) -> tuple[dict, str]:
    node = config
    for k in spot[:-1] if spot[-1] == "kwargs" or isinstance(spot[-1], int) else spot:
        node = node[k]
    if spot[-1] == "kwargs":
        return node["kwargs"], "learning_rate"
    return node[spot[-1]], "lr"


def forms_for(config: dict, spot: tuple) -> tuple[str, ...]:
    """The JAX forms the learning rate at ``spot`` may take without changing MindSpore's trajectory."""
    holder, key = _node(config, spot)
    kind = lr_kind(holder[key])
    if config["optimizer"] == "adafactor":
        return ADAFACTOR_FORMS["tensor" if kind == "tensor" else "number"] if kind in ("fixed", "tensor") else (
            PER_STEP_FORMS if kind == "per_step" else ("as_is",))
    return {"fixed": FIXED_FORMS, "tensor": FIXED_FORMS, "per_step": PER_STEP_FORMS}.get(kind, ("as_is",))


def respell(spec, form: str):
    """The decoded learning rate ``spec`` in the JAX ``form``."""
    value = decode(spec)
    if form == "as_is":
        return value
    if form in FIXED_FORMS:
        x = np.float32(np.asarray(value, np.float32).reshape(()))
        return {"float": float(x), "jax0d": jnp.asarray(x), "numpy0d": np.asarray(x), "numpy_scalar": x}[form]
    table = np.asarray(value, np.float32).reshape(-1)
    if form == "schedule":
        last = table.shape[0] - 1
        return lambda step: jnp.asarray(table)[jnp.clip(step, 0, last)]
    return {"list": [float(v) for v in table], "tuple": tuple(float(v) for v in table), "numpy1d": table,
            "jax1d": jnp.asarray(table)}[form]


@dataclasses.dataclass(frozen=True)
class Variant:
    """How to run a fixture: ``forms`` maps each learning-rate spot (:func:`lr_spots`) to a form."""

    fused: bool
    mode: str
    inject: bool
    forms: tuple

    @property
    def label(self) -> str:
        spelled = ",".join(f"{'/'.join(map(str, s))}={f}" for s, f in self.forms)
        return (f"{'fused' if self.fused else 'leaf'}-{self.mode}{'-inject' if self.inject else ''}"
                f"[{spelled}]")


def _spelled(config: dict, forms: dict) -> tuple[Any, dict]:
    """``(factory, kwargs)`` of the config with each learning rate in its form (``decode`` for the rest)."""
    def call(cfg: dict, prefix: tuple) -> tuple[Any, dict]:
        kwargs = {}
        for k, v in cfg["kwargs"].items():
            if k == "learning_rate" and prefix + ("kwargs",) in forms:
                kwargs[k] = respell(v, forms[prefix + ("kwargs",)])
            elif k == "optimizer" and isinstance(v, dict) and "optimizer" in v:
                factory, inner = call(v, prefix + ("kwargs", "optimizer"))
                kwargs[k] = factory(**inner)
            else:
                kwargs[k] = tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else decode(v)
        if cfg.get("groups") is not None:
            kwargs["param_groups"] = [
                {k: (v if k == "params" else respell(v, forms[prefix + ("groups", i)]) if k == "lr" else decode(v))
                 for k, v in g.items()} for i, g in enumerate(cfg["groups"])]
        return getattr(jaxopt_ms, cfg["optimizer"]), kwargs

    return call(config, ())


def build_variant(config: dict, variant: Variant):
    """``(opt, layout)``: the optimizer of the variant (fused and / or injected) and, fused, the per-leaf optimizer
    whose partition packs the buffers."""
    from jaxopt_ms import fused as fusion

    factory, kwargs = _spelled(config, dict(variant.forms))
    if not variant.inject:
        layout = fusion.fuse(factory(**kwargs)) if variant.fused else None
        return (layout if variant.fused else factory(**kwargs)), layout
    static = tuple(k for k, v in kwargs.items() if callable(v))  # schedules stay the optimizer's, not optax's
    if config["optimizer"] == "adafactor" and kwargs.get("beta1", 0.9) == 0.0:
        static += ("beta1",)  # an injected beta1 of 0 is refused (no one state structure serves it; see adafactor)
    # injected, the numbers are arrays: an array weight decay may become > 0, so the decay filter splits buffers
    # even where the Python 0 would not; pack with the partition of the optimizer as optax builds it
    as_injected = {k: jnp.asarray(v, jnp.float32) if isinstance(v, (int, float, np.ndarray, np.generic)) and
                   not isinstance(v, bool) and np.ndim(v) == 0 and k not in static else v for k, v in kwargs.items()}
    layout = fusion.fuse(factory(**as_injected)) if variant.fused else None

    @functools.wraps(factory)  # optax reads the factory's signature through __wrapped__
    def wrapped(*args, **kw):
        opt = factory(*args, **kw)
        return fusion.fuse(opt) if variant.fused else opt

    return optax.inject_hyperparams(wrapped, static_args=static)(**kwargs), layout


def run_variant(case: Case, variant: Variant, observe=None) -> list:
    """The trajectory of the variant (numpy params after each step), ``observe(state)`` before each update."""
    from jaxopt_ms import fused as fusion

    opt, layout = build_variant(case.config, variant)
    params = jax.tree.map(np.asarray, case.params0)
    to_opt = from_opt = lambda x: x  # noqa: E731
    if variant.fused:
        params = layout.flatten(params)
        to_opt = lambda g: fusion.flatten(g, layout.partition)  # noqa: E731
        from_opt = fusion.unflatten
    init = jax.jit(opt.init) if variant.mode == "jit_init_update" else opt.init
    update = opt.update if variant.mode == "eager" else jax.jit(opt.update)
    return apply_steps(init, update, params, case.grads, to_opt, from_opt, observe)


COMBOS = tuple((fused, mode, inject) for fused in (False, True) for mode in MODES for inject in (False, True))


def covering_sample(cases: list[Case], count: int, seed: int) -> list[tuple[Case, Variant]]:
    """``count`` (case, variant) pairs, seeded. Run ``k`` takes combination ``k % 12`` of per leaf / fused, mode,
    inject, and spells every fixed learning rate of its case in form ``k // 12`` of that kind (so 48 runs cross
    every fixed form with every combination); per-step rates take random forms. Even runs take a case where
    MindSpore quantises a fixed rate that a group uses (``(lr + 1) - 1``: group rates mixed with per-step ones),
    odd runs any case."""
    rng = np.random.default_rng(seed)
    mixed = [c for c in cases if quantises(c.config)] or [c for c in cases if c.config.get("groups")] or cases
    out = []
    for k in range(count):
        pool = mixed if k % 2 == 0 else cases
        case = pool[int(rng.integers(len(pool)))]
        fused, mode, inject = COMBOS[k % len(COMBOS)]
        forms = []
        for spot in lr_spots(case.config):
            options = forms_for(case.config, spot)
            fixed = options[0] in FIXED_FORMS
            forms.append((spot, options[(k // len(COMBOS)) % len(options)] if fixed else
                          options[int(rng.integers(len(options)))]))
        out.append((case, Variant(fused, mode, inject, tuple(forms))))
    return out


def quantises(config: dict) -> bool:
    """Whether MindSpore quantises a fixed rate some group uses: a group sets ``lr``, some rate is per-step or a
    schedule, and some group uses a fixed rate (its own, or the optimizer's)."""
    groups = [g for g in config.get("groups") or [] if "params" in g]
    top = lr_kind(config["kwargs"].get("learning_rate", 0.0))
    used = [lr_kind(g["lr"]) if "lr" in g else top for g in groups]
    dynamic = {"per_step", "schedule"}
    return (any("lr" in g for g in groups) and bool(dynamic & (set(used) | {top}))
            and bool({"fixed", "tensor"} & set(used)))
