"""Port a MindSpore network's whole training state into Flax (nnx, linen), Equinox or a plain pytree, and back.

A MindSpore checkpoint of a training cell holds the network's parameters, its BatchNorm moving statistics and
the optimizer's state, all under MindSpore's names (``conv1.weight``, ``bn1.gamma``, ``moment1.fc1.weight``) and
in MindSpore's layouts (conv ``(out, in, kh, kw)``, dense ``(out, in)``, a flatten in NCHW order). One call moves
all of it into the target model's names and layouts and continues the run with a jaxopt_ms optimizer::

    ported = port_from_mindspore('lenet-3_1875.ckpt', model, optimizer, flatten={'fc1': (16, 5, 5)})
    ...                                                                  # the next update is MindSpore's next step
    ckpt = port_to_mindspore(model, optimizer, flatten={'fc1': (16, 5, 5)}, like='lenet-3_1875.ckpt')  # and back
    jaxopt_ms.mindspore_checkpoint.save('resumed.ckpt', ckpt)

The design: the checkpoint dict is rewritten entry by entry into the target's naming and layouts (every
optimizer-state entry ``<prefix><name>`` follows its parameter ``<name>``), then handed to
:func:`jaxopt_ms.mindspore_checkpoint.from_mindspore`; the way back is :func:`~jaxopt_ms.mindspore_checkpoint.
to_mindspore` followed by the inverse rewrite (``like=``, the original checkpoint, gives MindSpore's names, shapes
and layer order back and checks them). Each layout change is a short list of invertible array operations
(squeeze, transpose, flip, reshape), so the way back is the exact inverse of the way in, and every converted leaf
is checked against the target model's own leaf shape (the idea of Hugging Face transformers'
``rename_key_and_reshape_tensor``, made strict: a shape that only fits after a guess is refused).

Presets (``preset=``): ``'flax_nnx'``, ``'flax_linen'``, ``'equinox'``, ``'plain'`` (MindSpore's names and
layouts). The name rules and layout conversions are tabulated in ``docs/checkpoints.md`` ("Porting a model").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms._compat import nnx_pure
from jaxopt_ms.mindspore_checkpoint.formats import load
from jaxopt_ms.mindspore_checkpoint.layouts import (
    _STATS,
    KINDS,
    PRESETS,
    STATE_PREFIXES,
    Preset,
    _apply_inverse,
    _convert_state,
    _flatten_specs,
    _forward,
    _inverse_leaves,
    _last,
    _Leaf,
    _leaves,
    _plan,
    _renamer,
    _split,
)
from jaxopt_ms.mindspore_checkpoint.optimizer_state import from_mindspore, to_mindspore
from jaxopt_ms.names import param_names, path_name

__all__ = ["KINDS", "PRESETS", "Ported", "Preset", "mindspore_filter", "mindspore_names", "port_from_mindspore",
           "port_to_mindspore"]


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
    return [(path_name(p), m) for p, m in found if isinstance(m, types)]


def _groups(p: Preset, model: Any) -> dict[str, int]:
    """``{layer: groups}`` of an Equinox model's transposed convolutions (their weight is ``(out, in/groups, *k)``,
    MindSpore's ``(in, out/groups, *k)``: the way back needs the count)."""
    if p.name != "equinox":
        return {}
    import equinox as eqx

    return {name: m.groups for name, m in _equinox_modules(model) if isinstance(m, eqx.nn.ConvTranspose)}


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
        return load(checkpoint)
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

        params_like = nnx_pure(nnx.state(target, nnx.Param))
        stats_like = nnx_pure(nnx.state(target, nnx.BatchStat))
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
        params, opt_state = from_mindspore(tx, converted, params_like)
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


def _target_leaves(p: Preset, target: Any, batch_stats: Any = None) -> tuple[Any, dict, dict]:
    """``(params pytree, {name: (collection, array)}, module kinds)`` of a target model."""
    module_kinds: dict[str, str] = {}
    stats_flat: dict[str, Any] = {}
    if p.name == "flax_nnx":
        from flax import nnx

        params = nnx_pure(nnx.state(target, nnx.Param))
        stats_flat = _leaves(nnx_pure(nnx.state(target, nnx.BatchStat)))
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
    leaves = _inverse_leaves(p, by_target, module_kinds, dict(kinds or {}), {}, back, _groups(p, target))
    return {leaf.target: leaf.ms for leaf in leaves}


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

        opt_state = nnx_pure(nnx_optimizer.opt_state)
    if tx is not None:
        if opt_state is None:
            raise ValueError("port_to_mindspore: an optimizer without its opt_state; pass opt_state=.")
        flat = to_mindspore(tx, params, opt_state)
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
        leaves = _inverse_leaves(p, by_target, module_kinds, kinds, flatten, back, _groups(p, target))
        # which dense layer a flatten feeds cannot be read from a model: every conv counts (like= knows better)
        _flatten_specs([(leaf.ms, leaf.kind, leaf.ms_shape) for leaf in leaves if _last(leaf.ms) == "weight"], p,
                       flatten, fwd, [], [])
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
