"""Which exception MindSpore 2.10 raises for each bad constructor argument (tests/fixtures/validation.json).

Each row constructs a MindSpore optimizer (every one the CPU build can construct: ``SGD``, ``Momentum``, ``Adam``,
``LazyAdam``, ``AdamWeightDecay``, ``AdaFactor``, ``FTRL``, ``RMSProp``, ``Adagrad``, ``ProximalAdagrad``,
``Adadelta``, ``AdaMax``, ``ASGD``, ``Rprop``, ``Lamb``) with one bad argument -- an optimizer hyperparameter,
``learning_rate``, ``weight_decay``, ``loss_scale`` or a parameter group -- and records the exception type
(``null`` when MindSpore accepts it) and message. The JAX test
(tests/test_validation.py) builds the same row with ``jaxopt_ms`` and expects the same type, with a message naming
the argument (``arg``) and the value (``value``). Rows where jaxopt_ms deliberately differs carry ``jax`` (the
exception jaxopt_ms raises, or null) and ``why``.

Encoded values: ``{"$tensor": x}`` a Tensor / NumPy array, ``{"$np_float32": x}`` a NumPy scalar, ``{"$cell": 1}``
a dynamic schedule (``nn.ExponentialDecayLR(0.1, 0.9, 4)`` / a JAX callable), ``{"$object": 1}`` an ``object()``,
``{"$tuple": [...]}`` a tuple. Besides the hand-written rows, ``random_rows`` draws (seeded) one argument of one
optimizer and a value from a pool of kinds (bool, int, negative, zero, out-of-range, nan, inf, str, None, NumPy
scalar, list).
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
    # --- bool where MindSpore takes an int (isinstance(True, int)) ---
    ("sgd", {"weight_decay": True}, None, None),
    ("sgd", {"momentum": True}, None, None),
    ("sgd", {"dampening": True}, None, None),
    ("sgd", {"loss_scale": True}, None, None),
    ("momentum", {**M, "weight_decay": True}, None, None),
    ("adam", {"weight_decay": True}, None, None),
    ("adam", {"loss_scale": True}, None, None),
    ("adafactor", {"loss_scale": True}, None, None),
    # --- learning rate by value, every type ---
    ("sgd", {"learning_rate": NAN}, "learning", None),
    ("sgd", {"learning_rate": "inf"}, "learning", None),
    ("sgd", {"learning_rate": {"$np_float32": -0.1}}, "learning_rate", None),
    ("sgd", {"learning_rate": {"$tensor": -0.1}}, "learning_rate", None),
    ("sgd", {"learning_rate": [0.1, -0.1]}, "learning_rate", None),
    ("ftrl", {"learning_rate": "abc"}, None, None),
    ("ftrl", {"learning_rate": 1}, "learning_rate", 1),
    ("ftrl", {"learning_rate": -0.1}, "learning", -0.1),
    ("ftrl", {"learning_rate": NAN}, "learning", None),
    ("ftrl", {"learning_rate": [0.1, 0.2]}, "learning", None),
    ("lamb", {"learning_rate": -0.1}, "learning", -0.1),
    # --- AdaFactor ---
    ("adafactor", {"param_groups": [{"params": ["a"], "lr": 0.1}, {"params": ["b"]}]}, None, None),
    ("adafactor", {"learning_rate": 0.1, "relative_step": False, "param_groups": [{"params": ["a"], "lr": 0.05},
                                                                                 {"params": ["b"]}]}, "lr", None),
    ("adafactor", {"learning_rate": 0.1}, "learning_rate", 0.1),
    ("adafactor", {"relative_step": False}, "learning_rate", None),
    ("adafactor", {"warmup_init": True, "relative_step": False, "learning_rate": 0.1}, "warmup_init", None),
    ("adafactor", {"eps": [1e-30]}, "eps", None),
    ("adafactor", {"eps": 1e-30}, "eps", 1e-30),
    ("adafactor", {"decay_rate": 1.0}, "decay_rate", 1.0),
    ("adafactor", {"clip_threshold": -1.0}, "clip_threshold", -1.0),
    ("adafactor", {"weight_decay": 1.0}, "weight_decay", 1.0),
    ("adafactor", {"weight_decay": 0}, "weight_decay", 0),
    ("adafactor", {"scale_parameter": 1}, "scale_parameter", 1),
    ("adafactor", {"beta1": 1}, None, None),
    ("adafactor", {"beta1": -0.1}, "beta1", -0.1),
    # --- FTRL, RMSProp, Adagrad, ProximalAdagrad ---
    ("ftrl", {"l1": True}, "l1", True),
    ("ftrl", {"l2": -1.0}, "l2", -1.0),
    ("ftrl", {"lr_power": 0.5}, "lr_power", 0.5),
    ("ftrl", {"initial_accum": -0.1}, "initial_accum", -0.1),
    ("ftrl", {"use_locking": 1}, "use_locking", 1),
    ("rmsprop", {"decay": True}, "decay", True),
    ("rmsprop", {"momentum": 1}, "momentum", 1),
    ("rmsprop", {"epsilon": 0.0}, "epsilon", 0.0),
    ("rmsprop", {"decay": -0.1}, "decay", -0.1),
    ("rmsprop", {"centered": 1}, "centered", 1),
    ("adagrad", {"accum": True}, "accum", True),
    ("adagrad", {"accum": -0.1}, "accum", -0.1),
    ("adagrad", {"update_slots": 1}, "update_slots", 1),
    ("proximal_adagrad", {"l1": -0.1}, "l1", -0.1),
    ("proximal_adagrad", {"accum": 1}, "accum", 1),
    # --- Adadelta, AdaMax, ASGD, Rprop, Lamb ---
    ("adadelta", {"rho": True}, "rho", True),
    ("adadelta", {"rho": 1.5}, "rho", 1.5),
    ("adadelta", {"epsilon": -1.0}, "epsilon", -1.0),
    ("adamax", {"beta1": 1.0}, "beta1", 1.0),
    ("adamax", {"eps": 0.0}, "eps", 0.0),
    ("asgd", {"lambd": 1}, "lambd", 1),
    ("asgd", {"alpha": True}, "alpha", True),
    ("asgd", {"t0": 1}, "t0", 1),
    ("rprop", {"etas": [0.5, 1.2]}, "etas", None),
    ("rprop", {"etas": {"$tuple": [1.5, 1.2]}}, "etaminus", 1.5),
    ("rprop", {"step_sizes": {"$tuple": [1.0, 0.5]}}, "step", None),
    ("lamb", {"learning_rate": 0.1, "beta1": 1.0}, "beta1", 1.0),
    ("lamb", {"learning_rate": 0.1, "eps": 0.0}, "eps", 0.0),
    ("lamb", {"learning_rate": 0.1, "weight_decay": -1.0}, "weight_decay", -1.0),
]

# the hyperparameters the randomized rows draw from (name: (optimizer's required arguments, [argument names]))
RANDOM_ARGS = {
    "sgd": ({}, ["learning_rate", "momentum", "dampening", "weight_decay", "loss_scale", "nesterov"]),
    "momentum": (M, ["learning_rate", "momentum", "weight_decay", "loss_scale", "use_nesterov"]),
    "adam": ({}, ["learning_rate", "beta1", "beta2", "eps", "weight_decay", "loss_scale", "use_nesterov"]),
    "lazy_adam": ({}, ["beta1", "beta2", "eps", "weight_decay", "loss_scale"]),
    "adam_weight_decay": ({}, ["learning_rate", "beta1", "beta2", "eps", "weight_decay"]),
    "adafactor": ({}, ["clip_threshold", "decay_rate", "beta1", "weight_decay", "scale_parameter", "loss_scale"]),
    "ftrl": ({}, ["initial_accum", "learning_rate", "lr_power", "l1", "l2", "loss_scale", "weight_decay"]),
    "rmsprop": ({}, ["learning_rate", "decay", "momentum", "epsilon", "loss_scale", "weight_decay", "centered"]),
    "adagrad": ({}, ["accum", "learning_rate", "loss_scale", "weight_decay", "update_slots"]),
    "proximal_adagrad": ({}, ["accum", "learning_rate", "l1", "l2", "loss_scale", "weight_decay"]),
    "adadelta": ({}, ["learning_rate", "rho", "epsilon", "loss_scale", "weight_decay"]),
    "adamax": ({}, ["learning_rate", "beta1", "beta2", "eps", "weight_decay", "loss_scale"]),
    "asgd": ({}, ["learning_rate", "lambd", "alpha", "t0", "weight_decay"]),
    "rprop": ({}, ["learning_rate", "weight_decay"]),
    "lamb": ({"learning_rate": 0.1}, ["learning_rate", "beta1", "beta2", "eps", "weight_decay"]),
}
VALUE_POOL = [True, False, 0, 1, 2, -1, 0.0, -0.5, 0.5, 1.0, 1.5, NAN, "inf", "x", None, [0.1, 0.2],
              {"$np_float32": 0.5}]


def random_rows(seed: int = 0, n: int = 80) -> list:
    """Seeded random (optimizer, one argument, one value) rows; each recorded with what MindSpore does."""
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    names = sorted(RANDOM_ARGS)
    while len(rows) < n:
        optimizer = names[rng.integers(len(names))]
        base, args = RANDOM_ARGS[optimizer]
        arg = args[rng.integers(len(args))]
        value = VALUE_POOL[rng.integers(len(VALUE_POOL))]
        row_args = {**base, arg: value}
        rid = row_id(optimizer, row_args)
        if rid in seen:
            continue
        seen.add(rid)
        shown = value if isinstance(value, (bool, int, float)) and value != NAN else None
        rows.append((optimizer, row_args, arg, shown))
    return rows

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
    'sgd|{"learning_rate":{"$tensor":-0.1}}': (
        "ValueError", "MindSpore does not check a Tensor's value (a negative rate ascends); every concrete "
                      "learning rate gets the same rule in jaxopt_ms: finite and >= 0"),
    'sgd|{"learning_rate":[0.1,-0.1]}': (
        "ValueError", "MindSpore does not check a list's values (a negative rate ascends); every concrete "
                      "learning rate gets the same rule in jaxopt_ms: finite and >= 0"),
    'adafactor|{"learning_rate":0.1,"relative_step":false,'
    '"param_groups":[{"params":["a"],"lr":0.05},{"params":["b"]}]}': (
        "ValueError", "MindSpore accepts it, but its AdaFactor passes the tuple of group rates unmapped to every "
                      "leaf (it has one learning rate); jaxopt_ms refuses rather than guess a trajectory"),
}


# Type before value (issue 27): every hyperparameter, a NumPy scalar and a 0-d Tensor with a valid and an invalid
# value. MindSpore rejects both types everywhere it takes a number (a TypeError, whatever the value) and takes a
# 0-d Tensor learning rate without checking its value (FTRL aside: float only). jaxopt_ms accepts these types as a
# JAX extension (a 0-d Tensor is a NumPy or JAX 0-d array there) only with a valid value: an invalid one must be
# MindSpore's TypeError, the type check MindSpore makes first.
TYPE_GOOD = {"beta1": 0.5, "beta2": 0.5, "eps": 1e-8, "weight_decay": 0.1, "loss_scale": 2.0, "momentum": 0.5,
             "dampening": 0.1, "learning_rate": 0.1, "initial_accum": 0.1, "lr_power": -0.5, "l1": 0.1, "l2": 0.1,
             "decay": 0.5, "epsilon": 0.1, "accum": 0.1, "rho": 0.5, "lambd": 1e-4, "alpha": 0.5, "t0": 1.0,
             "clip_threshold": 1.0, "decay_rate": 0.5}
TYPE_BAD = {"beta1": 1.5, "beta2": 1.5, "eps": -1.0, "weight_decay": -0.1, "loss_scale": -2.0, "momentum": -0.5,
            "dampening": -0.1, "learning_rate": -0.1, "initial_accum": -0.1, "lr_power": 0.5, "l1": -0.1, "l2": -0.1,
            "decay": -0.5, "epsilon": -0.1, "accum": -0.1, "rho": 1.5, "lambd": -1e-4, "alpha": -0.5, "t0": -1.0,
            "clip_threshold": -1.0, "decay_rate": 1.5}


def type_rows() -> list:
    rows = []
    for optimizer, (base, args) in sorted(RANDOM_ARGS.items()):
        for arg in args:
            if arg not in TYPE_GOOD or (optimizer == "adafactor" and arg == "learning_rate"):
                continue
            for value in ({"$tensor": TYPE_BAD[arg]}, {"$np_float32": TYPE_BAD[arg]}, {"$tensor": TYPE_GOOD[arg]}):
                rows.append((optimizer, {**base, arg: value}, arg, None))
    return rows


def as_python(args: dict) -> dict:
    """The row with each NumPy scalar and 0-d Tensor as the Python float of the same value."""
    def plain(v):
        if isinstance(v, dict) and "$np_float32" in v:
            return v["$np_float32"]
        if isinstance(v, dict) and "$tensor" in v and np.ndim(v["$tensor"]) == 0:
            return v["$tensor"]
        return v
    return {k: plain(v) for k, v in args.items()}


def rule_deviation(optimizer: str, args: dict, mindspore: str | None, plain_float: str | None):
    """Deviations that follow from a rule rather than a single row (see DEVIATIONS). ``plain_float``: what
    jaxopt_ms raises for the row with Python floats (``as_python``; MindSpore's outcome or its deviation)."""
    for k, v in args.items():
        extension = isinstance(v, dict) and ("$np_float32" in v or "$tensor" in v and np.ndim(v["$tensor"]) == 0)
        if extension and mindspore == "TypeError" and plain_float is None:
            return None, ("a NumPy scalar or 0-d array is accepted where MindSpore takes a number (a JAX extension, "
                          "e.g. optax.inject_hyperparams) when its value is valid; an invalid one is MindSpore's "
                          "TypeError (type before value)")
        if extension and mindspore is None and plain_float is not None:
            return plain_float, ("MindSpore does not check a Tensor's value (a negative rate ascends); every concrete "
                                 "learning rate gets the same rule in jaxopt_ms: finite and >= 0")
        if v in (NAN, "inf") and mindspore is None:
            return "ValueError", (f"MindSpore does not check that '{k}' is finite; a nan or inf hyperparameter "
                                  "would turn every parameter into nan, so jaxopt_ms rejects it")
    return None


def expected_jax(optimizer: str, args: dict) -> str | None:
    """What jaxopt_ms raises for a row of Python values: MindSpore's exception, or the row's deviation."""
    exc = outcome(optimizer, args)[0]
    rid = row_id(optimizer, args)
    if rid in DEVIATIONS:
        return DEVIATIONS[rid][0]
    rule = rule_deviation(optimizer, args, exc, exc)
    return exc if rule is None else rule[0]


def row_id(optimizer: str, args: dict) -> str:
    return optimizer + "|" + json.dumps(args, separators=(",", ":"))


def decode(v):
    if v == NAN:
        return float("nan")
    if v == "inf":
        return float("inf")
    if isinstance(v, dict):
        if "$tuple" in v:
            return tuple(v["$tuple"])
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
           "adam_weight_decay": nn.AdamWeightDecay, "adafactor": nn.AdaFactor, "ftrl": nn.FTRL, "rmsprop": nn.RMSProp,
           "adagrad": nn.Adagrad, "proximal_adagrad": nn.ProximalAdagrad, "adadelta": nn.Adadelta,
           "adamax": nn.AdaMax, "asgd": nn.ASGD, "rprop": nn.Rprop, "lamb": nn.Lamb}


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


def outcome(optimizer: str, args: dict):
    try:
        construct(optimizer, args)
        return None, ""
    except Exception as e:  # noqa: BLE001 - recording whatever MindSpore raises is the point
        return type(e).__name__, str(e).strip().splitlines()[0][:300]


def main() -> None:
    out = []
    hand = {row_id(o, a) for o, a, _, _ in ROWS}
    rows = ROWS + [r for r in random_rows() if row_id(r[0], r[1]) not in hand]
    rows += [r for r in type_rows() if row_id(r[0], r[1]) not in {row_id(o, a) for o, a, _, _ in rows}]
    for optimizer, args, arg, value in rows:
        rid = row_id(optimizer, args)
        exc, msg = outcome(optimizer, args)
        # the same row with Python floats: what jaxopt_ms does with it decides the extension's rule
        as_float = as_python(args)
        plain = expected_jax(optimizer, as_float) if as_float != args else exc
        rule = rule_deviation(optimizer, args, exc, plain)
        row = {"id": rid, "optimizer": optimizer, "args": args, "arg": arg, "value": value,
               "mindspore": exc, "mindspore_message": msg}
        if rid in DEVIATIONS:
            row["jax"], row["why"] = DEVIATIONS[rid]
        elif rule is not None:
            row["jax"], row["why"] = rule
        out.append(row)
        print(f"{rid:90s} {exc}: {msg[:100]}")
    path = os.path.join(FIXTURES, "validation.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
