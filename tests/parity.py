"""Loading MindSpore golden trajectories (see scripts/mindspore_fixtures/common.py) and replaying them."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@dataclass
class Case:
    name: str
    config: dict
    params0: dict
    grads: list
    traj: list
    extra: dict


def load_case(path: str) -> Case:
    data = np.load(path)
    config = json.loads(str(data["config"]))
    params0, grads, traj, extra = {}, {}, {}, {}
    for key in data.files:
        if key == "config":
            continue
        kind, rest = key.split("__", 1)
        if kind == "p0":
            params0[rest] = data[key]
        elif kind in ("g", "p"):
            step, name = rest.split("__", 1)
            (grads if kind == "g" else traj).setdefault(int(step), {})[name] = data[key]
        elif kind == "x":
            extra[rest] = data[key]
    steps = sorted(traj)
    return Case(os.path.splitext(os.path.basename(path))[0], config, params0,
                [grads[i] for i in sorted(grads)], [traj[i] for i in steps], extra)


def load_cases(path: str) -> list[Case]:
    """The cases of a multi-case ``.npz`` (scripts/mindspore_fixtures/random_cases.py): keys ``<case>/config``,
    ``<case>/p0__<leaf>``, ``<case>/g__<leaf>`` and ``<case>/p__<leaf>`` (stacked over steps) and other arrays
    (``<case>/lr``), which go to ``Case.extra``."""
    data = np.load(path)
    arrays: dict[str, dict] = {}
    for key in data.files:
        case, rest = key.split("/", 1)
        arrays.setdefault(case, {})[rest] = data[key]
    out = []
    for case, a in arrays.items():
        params0 = {k.split("__", 1)[1]: v for k, v in a.items() if k.startswith("p0__")}
        steps = len(a[f"p__{next(iter(params0))}"])
        grads = [{k: a[f"g__{k}"][i] for k in params0} for i in range(steps)]
        traj = [{k: a[f"p__{k}"][i] for k in params0} for i in range(steps)]
        extra = {k: v for k, v in a.items() if k != "config" and "__" not in k}
        out.append(Case(case, json.loads(str(a["config"])), params0, grads, traj, extra))
    return out


def case_paths(family: str) -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, family, "*.npz")))


def run_trajectory(opt: optax.GradientTransformation, params0: dict, grads: list[dict], jit: bool = True,
                   fused: bool = False, observe: Callable[[Any], None] | None = None) -> list:
    """Applies ``opt`` to the gradient sequence from ``params0``; returns numpy params after each step.

    ``fused`` runs ``jaxopt_ms.fused.fuse(opt)`` on flat buffers (params flattened once, each gradient flattened
    into the same layout, the params unflattened after each step). ``observe(state)`` is called before each update
    (e.g. to read ``jaxopt_ms.current_lr``).
    """
    if fused:
        from jaxopt_ms import fused as fusion

        fopt = fusion.fuse(opt)
        params = fopt.flatten(jax.tree.map(np.asarray, params0))
        to_opt = lambda g: fusion.flatten(g, fopt.partition)  # noqa: E731
        from_opt = fusion.unflatten
        opt = fopt
    else:
        params = jax.tree.map(np.asarray, params0)
        to_opt = from_opt = lambda x: x  # noqa: E731
    return apply_steps(opt.init, jax.jit(opt.update) if jit else opt.update, params, grads, to_opt, from_opt, observe)


def apply_steps(init: Callable, update: Callable, params: Any, grads: list[dict], to_opt: Callable,
                from_opt: Callable, observe: Callable[[Any], None] | None = None) -> list:
    """``state = init(params)``, then one ``update`` per gradient (in the optimizer's layout, ``to_opt``); numpy
    params after each step (back in the fixture's layout, ``from_opt``). ``observe(state)`` before each update."""
    state = init(params)
    out = []
    for g in grads:
        if observe is not None:
            observe(state)
        updates, state = update(to_opt(g), state, params)
        params = optax.apply_updates(params, updates)
        out.append(jax.tree.map(np.asarray, from_opt(params)))
    return out


def assert_trajectory(got: list, expected: list, rtol: float = 1e-5, atol: float = 1e-6, label: str = "") -> None:
    assert len(got) == len(expected), f"{label}: {len(got)} steps vs {len(expected)}"
    for step, (g, e) in enumerate(zip(got, expected)):
        assert set(g) == set(e), f"{label}: leaf names differ at step {step}: {sorted(g)} vs {sorted(e)}"
        for name in e:
            np.testing.assert_allclose(g[name], e[name], rtol=rtol, atol=atol,
                                       err_msg=f"{label}: step {step}, leaf {name}")


def run_final(opt: optax.GradientTransformation, params, grads: list, jit: bool = True):
    """Applies ``opt`` to the gradient sequence from ``params``; returns the final ``(params, state)``.

    ``jit=False`` runs op by op, so two runs of the same arithmetic round identically (one compiled program per
    run could fuse differently) and nothing is compiled.
    """
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def mindspore_python() -> str | None:
    """The Python of a MindSpore install for the live tests: ``$JAXOPT_MS_MINDSPORE_PYTHON``, else this
    interpreter if it has MindSpore, else ``None``."""
    command = os.environ.get("JAXOPT_MS_MINDSPORE_PYTHON")
    if command:
        return shutil.which(command) or command
    if importlib.util.find_spec("mindspore") is not None:
        return sys.executable
    return None
