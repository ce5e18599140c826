"""Name and layout rules between MindSpore checkpoints and Flax / Equinox / plain-JAX models (the machinery of
:mod:`jaxopt_ms.mindspore_checkpoint.models`).

A layout change is a list of invertible array operations (squeeze, transpose, flip, reshape) computed from the layer
kind, the preset and both shapes; :func:`_plan` pairs every MindSpore network entry with a target leaf, checks the
converted shape against the target's, and applies the flatten-order rule; :func:`_forward` rewrites a whole
checkpoint (optimizer-state entries follow their parameters) and :func:`_inverse_leaves` gives MindSpore's names and
shapes of a target's leaves for the way back. The rules are tabulated in ``docs/checkpoints.md`` ("Porting a model").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from jaxopt_ms.names import param_names


# ----------------------------------------------------------------------------------------------------- presets
@dataclasses.dataclass(frozen=True)
class Preset:
    """How one framework names and lays out what MindSpore saves.

    ``names``: MindSpore's last name component -> the framework's, for parameters (``weight`` -> ``kernel``);
    ``norm_names``: the same inside a norm layer (``gamma`` -> ``scale``); ``stats``: BatchNorm moving statistics
    (``moving_mean`` -> ``mean``); ``channels_last``: convolutions and flattens are NHWC (Flax), which transposes
    conv and dense kernels and makes the dense layer after a conv stack need ``flatten=``; ``bias_broadcast``: conv
    biases are stored with unit spatial axes (Equinox's ``(out, 1, 1)``).
    """

    name: str
    names: Mapping[str, str]
    stats: Mapping[str, str]
    channels_last: bool
    bias_broadcast: bool = False


_FLAX_NAMES = {"weight": "kernel", "gamma": "scale", "beta": "bias", "embedding_table": "embedding"}
_STATS = ("moving_mean", "moving_variance")
PRESETS: dict[str, Preset] = {
    "flax_nnx": Preset("flax_nnx", _FLAX_NAMES, {"moving_mean": "mean", "moving_variance": "var"}, True),
    "flax_linen": Preset("flax_linen", _FLAX_NAMES, {"moving_mean": "mean", "moving_variance": "var"}, True),
    "equinox": Preset("equinox", {"gamma": "weight", "beta": "bias", "embedding_table": "weight"},
                      {"moving_mean": "moving_mean", "moving_variance": "moving_variance"}, False, True),
    "plain": Preset("plain", {}, {"moving_mean": "moving_mean", "moving_variance": "moving_variance"}, False),
}

# MindSpore's per-parameter optimizer-state prefixes (docs/checkpoints.md, "Names"): entry = prefix + parameter name.
STATE_PREFIXES = ("moment1.", "moment2.", "vhat.", "adam_m.", "adam_v.", "accum.", "accum_update.", "moments.",
                  "linear.", "mean_square.", "mean_grad.", "moment.", "lamb_m.", "lamb_v.", "exp_avg.",
                  "exp_avg_sq_row_", "exp_avg_sq_col_", "exp_avg_sq_", "eta_", "mu_", "ax_.", "prev.", "step_size.",
                  "stat.")
# Optimizer-level entries (not per parameter): passed through unchanged.
_SCALARS = {"global_step", "beta1_power", "beta2_power", "scale_sense", "current_iterator_step",
            "last_overflow_iterator_step", "learning_rate", "momentum", "afactor_step", "epoch_num", "step_num",
            "fake_lr", "fake_param"}
KINDS = ("dense", "conv", "conv_transpose", "conv_transpose_kernel", "embedding", "norm", "same")


# ---------------------------------------------------------------------------------------------- layout operations
def _apply(ops: list[tuple], a: np.ndarray) -> np.ndarray:
    """Applies layout operations: ``('squeeze' | 'expand', axis)``, ``('transpose', perm)``, ``('flip', axes)``,
    ``('reshape', (from_shape, to_shape))``."""
    for op, arg in ops:
        if op == "squeeze":
            a = np.squeeze(a, arg)
        elif op == "expand":
            a = np.expand_dims(a, arg)
        elif op == "transpose":
            a = np.transpose(a, arg)
        elif op == "flip":
            a = np.flip(a, arg)
        else:
            a = a.reshape(arg[1])
    return np.ascontiguousarray(a)


def _invert(ops: list[tuple]) -> list[tuple]:
    """The operations that undo ``ops``."""
    out: list[tuple] = []
    for op, arg in reversed(ops):
        if op == "squeeze":
            out.append(("expand", arg))
        elif op == "expand":
            out.append(("squeeze", arg))
        elif op == "transpose":
            out.append(("transpose", tuple(int(i) for i in np.argsort(arg))))
        elif op == "flip":
            out.append(("flip", arg))
        else:
            out.append(("reshape", (arg[1], arg[0])))
    return out


def _apply_inverse(ops: list[tuple], a: np.ndarray) -> np.ndarray:
    return _apply(_invert(ops), a)


@dataclasses.dataclass
class _Leaf:
    """One parameter or moving statistic: its MindSpore and target names, shapes, kind and layout operations."""

    ms: str
    target: str
    collection: str  # 'params' or 'batch_stats'
    ms_shape: tuple
    target_shape: tuple
    kind: str
    ops: list


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _ops(kind: str, preset: Preset, ms_shape: tuple, target_shape: tuple, flatten: tuple | None,
         where: str) -> list[tuple]:
    """The array operations taking MindSpore's layout of one leaf to the target's."""
    ops: list[tuple] = []
    shape = tuple(ms_shape)
    nd = len(target_shape)
    if kind in ("conv", "conv_transpose", "conv_transpose_kernel") and len(shape) == nd + 1 and len(shape) == 4 \
            and shape[2] == 1:
        ops.append(("squeeze", 2))  # MindSpore's Conv1d / Conv1dTranspose keep a unit height: (O, I, 1, K)
        shape = shape[:2] + shape[3:]
    if kind == "dense" and flatten is not None:
        out, n_in = shape
        c, *spatial = flatten
        if c * int(np.prod(spatial)) != n_in:
            raise ValueError(f"flatten for {where!r} is {tuple(flatten)}, which holds {c * int(np.prod(spatial))} "
                             f"inputs, but the dense weight {tuple(ms_shape)} has {n_in}.")
        # MindSpore's input index c*S + s (channel-major); the target's s*C + c (channel-minor)
        ops += [("reshape", (shape, (out, c, *spatial))),
                ("transpose", (0, *range(2, 2 + len(spatial)), 1)),
                ("reshape", ((out, *spatial, c), shape))]
    spatial_axes = tuple(range(2, len(shape)))
    if preset.channels_last:
        if kind == "dense":
            ops.append(("transpose", (1, 0)))
        elif kind == "conv":  # (O, I/g, *k) -> (*k, I/g, O)
            ops.append(("transpose", (*spatial_axes, 1, 0)))
        elif kind == "conv_transpose":  # (I, O, *k) -> flipped (*k, I, O): Flax ConvTranspose(transpose_kernel=False)
            ops += [("flip", spatial_axes), ("transpose", (*spatial_axes, 0, 1))]
        elif kind == "conv_transpose_kernel":  # (I, O, *k) -> (*k, O, I): Flax ConvTranspose(transpose_kernel=True)
            ops.append(("transpose", (*spatial_axes, 1, 0)))
    elif kind == "conv_transpose" and preset.name == "equinox":
        # (I, O/g, *k) -> (O, I/g, *k), spatially flipped (Equinox's ConvTranspose is the conv with that weight)
        i, og, *k = shape
        o = target_shape[0] if target_shape else og
        g = max(o // og, 1)
        if g == 1:
            ops += [("transpose", (1, 0, *spatial_axes)), ("flip", spatial_axes)]
        else:
            ops += [("reshape", (shape, (g, i // g, og, *k))), ("transpose", (0, 2, 1, *range(3, 3 + len(k)))),
                    ("reshape", ((g, og, i // g, *k), (o, i // g, *k))), ("flip", spatial_axes)]
    now = tuple(_shape_after(ops, ms_shape))
    if now != tuple(target_shape) and int(np.prod(now)) == int(np.prod(target_shape)) and \
            tuple(d for d in now if d != 1) == tuple(d for d in target_shape if d != 1) and \
            (preset.bias_broadcast or kind == "same"):
        ops.append(("reshape", (now, tuple(target_shape))))  # unit axes only: Equinox's (O, 1, 1) conv bias
    return ops


def _shape_after(ops: list[tuple], shape: tuple) -> tuple:
    return _apply(ops, np.zeros(shape, np.bool_)).shape


def _default_kind(preset: Preset, ms_name: str, ms_shape: tuple, module: str | None) -> str:
    last = _last(ms_name)
    if last in ("gamma", "beta") or last in _STATS:
        return "norm"
    if last == "embedding_table":
        return "embedding"
    if module in ("embedding", "norm") and last == "weight":
        return module
    if last != "weight":
        return "same"
    if module is not None and module != "norm":
        return module
    if len(ms_shape) == 2:
        return "dense"
    return "conv" if len(ms_shape) >= 3 else "same"


# -------------------------------------------------------------------------------------------------- naming
def _renamer(rename: Mapping[str, str] | None) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """Explicit renames: ``{mindspore prefix or name: target prefix or name}``, longest prefix first, both ways."""
    rename = dict(rename or {})
    for k, v in rename.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"'rename' must map str to str, but got {k!r}: {v!r}.")

    def make(table: dict[str, str]) -> Callable[[str], str]:
        keys = sorted(table, key=len, reverse=True)

        def f(name: str) -> str:
            for k in keys:
                if name == k or name.startswith(k + "."):
                    return table[k] + name[len(k):]
            return name
        return f
    return make(rename), make({v: k for k, v in rename.items()})


def _target_name(preset: Preset, ms_name: str, kind: str, rename: Callable[[str], str]) -> str:
    name = rename(ms_name)
    layer, last = _layer(name), _last(name)
    if last in preset.stats:
        new = preset.stats[last]
    elif kind == "same" and last == "weight":
        new = last
    else:
        new = preset.names.get(last, last)
    return f"{layer}.{new}" if layer else new


def _leaves(tree: Any) -> dict[str, Any]:
    names = param_names(tree)
    return dict(zip(jax.tree.leaves(names), jax.tree.leaves(tree)))


# ---------------------------------------------------------------------------------------------------- planning
def _split(ckpt: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """MindSpore's network entries (parameters and moving statistics, file order) and its per-parameter state
    entries ``{entry: (prefix, parameter)}``."""
    names = set(ckpt)
    state: dict[str, tuple[str, str]] = {}
    for entry in ckpt:
        for prefix in STATE_PREFIXES:
            if entry.startswith(prefix) and entry[len(prefix):] in names and entry not in state:
                state[entry] = (prefix, entry[len(prefix):])
    network = [n for n in ckpt if n not in state and n not in _SCALARS and not n.startswith("learning_rate_group_")
               and not n.startswith("Parameter$") and np.asarray(ckpt[n]).dtype.kind in "fc"]
    return network, state


def _network_order(names: list[str]) -> bool:
    """Whether checkpoint entries are in a MindSpore network's order: each layer's weight before its bias."""
    position = {n: i for i, n in enumerate(names)}
    pairs = [(position[f"{layer}.{a}"], position[f"{layer}.{b}"]) for layer in {_layer(n) for n in names}
             for a, b in (("weight", "bias"), ("gamma", "beta")) if f"{layer}.{a}" in position
             and f"{layer}.{b}" in position]
    return bool(pairs) and all(i < j for i, j in pairs)


def _flatten_specs(entries: list[tuple[str, str, tuple]], preset: Preset, flatten: Mapping[str, Any],
                   rename: Callable[[str], str], target_order: list[str], file_order: list[str]
                   ) -> dict[str, tuple | None]:
    """``{dense weight: (C, *spatial) or None}``: the row permutation of each dense layer fed by a flatten.

    ``entries``: ``(name, kind, mindspore shape)`` of every weight. A dense layer whose inputs are a multiple of
    the channels of the conv before it is fed by a flattened feature map; in a channel-last model its input order
    differs from MindSpore's, so ``flatten`` must say the map's shape (or ``None``). "Before it" is the checkpoint's
    order where that is the network's (a ``.ckpt``: each layer's ``weight`` before its ``bias``, ``gamma`` before
    ``beta``); otherwise (``.safetensors`` sorts its entries) a linen target's creation order, else every conv
    counts (the check then asks more often, never less).
    """
    used: set[str] = set()
    out: dict[str, tuple | None] = {}
    order_known = _network_order(file_order)
    if not order_known and target_order and target_order != sorted(target_order):
        rank = {t: i for i, t in enumerate(target_order)}
        entries = sorted(entries, key=lambda e: rank.get(_layer(rename(e[0])), len(rank)))
        order_known = True
    convs = [(n, shape[0] if kind == "conv" else shape[1]) for n, kind, shape in entries
             if kind in ("conv", "conv_transpose", "conv_transpose_kernel")]
    last_conv: tuple[str, int] | None = None
    for n, kind, shape in entries:
        if kind in ("conv", "conv_transpose", "conv_transpose_kernel"):
            last_conv = (n, shape[0] if kind == "conv" else shape[1])
            continue
        if kind != "dense":
            continue
        before = [last_conv] if order_known and last_conv is not None else [] if order_known else convs
        last_conv = None
        key = next((k for k in (_layer(n), _layer(rename(n)), n) if k in flatten), None)
        if key is not None:
            used.add(key)
            spec = flatten[key]
            if spec is not None:
                spec = tuple(int(d) for d in spec)
                if before and all(spec[0] != c for _, c in before):
                    conv, c = before[-1]
                    raise ValueError(f"flatten[{key!r}] = {spec} starts with {spec[0]} channels, but the "
                                     f"convolution before it, {conv!r}, has {c}.")
            out[n] = spec
            continue
        fed = [(conv, c) for conv, c in before if shape[1] != c and shape[1] % c == 0]
        if preset.channels_last and fed and not any(shape[1] == c for _, c in before):
            conv, c = fed[-1]
            where = "after the convolution" if order_known else \
                "in a checkpoint sorted by name, with the convolution" if file_order else \
                "of a model whose layer order is unknown (like=, the checkpoint it came from, tells), with the conv"
            raise ValueError(
                f"Checkpoint entry {n!r} {shape} is a dense layer {where} {conv!r} ({c} channels): its {shape[1]} "
                f"inputs can be a flattened feature map ({c} x {shape[1] // c} positions). MindSpore flattens NCHW "
                f"(channel-major); a {preset.name} model that flattens its NHWC map feeds the same inputs in another "
                f"order, and a plain transpose has the right shape but the wrong rows. Pass "
                f"flatten={{{_layer(n)!r}: ({c}, H, W)}} (the map the model flattens) to permute the kernel's rows, "
                f"or flatten={{{_layer(n)!r}: None}} if its inputs are no NHWC flatten (a pooled vector, or a model "
                f"that transposes to NCHW before the reshape).")
    unknown = sorted(set(flatten) - used)
    if unknown:
        raise ValueError(f"flatten names {unknown}, which are no dense layer of the checkpoint.")
    return out


def _plan(ckpt_shapes: Mapping[str, tuple], network: list[str], targets: Mapping[str, tuple[tuple, str]],
          preset: Preset, rename: Callable[[str], str], module_kinds: Mapping[str, str],
          kinds: Mapping[str, str], flatten: Mapping[str, Any], strict_targets: bool) -> list[_Leaf]:
    """Pairs every MindSpore network entry with a target leaf and the operations between their layouts."""
    for layer, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"kinds[{layer!r}] must be one of {KINDS}, but got {kind!r}.")
    missing_target: list[str] = []
    seen_targets: dict[str, str] = {}
    paired: list[tuple[str, str, str, tuple]] = []
    for n in network:
        ms_shape = tuple(ckpt_shapes[n])
        renamed_layer = _layer(rename(n))
        kind = kinds.get(n)
        if kind is None and _last(n) == "weight":  # a layer's kind is its weight's layout
            kind = kinds.get(_layer(n)) or kinds.get(renamed_layer)
        kind = kind or _default_kind(preset, n, ms_shape, module_kinds.get(renamed_layer))
        t = _target_name(preset, n, kind, rename)
        if t in seen_targets:
            raise ValueError(f"Checkpoint entries {seen_targets[t]!r} and {n!r} both map to {t!r}; pass "
                             "rename={...}.")
        seen_targets[t] = n
        if t not in targets:
            missing_target.append(f"{n} -> {t}")
            continue
        paired.append((n, t, kind, ms_shape))
    extra = [t for t in targets if t not in seen_targets] if strict_targets else []
    if missing_target or extra:
        lines = []
        if missing_target:
            lines.append(f"checkpoint entries with no target leaf: {', '.join(missing_target)}")
        if extra:
            lines.append(f"target leaves with no checkpoint entry: {', '.join(extra)}")
        raise ValueError("The checkpoint and the target model do not match (" + "; ".join(lines) + "); pass "
                         "rename={mindspore prefix: target prefix} or kinds=, or check the preset "
                         f"({preset.name!r}).")
    # a linen variables dict keeps the order modules were created in; nnx states and eval_shape results are sorted
    target_layers = list(dict.fromkeys(_layer(t) for t, (_, c) in targets.items() if c == "params")) \
        if preset.name == "flax_linen" else []
    specs = _flatten_specs([(n, kind, shape) for n, _, kind, shape in paired if _last(n) == "weight"], preset,
                           flatten, rename, target_layers, list(ckpt_shapes))
    leaves: list[_Leaf] = []
    for n, t, kind, ms_shape in paired:
        collection = "batch_stats" if _last(n) in _STATS else "params"
        target_shape, target_collection = targets[t]
        if target_collection != collection:
            raise ValueError(f"Checkpoint entry {n!r} is a {collection} entry, but the target's {t!r} is in "
                             f"{target_collection}.")
        ops = _ops(kind, preset, ms_shape, target_shape, specs.get(n), _layer(n))
        got = _shape_after(ops, ms_shape)
        if tuple(got) != tuple(target_shape):
            hint = ""
            if kind == "conv" and preset.channels_last:
                hint = (f" If {_layer(n)!r} is a transposed convolution, pass kinds={{{_layer(n)!r}: "
                        "'conv_transpose'}} (or 'conv_transpose_kernel' for transpose_kernel=True).")
            raise ValueError(f"Checkpoint entry {n!r} {ms_shape} converts ({kind}, {preset.name}) to shape "
                             f"{tuple(got)}, but the target's {t!r} has shape {tuple(target_shape)}.{hint}")
        leaves.append(_Leaf(n, t, collection, ms_shape, tuple(target_shape), kind, ops))
    return leaves


def _convert_state(entry: str, prefix: str, leaf: _Leaf, value: np.ndarray, forward: bool) -> np.ndarray:
    shape = leaf.ms_shape if forward else leaf.target_shape
    if tuple(value.shape) == shape:
        return _apply(leaf.ops, value) if forward else _apply_inverse(leaf.ops, value)
    if value.size <= 1 or not leaf.ops:
        return value  # one value per parameter, a placeholder, or a layout that does not change
    raise ValueError(
        f"The optimizer state entry {entry!r} (shape {tuple(value.shape)}) cannot follow its parameter "
        f"{leaf.ms!r} from MindSpore's layout {leaf.ms_shape} to {leaf.target_shape} ({leaf.kind}): a factored "
        f"state (AdaFactor's row/column second moment) factors over the last two axes, which the conversion moves. "
        f"Keep MindSpore's layout for this leaf (kinds={{{_layer(leaf.ms)!r}: 'same'}} with a model that uses it, or "
        "preset='plain'), or port this optimizer's state without it (a fresh AdaFactor state).")


def _forward(ckpt: Mapping[str, np.ndarray], leaves: list[_Leaf], state: Mapping[str, tuple[str, str]]
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The checkpoint in the target's names and layouts: ``(parameters and optimizer state, batch statistics)``."""
    by_ms = {leaf.ms: leaf for leaf in leaves}
    out: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    for name, value in ckpt.items():
        value = np.asarray(value)
        if name in by_ms:
            leaf = by_ms[name]
            (stats if leaf.collection == "batch_stats" else out)[leaf.target] = _apply(leaf.ops, value)
        elif name in state and state[name][1] in by_ms:
            prefix, param = state[name]
            leaf = by_ms[param]
            out[prefix + leaf.target] = _convert_state(name, prefix, leaf, value, True)
        else:
            out[name] = value
    return out, stats


def _inverse_name(preset: Preset, target_name: str, kind: str, collection: str, back: Callable[[str], str]) -> str:
    layer, last = _layer(target_name), _last(target_name)
    if collection == "batch_stats":
        inv = {v: k for k, v in preset.stats.items()}
        last = inv.get(last, last)
    elif kind == "norm":
        last = {"scale": "gamma", "bias": "beta", "weight": "gamma"}.get(last, last)
    elif kind == "embedding":
        last = {"embedding": "embedding_table", "weight": "embedding_table"}.get(last, last)
    elif last == "kernel":
        last = "weight"
    name = f"{layer}.{last}" if layer else last
    return back(name)


def _ms_shape(kind: str, preset: Preset, shape: tuple, spec: Any, one_d_unit: bool, groups: int = 1) -> tuple:
    """MindSpore's shape of a leaf from the target's (the way back without a reference checkpoint)."""
    shape = tuple(shape)
    nd = len(shape)
    if preset.channels_last:
        if kind == "dense":
            shape = (shape[1], shape[0])
        elif kind == "conv":
            shape = (shape[-1], shape[-2], *shape[:-2])
        elif kind in ("conv_transpose",):
            shape = (shape[-2], shape[-1], *shape[:-2])
        elif kind == "conv_transpose_kernel":
            shape = (shape[-1], shape[-2], *shape[:-2])
    elif kind == "conv_transpose" and preset.name == "equinox":
        shape = (shape[1] * groups, shape[0] // groups, *shape[2:])  # (O, I/g, *k) -> (I, O/g, *k)
    elif preset.bias_broadcast and kind == "same" and nd > 1 and all(d == 1 for d in shape[1:]):
        shape = (shape[0],)
    if kind in ("conv", "conv_transpose", "conv_transpose_kernel") and len(shape) == 3 and one_d_unit:
        shape = (shape[0], shape[1], 1, shape[2])  # MindSpore's Conv1d keeps a unit height
    return shape


def _inverse_leaves(p: Preset, by_target: Mapping[str, tuple[str, Any]], module_kinds: Mapping[str, str],
                    kinds: Mapping[str, str], flatten: Mapping[str, Any], back: Callable[[str], str],
                    groups: Mapping[str, int] | None = None) -> list[_Leaf]:
    """MindSpore's name, shape and layout operations of each target leaf, by the preset's rules (no reference)."""
    leaves = []
    for t, (collection, value) in by_target.items():
        layer, last = _layer(t), _last(t)
        module = module_kinds.get(layer)
        kind = kinds.get(t) or kinds.get(back(t))
        if kind is None and last in ("kernel", "weight"):
            kind = kinds.get(back(layer)) or kinds.get(layer)
        if kind is None:
            if collection == "batch_stats" or module == "norm" or last == "scale" or \
                    (last == "bias" and f"{layer}.scale" in by_target):
                kind = "norm"
            elif module == "embedding" or last == "embedding":
                kind = "embedding"
            elif last in ("kernel", "weight") and p.channels_last:
                kind = module or ("dense" if np.ndim(value) == 2 else "conv" if np.ndim(value) >= 3 else "same")
            elif last == "weight" and module in ("conv", "conv_transpose"):
                kind = module
            else:
                kind = "same"
        ms = _inverse_name(p, t, kind, collection, back)
        spec = flatten.get(back(layer), flatten.get(layer)) if kind == "dense" else None
        ms_shape = _ms_shape(kind, p, np.shape(value), spec, True, (groups or {}).get(layer, 1))
        ops = _ops(kind, p, ms_shape, np.shape(value), spec, layer)
        if tuple(_shape_after(ops, ms_shape)) != tuple(np.shape(value)):
            raise ValueError(f"port_to_mindspore: cannot lay out {t!r} {tuple(np.shape(value))} as a MindSpore "
                             f"{kind} weight; pass like= (the checkpoint the port came from).")
        leaves.append(_Leaf(ms, t, collection, ms_shape, tuple(np.shape(value)), kind, ops))
    return leaves
