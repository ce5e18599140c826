"""Loading MindSpore golden trajectories (see scripts/mindspore_fixtures/common.py) and replaying them."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

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


def case_paths(family: str) -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, family, "*.npz")))


def run_trajectory(opt: optax.GradientTransformation, params0: dict, grads: list[dict], jit: bool = True) -> list:
    """Applies ``opt`` to the gradient sequence from ``params0``; returns numpy params after each step."""
    params = jax.tree.map(np.asarray, params0)
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update
    out = []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(jax.tree.map(np.asarray, params))
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
