"""Shared helpers for the scripts that run MindSpore 2.10 (CPU) and write golden trajectories.

Run with a Python that has ``mindspore==2.10.0`` and numpy<2 first on ``PYTHONPATH``, from the repo root::

    PYTHONPATH=$NP1 $MS_PY scripts/mindspore_fixtures/<script>.py

Fixture format (one ``.npz`` per case, under ``tests/fixtures/<family>/<case>.npz``):
``config`` (a JSON string: optimizer, arguments, notes), ``p0__<name>`` (initial params),
``g__<step>__<name>`` (gradients fed at each step), ``p__<step>__<name>`` (params after each step), and any
extra arrays (``x__...``). Parameter names are MindSpore's (``conv1.weight``, ``bn1.gamma``), which are also the
leaf names of a flat JAX dict ``{'conv1.weight': ...}``.
"""

from __future__ import annotations

import json
import os

import numpy as np

os.environ.setdefault("GLOG_v", "3")

import mindspore as ms  # noqa: E402
from mindspore import Parameter, Tensor  # noqa: E402

MODE = os.environ.get("MSMODE", "PYNATIVE")
ms.set_context(mode=ms.PYNATIVE_MODE if MODE == "PYNATIVE" else ms.GRAPH_MODE)
try:
    ms.set_device("CPU")
except Exception:  # older API
    ms.set_context(device_target="CPU")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Shapes used by the parity cases: a 4-D conv weight (shape[1] % 16 == 0 so centralization qualifies), a dense
# weight, a bias, and norm parameters whose names contain gamma / beta.
DEFAULT_SHAPES = {
    "conv1.weight": (4, 16, 3, 3),
    "fc.weight": (5, 32),
    "fc.bias": (5,),
    "bn1.gamma": (4,),
    "bn1.beta": (4,),
}


def make_params(rng: np.random.RandomState, shapes: dict = DEFAULT_SHAPES) -> dict:
    return {k: rng.randn(*s).astype(np.float32) for k, s in shapes.items()}


def make_grads(rng: np.random.RandomState, params: dict, steps: int, scale: float = 1.0) -> list[dict]:
    return [{k: (scale * rng.randn(*v.shape)).astype(np.float32) for k, v in params.items()} for _ in range(steps)]


def ms_params(params: dict) -> list:
    return [Parameter(Tensor(v.copy()), name=k) for k, v in params.items()]


def run_optimizer(opt, parameters: list, grads: list[dict]) -> list[dict]:
    """Feeds each step's gradients (in parameter order) to a MindSpore optimizer; returns params per step."""
    traj = []
    for g in grads:
        opt(tuple(Tensor(g[p.name]) for p in parameters))
        traj.append({p.name: p.asnumpy().copy() for p in parameters})
    return traj


def save_case(family: str, case: str, config: dict, params0: dict, grads: list[dict], traj: list[dict],
              extra: dict | None = None) -> str:
    out = {"config": np.array(json.dumps(config, sort_keys=True))}
    for k, v in params0.items():
        out[f"p0__{k}"] = v
    for i, g in enumerate(grads):
        for k, v in g.items():
            out[f"g__{i}__{k}"] = v
    for i, p in enumerate(traj):
        for k, v in p.items():
            out[f"p__{i}__{k}"] = v
    for k, v in (extra or {}).items():
        out[f"x__{k}"] = np.asarray(v)
    folder = os.path.join(FIXTURES, family)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{case}.npz")
    np.savez_compressed(path, **out)
    return path


def raised(fn, **kwargs) -> str | None:
    """The name of the exception MindSpore raises for ``fn(**kwargs)``, or ``None`` when it accepts them."""
    try:
        fn(**kwargs)
    except Exception as e:
        return type(e).__name__
    return None


def groups_for_ms(groups, parameters):
    """Our JSON group spec (parameter names) -> MindSpore's list of dicts (Parameters)."""
    if groups is None:
        return parameters
    by_name = {p.name: p for p in parameters}
    out = []
    for g in groups:
        d = {k: v for k, v in g.items() if k != "params"}
        d["params"] = [by_name[n] for n in g["params"]]
        out.append(d)
    return out
