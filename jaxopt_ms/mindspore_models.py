"""Port a MindSpore network's whole training state into Flax (nnx, linen), Equinox or a plain pytree, and back.

A MindSpore checkpoint of a training cell holds the network's parameters, its BatchNorm moving statistics and
the optimizer's state, all under MindSpore's names (``conv1.weight``, ``bn1.gamma``, ``moment1.fc1.weight``) and
in MindSpore's layouts (conv ``(out, in, kh, kw)``, dense ``(out, in)``, a flatten in NCHW order). One call moves
all of it into the target model's names and layouts and continues the run with a jaxopt_ms optimizer::

    ported = port_from_mindspore('lenet-3_1875.ckpt', model, optimizer, flatten={'fc1': (16, 5, 5)})
    ...                                                                  # the next update is MindSpore's next step
    ckpt = port_to_mindspore(model, optimizer)                           # MindSpore's names and layouts again
    jaxopt_ms.mindspore_checkpoint.save('resumed.ckpt', ckpt)

The design: the checkpoint dict is rewritten entry by entry into the target's naming and layouts (every
optimizer-state entry ``<prefix><name>`` follows its parameter ``<name>``), then handed to
:func:`jaxopt_ms.mindspore_checkpoint.from_mindspore`; the way back is :func:`~jaxopt_ms.mindspore_checkpoint.
to_mindspore` followed by the inverse rewrite. Each layout change is a short list of invertible array operations
(squeeze, transpose, flip, reshape), so the way back is the exact inverse of the way in, and every converted leaf
is checked against the target model's own leaf shape (the idea of Hugging Face transformers'
``rename_key_and_reshape_tensor``, made strict: a shape that only fits after a guess is refused).

Presets (``preset=``): ``'flax_nnx'``, ``'flax_linen'``, ``'equinox'``, ``'plain'`` (MindSpore's names and
layouts). The name rules and layout conversions are tabulated in ``docs/checkpoints.md`` ("Porting a model").
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms import mindspore_checkpoint as _msc
from jaxopt_ms.names import param_names

__all__ = ["PRESETS", "Ported", "mindspore_filter", "mindspore_names", "port_from_mindspore", "port_to_mindspore"]


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


class Ported(NamedTuple):
    """What a port gives: the target's parameters, its batch statistics and the optimizer state.

    ``params``: nnx: the model's ``nnx.Param`` state (the model is updated in place); linen: the ``'params'``
    collection; Equinox: the model with its arrays replaced; plain: ``{name: array}`` nested by the dots of
    MindSpore's names. ``batch_stats``: nnx: the ``nnx.BatchStat`` state; linen: the ``'batch_stats'`` collection;
    Equinox: the ``eqx.nn.State`` given with ``state=`` (updated) or ``None``; plain: the moving statistics, nested
    like ``params``. ``opt_state``: the jaxopt_ms optimizer's state (``None`` without an optimizer).
    """

    params: Any
    batch_stats: Any
    opt_state: Any


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


# ---------------------------------------------------------------------------------------------- module kinds
def _nnx_kinds(model: Any) -> dict[str, str]:
    from flax import nnx

    out = {}
    for path, module in nnx.iter_modules(model) if hasattr(nnx, "iter_modules") else model.iter_modules():
        name = ".".join(str(p) for p in path)
        if isinstance(module, nnx.ConvTranspose):
            out[name] = "conv_transpose_kernel" if module.transpose_kernel else "conv_transpose"
        elif isinstance(module, nnx.Conv):
            out[name] = "conv"
        elif isinstance(module, nnx.Linear):
            out[name] = "dense"
        elif isinstance(module, nnx.Embed):
            out[name] = "embedding"
        elif isinstance(module, (nnx.BatchNorm, nnx.LayerNorm, nnx.GroupNorm, nnx.RMSNorm)):
            out[name] = "norm"
    return out


def _equinox_modules(model: Any) -> list[tuple[str, Any]]:
    import equinox as eqx

    types = (eqx.nn.Conv, eqx.nn.ConvTranspose, eqx.nn.Linear, eqx.nn.Embedding, eqx.nn.LayerNorm,
             eqx.nn.GroupNorm, eqx.nn.BatchNorm) + ((eqx.nn.RMSNorm,) if hasattr(eqx.nn, "RMSNorm") else ())
    found = jax.tree_util.tree_flatten_with_path(model, is_leaf=lambda x: isinstance(x, types))[0]
    from jaxopt_ms.names import path_name

    return [(path_name(p), m) for p, m in found if isinstance(m, types)]


def _equinox_kinds(model: Any) -> dict[str, str]:
    import equinox as eqx

    out = {}
    for name, m in _equinox_modules(model):
        if isinstance(m, eqx.nn.ConvTranspose):
            out[name] = "conv_transpose"
        elif isinstance(m, eqx.nn.Conv):
            out[name] = "conv"
        elif isinstance(m, eqx.nn.Linear):
            out[name] = "dense"
        elif isinstance(m, eqx.nn.Embedding):
            out[name] = "embedding"
        else:
            out[name] = "norm"
    return out


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
            where = "after the convolution" if order_known else "in a checkpoint sorted by name, with the convolution"
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


# ---------------------------------------------------------------------------------------------------- frameworks
def _detect(target: Any) -> str:
    try:
        from flax import nnx

        if isinstance(target, nnx.Module):
            return "flax_nnx"
    except ImportError:
        pass
    try:
        import equinox as eqx

        if isinstance(target, eqx.Module):
            return "equinox"
    except ImportError:
        pass
    if isinstance(target, Mapping) and "params" in target:
        return "flax_linen"
    return "plain"


def _nest(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for name, value in flat.items():
        node = out
        *parents, last = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _optax_of(optimizer: Any) -> tuple[Any, Any]:
    """``(optax transformation, nnx.Optimizer or None)``."""
    if optimizer is None:
        return None, None
    try:
        from flax import nnx

        if isinstance(optimizer, nnx.Optimizer):
            return optimizer.tx, optimizer
    except ImportError:
        pass
    return optimizer, None


def _shapes(tree: Any, collection: str) -> dict[str, tuple[tuple, str]]:
    return {n: (tuple(np.shape(v)), collection) for n, v in _leaves(tree).items() if v is not None}


def _load(checkpoint: Any) -> dict[str, np.ndarray]:
    if isinstance(checkpoint, (str, os.PathLike)):
        return _msc.load(checkpoint)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"'checkpoint' must be a path or a {{name: array}} mapping, but got type "
                        f"'{type(checkpoint).__name__}'.")
    return {k: np.asarray(v) for k, v in checkpoint.items()}


def _check_preset(preset: str | None, target: Any) -> Preset:
    name = preset or _detect(target)
    if name not in PRESETS:
        raise ValueError(f"'preset' must be one of {sorted(PRESETS)}, but got {name!r}.")
    return PRESETS[name]


def _equinox_bn_states(model: Any) -> dict[str, Any]:
    import equinox as eqx

    return {name: m for name, m in _equinox_modules(model) if isinstance(m, eqx.nn.BatchNorm)}


# An Equinox BatchNorm(mode='batch') debiases its running averages by 1 - momentum**count; a count this large makes
# that 1, so the averages are MindSpore's moving statistics as they are.
_EQX_COUNT = 2 ** 30


def _eqx_get_stats(bn: Any, state: Any) -> tuple[Any, Any]:
    """MindSpore's (moving_mean, moving_variance) of an Equinox BatchNorm's state."""
    if getattr(bn, "ema_state_index", None) is not None:
        return state.get(bn.ema_state_index)
    count = np.asarray(state.get(bn.batch_counter))
    scale = 1.0 if count == 0 else 1.0 - bn.momentum ** float(count)
    return tuple(np.asarray(v) / np.asarray(scale, np.asarray(v).dtype) for v in state.get(bn.batch_state_index))


def _eqx_set_stats(bn: Any, state: Any, mean: Any, var: Any) -> Any:
    if getattr(bn, "ema_state_index", None) is not None:  # mode='ema'
        state = state.set(bn.ema_state_index, (mean, var))
        return state.set(bn.ema_first_time_index, jnp.array(False))
    count = state.get(bn.batch_counter)
    state = state.set(bn.batch_counter, jax.lax.full_like(count, _EQX_COUNT))  # (keeps a weak type)
    return state.set(bn.batch_state_index, (mean, var))


def port_from_mindspore(checkpoint: Mapping[str, Any] | str | os.PathLike, target: Any = None, optimizer: Any = None,
                        *, preset: str | None = None, rename: Mapping[str, str] | None = None,
                        kinds: Mapping[str, str] | None = None, flatten: Mapping[str, Any] | None = None,
                        state: Any = None, ignore: Iterable[str] | Callable[[str], bool] = ()) -> Ported:
    """A MindSpore checkpoint as the target framework's parameters, batch statistics and optimizer state.

    Args:
        checkpoint: a ``.ckpt`` / ``.safetensors`` path or ``{name: array}`` (from
            :func:`jaxopt_ms.mindspore_checkpoint.load`).
        target: ``flax_nnx``: an ``nnx.Module`` (its ``Param`` and ``BatchStat`` variables are replaced in place);
            ``flax_linen``: the variables ``{'params': ..., 'batch_stats': ...}`` of ``model.init`` (arrays or
            ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``); ``equinox``: the ``eqx.Module``; ``plain``:
            a pytree whose leaf names are MindSpore's, or ``None`` (the shapes come from the checkpoint).
        optimizer: the jaxopt_ms optimizer built with MindSpore's hyperparameters, over the target's parameter
            names (an ``nnx.Optimizer`` wrapping one is updated in place); ``None`` ports the model only.
        preset: ``'flax_nnx'``, ``'flax_linen'``, ``'equinox'`` or ``'plain'``; by default from ``target``.
        rename: ``{mindspore name or prefix: target name or prefix}``, applied before the preset's rules (e.g.
            ``{'layer1.0': 'blocks.0'}``).
        kinds: ``{layer: kind}`` to override a layer's layout (``'dense'``, ``'conv'``, ``'conv_transpose'``,
            ``'conv_transpose_kernel'``, ``'embedding'``, ``'norm'``, ``'same'``). nnx and Equinox models give the
            kinds themselves; linen needs ``'conv_transpose'`` named here.
        flatten: ``{dense layer: (C, H, W)}`` for a Flax dense layer fed by the flatten of an NHWC feature map
            (``(C, L)`` / ``(C, D, H, W)`` in 1-D / 3-D): its kernel's input rows are permuted from MindSpore's NCHW
            order; ``{dense layer: None}`` when the model flattens channel-first. Required (``ValueError``
            otherwise) for a dense layer after a conv whose inputs are more than the conv's channels.
        state: Equinox: the ``eqx.nn.State`` holding the model's ``BatchNorm`` statistics. ``mode='batch'``
            normalises training batches with their own statistics, as MindSpore (its running averages get
            MindSpore's moving statistics with a debiasing count that makes them exact); ``mode='ema'`` normalises
            with the running averages, which MindSpore never does in training.
        ignore: checkpoint entries to leave unread (as in ``from_mindspore``).
    Returns:
        :class:`Ported` ``(params, batch_stats, opt_state)``; with an ``nnx.Optimizer`` its ``opt_state`` and
        ``step`` (= MindSpore's ``global_step``) are set too.
    Raises:
        ValueError: entries and target leaves that do not pair up (all listed), a converted shape that is not the
            target leaf's, a dense layer after a conv stack without ``flatten``, an optimizer state that cannot
            follow its parameter's layout (AdaFactor's factored moments through a transpose), and everything
            :func:`jaxopt_ms.mindspore_checkpoint.from_mindspore` checks.

    Example:
        >>> model = LeNet5(rngs=nnx.Rngs(0))                          # Flax nnx, NHWC
        >>> optimizer = nnx.Optimizer(model, jaxopt_ms.momentum(0.01, 0.9), wrt=nnx.Param)
        >>> port_from_mindspore('lenet.ckpt', model, optimizer, flatten={'fc1': (16, 5, 5)})
    """
    p = _check_preset(preset, target)
    ckpt = _load(checkpoint)
    is_ignored = ignore if callable(ignore) else set(ignore).__contains__
    ckpt = {k: v for k, v in ckpt.items() if not is_ignored(k)}
    tx, nnx_optimizer = _optax_of(optimizer)
    fwd, back = _renamer(rename)
    network, state_entries = _split(ckpt)
    module_kinds: dict[str, str] = {}
    if p.name == "flax_nnx":
        from flax import nnx

        params_like = nnx.as_pure(nnx.state(target, nnx.Param))
        stats_like = nnx.as_pure(nnx.state(target, nnx.BatchStat))
        module_kinds = _nnx_kinds(target)
    elif p.name == "flax_linen":
        if not isinstance(target, Mapping):
            raise TypeError(f"A flax_linen target is the variables dict of model.init ({{'params': ..., "
                            f"'batch_stats': ...}}), but got type '{type(target).__name__}'.")
        params_like, stats_like = (target["params"], target.get("batch_stats", {})) if "params" in target \
            else (target, {})
    elif p.name == "equinox":
        import equinox as eqx

        params_like, stats_like = eqx.filter(target, eqx.is_inexact_array), None
        module_kinds = _equinox_kinds(target)
        if state is None and _equinox_bn_states(target):
            raise ValueError("The Equinox model has BatchNorm layers: pass state= (its eqx.nn.State, from "
                             "eqx.nn.make_with_state) to receive MindSpore's moving statistics.")
    else:
        params_like, stats_like = target, None
    targets = _shapes(params_like, "params") if params_like is not None else None
    if p.name == "equinox":
        for name, bn in _equinox_bn_states(target).items():
            if state is not None:
                for stat, arr in zip(_STATS, _eqx_get_stats(bn, state)):
                    targets[f"{name}.{stat}"] = (tuple(arr.shape), "batch_stats")
    elif stats_like is not None and p.name != "plain":
        targets.update(_shapes(stats_like, "batch_stats"))
    if targets is None:  # plain, template-free: MindSpore's own names and shapes
        targets = {n: (tuple(np.shape(ckpt[n])), "batch_stats" if _last(n) in _STATS else "params")
                   for n in network}
    elif p.name == "plain":
        for n in network:
            if _last(n) in _STATS and n not in targets:
                targets[n] = (tuple(np.shape(ckpt[n])), "batch_stats")
    leaves = _plan({n: np.shape(v) for n, v in ckpt.items()}, network, targets, p, fwd, module_kinds,
                   dict(kinds or {}), dict(flatten or {}), strict_targets=True)
    converted, stats = _forward(ckpt, leaves, state_entries)
    params_dtypes = {leaf.target: np.asarray(converted[leaf.target]).dtype for leaf in leaves
                     if leaf.collection == "params"}
    if params_like is None:
        params_like = _nest({t: jax.ShapeDtypeStruct(np.shape(converted[t]), d) for t, d in params_dtypes.items()})
    if tx is not None:
        params, opt_state = _msc.from_mindspore(tx, converted, params_like)
    else:
        values = _leaves(params_like)
        names, treedef = jax.tree.flatten(param_names(params_like))
        for n in names:
            want = values[n]
            if np.dtype(converted[n].dtype) != np.dtype(want.dtype):
                raise ValueError(f"Checkpoint entry for {n!r} has dtype {converted[n].dtype}, but the target's "
                                 f"leaf has {np.dtype(want.dtype)}.")
        params = treedef.unflatten([jnp.asarray(converted[n]) for n in names])
        opt_state = None
    if p.name == "flax_nnx":
        from flax import nnx

        stat_values = _leaves(stats_like)
        names, treedef = jax.tree.flatten(param_names(stats_like))
        batch_stats = treedef.unflatten([jnp.asarray(stats[n]).astype(stat_values[n].dtype) for n in names])
        nnx.update(target, params)
        if names:
            nnx.update(target, batch_stats)
        if nnx_optimizer is not None:
            nnx.update(nnx_optimizer.opt_state, nnx.state(opt_state))
            step = int(np.asarray(ckpt.get("global_step", 0)).reshape(-1)[0]) if "global_step" in ckpt else 0
            nnx_optimizer.step[...] = jnp.asarray(step, nnx_optimizer.step[...].dtype)
        return Ported(params, batch_stats, opt_state)
    if p.name == "flax_linen":
        stat_values = _leaves(stats_like)
        names, treedef = jax.tree.flatten(param_names(stats_like))
        batch_stats = treedef.unflatten([jnp.asarray(stats[n]).astype(stat_values[n].dtype) for n in names])
        return Ported(params, batch_stats, opt_state)
    if p.name == "equinox":
        import equinox as eqx

        model = eqx.combine(params, eqx.filter(target, eqx.is_inexact_array, inverse=True))
        if state is not None:
            for name, bn in _equinox_bn_states(target).items():
                state = _eqx_set_stats(bn, state, *(jnp.asarray(stats[f"{name}.{s}"]) for s in _STATS))
        elif _equinox_bn_states(target):
            raise ValueError("The Equinox model has BatchNorm layers: pass state= (its eqx.nn.State) to receive "
                             "MindSpore's moving statistics.")
        return Ported(model, state, opt_state)
    return Ported(params, _nest({t: jnp.asarray(v) for t, v in stats.items()}), opt_state)


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


def _ms_shape(kind: str, preset: Preset, shape: tuple, spec: Any, one_d_unit: bool) -> tuple:
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
        shape = (shape[1], shape[0], *shape[2:])
    elif preset.bias_broadcast and kind == "same" and nd > 1 and all(d == 1 for d in shape[1:]):
        shape = (shape[0],)
    if kind in ("conv", "conv_transpose", "conv_transpose_kernel") and len(shape) == 3 and one_d_unit:
        shape = (shape[0], shape[1], 1, shape[2])  # MindSpore's Conv1d keeps a unit height
    return shape


def _inverse_leaves(p: Preset, by_target: Mapping[str, tuple[str, Any]], module_kinds: Mapping[str, str],
                    kinds: Mapping[str, str], flatten: Mapping[str, Any], back: Callable[[str], str]) -> list[_Leaf]:
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
        ms_shape = _ms_shape(kind, p, np.shape(value), spec, True)
        ops = _ops(kind, p, ms_shape, np.shape(value), spec, layer)
        if tuple(_shape_after(ops, ms_shape)) != tuple(np.shape(value)):
            raise ValueError(f"port_to_mindspore: cannot lay out {t!r} {tuple(np.shape(value))} as a MindSpore "
                             f"{kind} weight; pass like= (the checkpoint the port came from).")
        leaves.append(_Leaf(ms, t, collection, ms_shape, tuple(np.shape(value)), kind, ops))
    return leaves


def _target_leaves(p: Preset, target: Any, batch_stats: Any = None) -> tuple[Any, dict, dict]:
    """``(params pytree, {name: (collection, array)}, module kinds)`` of a target model."""
    module_kinds: dict[str, str] = {}
    stats_flat: dict[str, Any] = {}
    if p.name == "flax_nnx":
        from flax import nnx

        params = nnx.as_pure(nnx.state(target, nnx.Param))
        stats_flat = _leaves(nnx.as_pure(nnx.state(target, nnx.BatchStat)))
        module_kinds = _nnx_kinds(target)
    elif p.name == "flax_linen":
        params = target["params"] if isinstance(target, Mapping) and "params" in target else target
        if batch_stats is None and isinstance(target, Mapping):
            batch_stats = target.get("batch_stats")
        stats_flat = _leaves(batch_stats or {})
    elif p.name == "equinox":
        import equinox as eqx

        params = eqx.filter(target, eqx.is_inexact_array)
        module_kinds = _equinox_kinds(target)
        for name, bn in _equinox_bn_states(target).items():
            if batch_stats is None:
                continue
            for s, arr in zip(_STATS, _eqx_get_stats(bn, batch_stats)):
                stats_flat[f"{name}.{s}"] = arr
    else:
        params = target
        stats_flat = _leaves(batch_stats or {})
    by_target = {**{n: ("params", v) for n, v in _leaves(params).items()},
                 **{n: ("batch_stats", v) for n, v in stats_flat.items()}}
    return params, by_target, module_kinds


def mindspore_names(target: Any, *, preset: str | None = None, rename: Mapping[str, str] | None = None,
                    kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{target leaf name: MindSpore name}`` by the preset's rules (the names :func:`port_to_mindspore` writes).

    Example:
        >>> mindspore_names(model)['bn1.scale']
        'bn1.gamma'
    """
    p = _check_preset(preset, target)
    _, by_target, module_kinds = _target_leaves(p, target)
    _, back = _renamer(rename)
    return {leaf.target: leaf.ms for leaf in _inverse_leaves(p, by_target, module_kinds, dict(kinds or {}), {}, back)}


def mindspore_filter(target: Any, name_filter: Callable[[str, Any], bool] | None = None, *,
                     preset: str | None = None, rename: Mapping[str, str] | None = None,
                     kinds: Mapping[str, str] | None = None) -> Callable[[str, Any], bool]:
    """A name filter that decides by a leaf's MindSpore name: MindSpore's selections on a ported model.

    MindSpore decides weight decay by name (``mindspore_decay_filter``: names without ``beta`` and ``gamma``), and
    group selectors are written against MindSpore's names. In a Flax model ``bn1.gamma`` is ``bn1.scale`` and
    ``bn1.beta`` is ``bn1.bias`` (as is a dense layer's ``fc.bias``, which MindSpore does decay), so the rule on
    the Flax names is another rule. This filter maps each name back (nnx's trailing ``.value`` ignored) and applies
    ``name_filter`` (default :func:`jaxopt_ms.mindspore_decay_filter`) to MindSpore's name.

    Example:
        >>> opt = jaxopt_ms.momentum(0.1, 0.9, weight_decay=1e-4, decay_filter=mindspore_filter(model))
    """
    from jaxopt_ms.names import mindspore_decay_filter

    name_filter = name_filter or mindspore_decay_filter
    table = mindspore_names(target, preset=preset, rename=rename, kinds=kinds)

    def select(name: str, leaf: Any = None) -> bool:
        key = name[:-len(".value")] if name not in table and name.endswith(".value") else name
        if key not in table:
            raise ValueError(f"mindspore_filter: {name!r} is no leaf of the model it was built from; known: "
                             f"{sorted(table)[:8]} ...")
        return bool(name_filter(table[key], leaf))

    select.__qualname__ = select.__name__ = "mindspore_filter(model)"
    return select


def port_to_mindspore(target: Any, optimizer: Any = None, opt_state: Any = None, *, batch_stats: Any = None,
                      preset: str | None = None, rename: Mapping[str, str] | None = None,
                      kinds: Mapping[str, str] | None = None, flatten: Mapping[str, Any] | None = None,
                      like: Mapping[str, Any] | str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The way back of :func:`port_from_mindspore`: MindSpore's checkpoint entries, names and layouts.

    Args:
        target: ``flax_nnx``: the ``nnx.Module``; ``flax_linen``: the ``'params'`` collection (or the whole
            variables dict); ``equinox``: the model; ``plain``: the parameter pytree.
        optimizer: the jaxopt_ms optimizer (or the ``nnx.Optimizer``, whose state is then used); ``None``: the
            parameters and statistics only.
        opt_state: the optimizer's state (not needed with an ``nnx.Optimizer``).
        batch_stats: linen: the ``'batch_stats'`` collection (or inside the variables dict); Equinox: the
            ``eqx.nn.State``; plain: the moving statistics pytree. nnx models carry their own.
        preset, rename, kinds, flatten: as given to :func:`port_from_mindspore`.
        like: the checkpoint the port came from (a path or dict), or any with the MindSpore network's names and
            shapes: its names are used and every entry is checked against it. Without it, the names and shapes
            follow the preset's rules (a Conv1d weight gets MindSpore's unit height).
    Returns:
        ``{name: numpy array}`` for :func:`jaxopt_ms.mindspore_checkpoint.save`: the network's parameters, its
        BatchNorm moving statistics and the optimizer's state; ``mindspore.load_checkpoint`` +
        ``load_param_into_net(train_cell, ..., strict_load=True)`` load it.
    """
    p = _check_preset(preset, target)
    tx, nnx_optimizer = _optax_of(optimizer)
    fwd, back = _renamer(rename)
    if p.name == "equinox" and batch_stats is None and _equinox_bn_states(target):
        raise ValueError("The Equinox model has BatchNorm layers: pass batch_stats= (its eqx.nn.State) to write "
                         "MindSpore's moving statistics.")
    params, by_target, module_kinds = _target_leaves(p, target, batch_stats)
    by_target = {n: (c, np.asarray(v)) for n, (c, v) in by_target.items()}
    stats_flat = {n: v for n, (c, v) in by_target.items() if c == "batch_stats"}
    if p.name == "flax_nnx" and nnx_optimizer is not None and opt_state is None:
        from flax import nnx

        opt_state = nnx.as_pure(nnx_optimizer.opt_state)
    if tx is not None:
        if opt_state is None:
            raise ValueError("port_to_mindspore: an optimizer without its opt_state; pass opt_state=.")
        flat = _msc.to_mindspore(tx, params, opt_state)
    else:
        flat = {n: np.asarray(v) for n, v in _leaves(params).items()}
    ref = _load(like) if like is not None else None
    ref_network = _split(ref)[0] if ref is not None else None
    kinds = dict(kinds or {})
    flatten = dict(flatten or {})
    # name and layout of each target leaf, in MindSpore's terms
    leaves: list[_Leaf] = []
    if ref is not None:
        targets = {n: (tuple(v.shape), c) for n, (c, v) in by_target.items()}
        leaves = _plan({n: np.shape(v) for n, v in ref.items()}, ref_network, targets, p, fwd, module_kinds, kinds,
                       flatten, strict_targets=True)
    else:
        leaves = _inverse_leaves(p, by_target, module_kinds, kinds, flatten, back)
    by_t = {leaf.target: leaf for leaf in leaves}
    out: dict[str, np.ndarray] = {}
    state_keys = {prefix + t: (prefix, t) for t in by_t for prefix in STATE_PREFIXES}
    for name, value in flat.items():
        value = np.asarray(value)
        if name in by_t:
            out[by_t[name].ms] = _apply_inverse(by_t[name].ops, value)
        elif name in state_keys:
            prefix, t = state_keys[name]
            out[prefix + by_t[t].ms] = _convert_state(name, prefix, by_t[t], value, False)
        else:
            out[name] = value
    for t, value in stats_flat.items():
        out[by_t[t].ms] = _apply_inverse(by_t[t].ops, value)
    if ref is not None:
        order = {n: i for i, n in enumerate(ref)}
        out = dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))
    return out
