"""Which exception MindSpore 2.10 raises for each bad constructor argument (tests/fixtures/validation.json).

Each row constructs a MindSpore optimizer (``SGD``, ``Momentum``, ``Adam``, ``LazyAdam``, ``AdamWeightDecay``) with
one bad argument -- an optimizer hyperparameter, ``learning_rate``, ``weight_decay``, ``loss_scale`` or a parameter
group -- and records the exception type (``null`` when MindSpore accepts it) and message. The JAX test
(tests/test_validation.py) builds the same row with ``jaxopt_ms`` and expects the same type, with a message naming
the argument (``arg``) and the value (``value``). Rows where jaxopt_ms deliberately differs carry ``jax`` (the
exception jaxopt_ms raises, or null) and ``why``.

Encoded values: ``{"$tensor": x}`` a Tensor / NumPy array, ``{"$np_float32": x}`` a NumPy scalar, ``{"$cell": 1}``
a dynamic schedule (``nn.ExponentialDecayLR(0.1, 0.9, 4)`` / a JAX callable), ``{"$object": 1}`` an ``object()``.
Group ``params`` are parameter names (``a``, ``b``: float32 (2, 2) parameters).

Run from the repository root::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/validation.py
"""

from __future__ import annotations

import json
import os

import numpy as np
from common import FIXTURES, Parameter, Tensor
from mindspore import nn

NAN = "nan"  # JSON has no nan: decoded below

M = {"learning_rate": 0.1, "momentum": 0.9}  # Momentum's required arguments
ROWS = [
    # --- learning_rate (Optimizer base, reference §2.2) ---
    ("momentum", {**M, "learning_rate": -0.1}, "learning_rate", -0.1),
    ("momentum", {**M, "learning_rate": "a"}, "learning_rate", "a"),
    ("momentum", {**M, "learning_rate": {"$tensor": [[0.1, 0.2], [0.3, 0.4]]}}, "learning_rate", None),
    ("momentum", {**M, "learning_rate": {"$object": 1}}, "learning_rate", None),
    ("momentum", {**M, "learning_rate": None}, "learning_rate", None),
    ("sgd", {"learning_rate": True}, None, None),
    ("sgd", {"learning_rate": 0}, None, None),
    ("sgd", {"learning_rate": {"$tensor": 0.1}}, None, None),
    ("sgd", {"learning_rate": {"$tensor": [0.1]}}, None, None),
    ("sgd", {"learning_rate": [0.1, 0.2]}, None, None),
    ("sgd", {"learning_rate": {"$np_float32": 0.1}}, "learning_rate", None),
    ("sgd", {"learning_rate": []}, "learning_rate", None),
    ("sgd", {"learning_rate": [[0.1, 0.2], [0.3, 0.4]]}, "learning_rate", None),
    # --- loss_scale (§2.1) ---
    ("momentum", {**M, "loss_scale": 0.0}, "loss_scale", 0.0),
    ("momentum", {**M, "loss_scale": -2.0}, "loss_scale", -2.0),
    ("momentum", {**M, "loss_scale": "2"}, "loss_scale", "2"),
    ("momentum", {**M, "loss_scale": 2}, None, None),
    ("sgd", {"loss_scale": None}, "loss_scale", None),
    ("adam_weight_decay", {"loss_scale": 2.0}, "loss_scale", None),
    # --- weight_decay (§2.1, §2.4) ---
    ("momentum", {**M, "weight_decay": -1.0}, "weight_decay", -1.0),
    ("momentum", {**M, "weight_decay": "x"}, "weight_decay", "x"),
    ("momentum", {**M, "weight_decay": 1}, None, None),
    ("momentum", {**M, "weight_decay": {"$cell": 1}}, None, None),
    ("adam", {"weight_decay": {"$cell": 1}}, None, None),
    ("adam_weight_decay", {"weight_decay": {"$cell": 1}}, None, None),
    ("sgd", {"weight_decay": {"$cell": 1}}, "weight_decay", None),
    ("lazy_adam", {"weight_decay": {"$cell": 1}}, "weight_decay", None),
    ("lazy_adam", {"weight_decay": 0}, "weight_decay", 0),
    ("lazy_adam", {"weight_decay": -0.1}, "weight_decay", -0.1),
    ("adam_weight_decay", {"weight_decay": -0.1}, "weight_decay", -0.1),
    ("adam", {"weight_decay": None}, "weight_decay", None),
    # --- Momentum (§3.2) ---
    ("momentum", {**M, "momentum": 1}, "momentum", 1),
    ("momentum", {**M, "momentum": -0.1}, "momentum", -0.1),
    ("momentum", {**M, "momentum": 1.5}, None, None),
    ("momentum", {**M, "momentum": "a"}, "momentum", "a"),
    ("momentum", {**M, "use_nesterov": 1}, "use_nesterov", 1),
    # --- SGD (§3.1) ---
    ("sgd", {"momentum": 1}, None, None),
    ("sgd", {"momentum": -0.1}, "momentum", -0.1),
    ("sgd", {"momentum": "a"}, "momentum", "a"),
    ("sgd", {"dampening": -0.1}, "dampening", -0.1),
    ("sgd", {"dampening": "x"}, "dampening", "x"),
    ("sgd", {"nesterov": 1, "momentum": 0.9}, "nesterov", 1),
    ("sgd", {"nesterov": True}, "momentum", None),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "dampening", 0.1),
    # --- Adam (§3.3) ---
    ("adam", {"beta1": 1.0}, "beta1", 1.0),
    ("adam", {"beta1": 0.0}, "beta1", 0.0),
    ("adam", {"beta1": NAN}, "beta1", None),
    ("adam", {"beta2": 1}, "beta2", 1),
    ("adam", {"beta2": -0.5}, "beta2", -0.5),
    ("adam", {"eps": 0.0}, "eps", 0.0),
    ("adam", {"eps": -1e-8}, "eps", -1e-8),
    ("adam", {"eps": 1}, "eps", 1),
    ("adam", {"use_locking": 1}, "use_locking", 1),
    ("adam", {"use_nesterov": 1}, "use_nesterov", 1),
    ("adam", {"use_amsgrad": 1}, "use_amsgrad", 1),
    ("adam", {"use_lazy": 1}, "use_lazy", 1),
    ("adam", {"use_lazy": True, "use_offload": True}, "use_lazy", None),
    ("adam", {"use_amsgrad": True, "use_lazy": True}, "use_amsgrad", None),
    ("adam", {"loss_scale": 0.0}, "loss_scale", 0.0),
    # --- LazyAdam (§3.5) ---
    ("lazy_adam", {"beta2": 1.0}, "beta2", 1.0),
    ("lazy_adam", {"eps": 1}, "eps", 1),
    ("lazy_adam", {"use_nesterov": 1}, "use_nesterov", 1),
    # --- AdamWeightDecay (§3.4) ---
    ("adam_weight_decay", {"beta1": 1}, "beta1", 1),
    ("adam_weight_decay", {"beta2": 1.0}, "beta2", 1.0),
    ("adam_weight_decay", {"eps": 0.0}, "eps", 0.0),
    ("adam_weight_decay", {"weight_decay": 1}, None, None),
    # --- parameter groups (§2.3) ---
    ("momentum", {**M, "param_groups": [{"params": ["a"], "foo": 1}]}, "foo", None),
    ("momentum", {**M, "param_groups": [{"lr": 0.1}]}, "params", None),
    ("momentum", {**M, "param_groups": [{"params": []}]}, "params", None),
    ("momentum", {**M, "param_groups": [{"params": [1]}]}, "params", 1),
    ("momentum", {**M, "param_groups": [{"params": ["a", "b"]}, {"params": ["a"]}]}, "a", None),
    ("momentum", {**M, "param_groups": [{"params": ["a"]}, {"order_params": ["a"], "lr": 0.1}]}, "order_params",
     None),
    ("momentum", {**M, "param_groups": [{"params": ["a"]}, {"order_params": 5}]}, "order_params", 5),
    ("momentum", {**M, "param_groups": [{"params": ["a"], "grad_centralization": 1}]}, "gradients_centralization",
     1),
    ("momentum", {**M, "param_groups": [{"params": ["a"], "lr": -0.1}]}, "lr", -0.1),
    ("momentum", {**M, "param_groups": [{"params": ["a"], "lr": "x"}]}, "lr", "x"),
    ("momentum", {**M, "param_groups": [{"params": ["a"], "weight_decay": -1.0}]}, "weight_decay", -1.0),
    ("momentum", {**M, "param_groups": [{"params": ["a"], "weight_decay": "x"}]}, "weight_decay", "x"),
    ("momentum", {**M, "learning_rate": [0.1, 0.2, 0.3],
                  "param_groups": [{"params": ["a"], "lr": [0.1, 0.2]}, {"params": ["b"]}]}, "lr", None),
    ("sgd", {"param_groups": [{"params": ["a"], "weight_decay": {"$cell": 1}}]}, "weight_decay", None),
    ("adam", {"param_groups": [{"params": ["a"], "lr": [0.1, 0.2], "weight_decay": {"$cell": 1}},
                               {"params": ["b"], "lr": 0.01}]}, None, None),
]

# Where jaxopt_ms deliberately differs from MindSpore: the exception it raises instead (or None) and why.
DEVIATIONS = {
    'sgd|{"learning_rate":{"$np_float32":0.1}}': (
        None, "a NumPy scalar is a 0-d array to JAX users: accepted as a fixed learning rate"),
    'sgd|{"learning_rate":[]}': (
        "ValueError", "MindSpore accepts [] and fails at the first step; jaxopt_ms raises at construction"),
    'sgd|{"learning_rate":[[0.1,0.2],[0.3,0.4]]}': (
        "ValueError", "MindSpore accepts a nested list and fails at the first step; jaxopt_ms raises at construction"),
    'adam|{"beta1":"nan"}': (
        "ValueError", "MindSpore's open-range check lets nan through (every comparison is false); a nan beta "
                      "would turn every parameter into nan, so jaxopt_ms rejects it"),
}


def row_id(optimizer: str, args: dict) -> str:
    return optimizer + "|" + json.dumps(args, separators=(",", ":"))


def decode(v):
    if v == NAN:
        return float("nan")
    if isinstance(v, dict):
        if "$tensor" in v:
            return Tensor(np.asarray(v["$tensor"], np.float32))
        if "$np_float32" in v:
            return np.float32(v["$np_float32"])
        if "$cell" in v:
            return nn.ExponentialDecayLR(0.1, 0.9, 4)
        if "$object" in v:
            return object()
    return v


CLASSES = {"sgd": nn.SGD, "momentum": nn.Momentum, "adam": nn.Adam, "lazy_adam": nn.LazyAdam,
           "adam_weight_decay": nn.AdamWeightDecay}


def construct(optimizer: str, args: dict):
    pool = {n: Parameter(Tensor(np.ones((2, 2), np.float32)), name=n) for n in ("a", "b")}
    kwargs = {k: decode(v) for k, v in args.items() if k != "param_groups"}
    if "param_groups" in args:
        groups = []
        for g in args["param_groups"]:
            group = {}
            for k, v in g.items():
                if k in ("params", "order_params") and isinstance(v, list):
                    group[k] = [pool[n] if isinstance(n, str) else n for n in v]
                else:
                    group[k] = decode(v)
            groups.append(group)
        return CLASSES[optimizer](groups, **kwargs)
    return CLASSES[optimizer](list(pool.values()), **kwargs)


def main() -> None:
    out = []
    for optimizer, args, arg, value in ROWS:
        rid = row_id(optimizer, args)
        try:
            construct(optimizer, args)
            exc, msg = None, ""
        except Exception as e:  # noqa: BLE001 - recording whatever MindSpore raises is the point
            exc, msg = type(e).__name__, str(e).strip().splitlines()[0][:300]
        row = {"id": rid, "optimizer": optimizer, "args": args, "arg": arg, "value": value,
               "mindspore": exc, "mindspore_message": msg}
        if rid in DEVIATIONS:
            row["jax"], row["why"] = DEVIATIONS[rid]
        out.append(row)
        print(f"{rid:90s} {exc}: {msg[:100]}")
    path = os.path.join(FIXTURES, "validation.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
