"""MindSpore's optimizer-state names and their places in a jaxopt_ms optimizer's state.

MindSpore's ``save_checkpoint(train_cell)`` writes the network's parameters *and* the optimizer's state under
names such as ``moment1.conv1.weight``, ``beta1_power``, ``global_step`` or ``scale_sense``.
:func:`from_mindspore` places that state under a jaxopt_ms optimizer's state so that the next ``update`` is
MindSpore's next step; :func:`to_mindspore` is the way back. Names map through :func:`jaxopt_ms.param_names`:
MindSpore's ``conv1.weight`` is the leaf whose path name is ``conv1.weight``; the table ``_FIELDS`` says where
each state field goes (tabulated per optimizer in ``docs/checkpoints.md``).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._flat import FlatParams
from jaxopt_ms.fused import FusedOptimizer
from jaxopt_ms.loss_scale import DynamicLossScaleState, FixedLossScaleState, MasterWeightsState
from jaxopt_ms.mindspore_checkpoint.formats import load
from jaxopt_ms.mindspore_checkpoint.hyperparameters import HYPERPARAMETER, check_against_optimizer, loss_scale_error
from jaxopt_ms.names import param_names
from jaxopt_ms.transforms.adadelta import ScaleByAdadeltaState
from jaxopt_ms.transforms.adafactor import AdaFactorState, ScaleByFactoredRmsState
from jaxopt_ms.transforms.adagrad import AdagradState, ScaleByAdagradState
from jaxopt_ms.transforms.adam import ScaleByAdamState
from jaxopt_ms.transforms.adam_weight_decay import ScaleByAdamWeightDecayState
from jaxopt_ms.transforms.adamax import ScaleByAdamaxState
from jaxopt_ms.transforms.asgd import ASGDState
from jaxopt_ms.transforms.ftrl import FtrlState
from jaxopt_ms.transforms.lamb import ScaleByLambState
from jaxopt_ms.transforms.lars import LarsState
from jaxopt_ms.transforms.learning_rate import LearningRateState
from jaxopt_ms.transforms.proximal_adagrad import ProximalAdagradState
from jaxopt_ms.transforms.rprop import RpropState
from jaxopt_ms.transforms.sgd import ScaleBySgdState
from jaxopt_ms.transforms.thor import ScaleByThorState
from jaxopt_ms.transforms.weight_decay import AddDecayedWeightsState

__all__ = ["from_mindspore", "to_mindspore"]


# ------------------------------------------------------------------------------------------ the name mapping
@dataclasses.dataclass(frozen=True)
class _Field:
    """How one state field maps to MindSpore.

    ``kind``: ``'param'`` (a tree of per-parameter arrays, MindSpore's ``prefix + name``), ``'scalar'`` (one
    MindSpore entry ``ms``), ``'step'`` (``global_step``), ``'lr'`` (the next learning rate, derived from the
    step), ``'stat'`` (SGD's first-step flag, MindSpore's per-parameter ``stat.<name>``), ``'keep'`` (not saved by
    MindSpore: the flag of the last step only) or ``'scale'`` (a fixed loss scale, ``scale_sense`` if saved).
    ``sign``: MindSpore's value is ``sign *`` ours.
    """

    kind: str
    ms: str = ""
    sign: float = 1.0
    ms_shape: tuple | None = None
    leaf_scalar: bool = False
    momentum: bool = False  # a momentum buffer (MindSpore's saved `momentum` is checked against it)


def _p(prefix: str, sign: float = 1.0, leaf_scalar: bool = False, momentum: bool = False) -> _Field:
    return _Field("param", prefix, sign, leaf_scalar=leaf_scalar, momentum=momentum)


def _s(name: str, ms_shape: tuple | None = None) -> _Field:
    return _Field("scalar", name, ms_shape=ms_shape)


_STEP, _LR, _KEEP = _Field("step", "global_step"), _Field("lr"), _Field("keep")
_RECURSE = None

# Optax's RMS states hold RMSProp's moments; optax.trace is Momentum's `moments` and RMSProp's `moment` (which
# RMSProp's chain keeps after the `-lr` block, so with the opposite sign).
_FIELDS: dict[type, dict[str, _Field | None]] = {
    ScaleByAdamState: dict(beta1_power=_s("beta1_power", (1,)), beta2_power=_s("beta2_power", (1,)),
                           moment1=_p("moment1."), moment2=_p("moment2."), vhat=_p("vhat.")),
    ScaleByAdamWeightDecayState: dict(adam_m=_p("adam_m."), adam_v=_p("adam_v.")),
    ScaleByAdagradState: dict(accum=_p("accum.")),
    AdagradState: dict(accum=_p("accum."), lr=_RECURSE),
    ProximalAdagradState: dict(accum=_p("accum."), lr=_RECURSE),
    FtrlState: dict(moments=_p("moments."), linear=_p("linear."), lr=_RECURSE),
    # eta, mu: one scalar per parameter (a fused state repeats it over the leaf's elements)
    ASGDState: dict(eta=_p("eta_", leaf_scalar=True), mu=_p("mu_", leaf_scalar=True), ax=_p("ax_."), lr=_RECURSE),
    ScaleByAdamaxState: dict(beta1_power=_s("beta1_power", (1,)), moment1=_p("moment1."), moment2=_p("moment2.")),
    ScaleByAdadeltaState: dict(accum=_p("accum."), accum_update=_p("accum_update.")),
    ScaleBySgdState: dict(accum=_p("accum.", momentum=True), stat=_Field("stat", "stat.")),
    ScaleByLambState: dict(count=_STEP, lamb_m=_p("lamb_m."), lamb_v=_p("lamb_v.")),
    AdaFactorState: dict(exp_avg=_p("exp_avg."), exp_avg_sq_row=_p("exp_avg_sq_row_"),
                         exp_avg_sq_col=_p("exp_avg_sq_col_"), exp_avg_sq=_p("exp_avg_sq_"), lr=_RECURSE),
    ScaleByFactoredRmsState: dict(count=_STEP, exp_avg_sq_row=_p("exp_avg_sq_row_"),
                                  exp_avg_sq_col=_p("exp_avg_sq_col_"), exp_avg_sq=_p("exp_avg_sq_")),
    RpropState: dict(prev=_p("prev."), step_size=_p("step_size."), lr=_RECURSE),
    LearningRateState: dict(count=_STEP, learning_rate=_LR),
    LarsState: dict(count=_STEP),
    AddDecayedWeightsState: dict(count=_STEP),
    optax.ScaleByRmsState: dict(nu=_p("mean_square.")),
    optax.ScaleByRStdDevState: dict(mu=_p("mean_grad."), nu=_p("mean_square.")),
    DynamicLossScaleState: dict(loss_scale=_s("scale_sense", ()), cur_iter=_s("current_iterator_step", ()),
                                last_overflow_iter=_s("last_overflow_iterator_step", ()), overflow=_KEEP,
                                inner_state=_RECURSE),
    FixedLossScaleState: dict(loss_scale=_Field("scale", "scale_sense"), overflow=_KEEP, inner_state=_RECURSE),
}
_TRACE_MOMENTUM, _TRACE_RMSPROP = _p("moments.", momentum=True), _p("moment.", -1.0)
_UNSUPPORTED = {
    ScaleByThorState: "THOR's state (its per-layer inverse statistics) has no counterpart in MindSpore's "
                      "checkpoint layout that can be checked on CPU",
    "fused AdaFactor": "a fused AdaFactor keeps its factored second moments in a per-buffer layout; convert with "
                       "the per-leaf optimizer",
    MasterWeightsState: "master_weights keeps float32 copies MindSpore's checkpoints do not separate from the "
                        "parameters",
}
def _unread_state(ckpt: dict, state: Any, rmsprop: bool, names: set[str]) -> set[str]:
    """MindSpore state entries that cannot affect the next step, where jaxopt_ms keeps no counterpart.

    RMSProp without momentum overwrites ``moment`` every step; SGD without momentum (``momentum`` 0) never reads
    ``accum`` and ``stat``; a ``Parameter$<n>`` of size <= 1 is MindSpore's anonymous placeholder (AdaFactor's
    ``exp_avg`` when ``beta1=None``).
    """
    out = {k for k in ckpt if re.fullmatch(r"Parameter\$\d+", k) and ckpt[k].size <= 1}
    if rmsprop and not _contains(state, (optax.TraceState,)):
        out |= {f"moment.{n}" for n in names}
    momentum = ckpt.get("momentum")
    no_momentum = momentum is not None and momentum.size == 1 and float(momentum.reshape(())) == 0.0
    if no_momentum and not _contains(state, (ScaleBySgdState,)):
        out |= {f"{prefix}{n}" for n in names for prefix in ("accum.", "stat.")
                if f"accum.{n}" not in ckpt or not np.any(ckpt[f"accum.{n}"])}
    return out


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _contains(tree: Any, types: tuple) -> bool:
    found = []

    def visit(x):
        if isinstance(x, types):
            found.append(x)
        elif _is_namedtuple(x):
            for v in x:
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
    visit(tree)
    return bool(found)


def _absent(buffer: Any) -> bool:
    """A fused buffer that belongs to another parameter group (``None``, or optax's ``MaskedNode``)."""
    return buffer is None or isinstance(buffer, optax.MaskedNode)


def _walk(node: Any, fn: Callable[[_Field, Any, str], Any], where: str, rmsprop: bool) -> Any:
    """Rebuilds the state ``node``, calling ``fn(field, value, where)`` on every field the table maps."""
    if type(node) in _UNSUPPORTED:
        raise ValueError(f"mindspore_checkpoint: {type(node).__name__} is not supported: "
                         f"{_UNSUPPORTED[type(node)]}.")
    if _is_namedtuple(node):
        if isinstance(node, AdaFactorState) and isinstance(node.exp_avg_sq_row, FlatParams):
            raise ValueError(f"mindspore_checkpoint: {_UNSUPPORTED['fused AdaFactor']}.")
        table = _FIELDS.get(type(node))
        if table is None and isinstance(node, optax.TraceState):
            table = {"trace": _TRACE_RMSPROP if rmsprop else _TRACE_MOMENTUM}
        out = {}
        for name in node._fields:
            value = getattr(node, name)
            spec = table.get(name, _RECURSE) if table is not None else _RECURSE
            sub = f"{where}.{name}"
            out[name] = _walk(value, fn, sub, rmsprop) if spec is None or value is None else fn(spec, value, sub)
        return type(node)(**out)
    if isinstance(node, (list, tuple)):
        return type(node)(_walk(v, fn, f"{where}[{i}]", rmsprop) for i, v in enumerate(node))
    if isinstance(node, dict):
        return {k: _walk(v, fn, f"{where}[{k!r}]", rmsprop) for k, v in node.items()}
    if _absent(node):
        return node
    raise ValueError(f"mindspore_checkpoint: the state field {where or 'state'} (type {type(node).__name__}) has no "
                     "MindSpore counterpart in this module's table.")


def _first(flat: FlatParams, buffer: int) -> Any:
    """The first leaf slot of ``buffer``."""
    return flat.layout.leaves[flat.layout.buffers[buffer].leaves[0]]


def _per_param(tree: Any) -> list[tuple[str, Any]]:
    """``(name, leaf)`` pairs of a per-parameter state tree (a FlatParams: its leaves' slots)."""
    if isinstance(tree, FlatParams):
        return [(slot.name, slot) for slot in tree.layout.leaves]
    return list(zip(jax.tree.leaves(param_names(tree)), jax.tree.leaves(tree)))


_JITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jitted_update(optimizer: optax.GradientTransformation) -> Callable:
    """``jax.jit(optimizer.update)``, kept per optimizer (one compile; eager execution costs one per op)."""
    update = optimizer.update
    if update not in _JITTED:
        _JITTED[update] = jax.jit(update)
    return _JITTED[update]


def _unwrap(optimizer: Any) -> tuple[Any, bool]:
    if isinstance(optimizer, FusedOptimizer):
        return optimizer, True
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"'optimizer' must be a jaxopt_ms optimizer (an optax.GradientTransformation), but got type "
                        f"'{type(optimizer).__name__}'.")
    return optimizer, False


def _check_entry(name: str, have: np.ndarray, shape: tuple, dtype: Any, what: str) -> None:
    if tuple(have.shape) != tuple(shape):
        raise ValueError(f"Checkpoint entry {name!r} has shape {tuple(have.shape)}, but {what} has shape "
                         f"{tuple(shape)}.")
    if np.dtype(have.dtype) != np.dtype(dtype):
        raise ValueError(f"Checkpoint entry {name!r} has dtype {have.dtype}, but {what} has dtype "
                         f"{np.dtype(dtype)}.")


def _scalar_entry(name: str, have: np.ndarray, dtype: Any) -> np.ndarray:
    """A MindSpore scalar (shape ``()`` or ``(1,)``) as a 0-d array of ``dtype``."""
    if have.size != 1 or have.ndim > 1:
        raise ValueError(f"Checkpoint entry {name!r} should be a scalar (shape () or (1,)), but has shape "
                         f"{tuple(have.shape)}.")
    if np.dtype(have.dtype) != np.dtype(dtype):
        raise ValueError(f"Checkpoint entry {name!r} has dtype {have.dtype}, but the optimizer state expects "
                         f"{np.dtype(dtype)}.")
    return have.reshape(())


def from_mindspore(optimizer: optax.GradientTransformation, checkpoint: Mapping[str, Any] | str | os.PathLike,
                   params_like: Any = None, *, ignore: Iterable[str] | Callable[[str], bool] = (),
                   nested: bool = False) -> tuple[Any, Any]:
    """MindSpore's parameters and optimizer state as jaxopt_ms ``(params, state)``: the next update is MindSpore's.

    Args:
        optimizer: the jaxopt_ms optimizer built with MindSpore's hyperparameters (per leaf or
            ``jaxopt_ms.fused.fuse(...)``; with parameter groups; inside :func:`jaxopt_ms.lars` or a loss-scale
            wrapper of :mod:`jaxopt_ms.loss_scale`). The hyperparameters MindSpore saves (``learning_rate``,
            ``learning_rate_group_<i>``, ``momentum``) are checked against it.
        checkpoint: ``{name: array}`` (e.g. from :func:`load`) or a checkpoint file's path.
        params_like: the parameter pytree (arrays or ``jax.ShapeDtypeStruct``) whose leaf names
            (:func:`jaxopt_ms.param_names`) are MindSpore's parameter names; or, for a fused optimizer inside a
            wrapper (``dynamic_loss_scale(fuse(...))``), the ``FlatParams`` from ``fused.flatten(params)``.
            ``None`` (the default): the parameters, their shapes and dtypes come from the checkpoint itself: every
            entry that has optimizer state (``moment1.<name>``, ``accum.<name>``, ...) is a parameter, returned
            as a flat dict ``{MindSpore name: array}`` (``nested=True``: nested by the ``'.'`` of the names,
            ``{'fc1': {'weight': ...}}``); both have the same :func:`jaxopt_ms.param_names`, so either goes back
            through :func:`to_mindspore` under MindSpore's names.
        ignore: checkpoint names to leave unread, or a predicate on the name (e.g. ``lambda n: 'moving_' in n`` for
            BatchNorm statistics kept outside ``params``). ``epoch_num`` and ``step_num`` are never read.
        nested: with ``params_like=None``, return the parameters nested by the dots of their names.
    Returns:
        ``(params, state)``: ``params`` with the structure of ``params_like`` (a fused optimizer: its
        ``flatten(params)``) holding the checkpoint's values; ``state`` the optimizer state after MindSpore's
        ``global_step`` updates: moments and accumulators, beta powers, the step that drives the learning rate
        (per-step lists and schedules continue at index ``global_step``), the dynamic loss scale and its counters.
    Raises:
        FileNotFoundError: no checkpoint file at the path.
        ValueError: entries missing from the checkpoint (all listed at once: parameters apart from optimizer
            state); a checkpoint entry that maps nowhere (neither a parameter, nor this optimizer's state, nor a
            known hyperparameter); loss-scale entries without a loss-scale wrapper; a saved hyperparameter
            (``learning_rate``, ``momentum``) that differs from the optimizer's, naming both values; a shape or
            dtype mismatch, inconsistent per-parameter flags, each naming the entry; an optimizer whose state has
            no MindSpore form (THOR, master weights); a damaged file (see :func:`load`).

    Example:
        >>> opt = jaxopt_ms.momentum(0.1, 0.9)
        >>> params, state = jaxopt_ms.mindspore_checkpoint.from_mindspore(opt, 'net.ckpt')
        >>> updates, state = opt.update(grads, state, params)       # MindSpore's next step
    """
    optimizer, fused = _unwrap(optimizer)
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load(checkpoint)
    ckpt = {k: np.asarray(v) for k, v in checkpoint.items()}
    is_ignored = ignore if callable(ignore) else set(ignore).__contains__
    if params_like is None:
        params_like = _params_from_checkpoint(ckpt, is_ignored, nested)
    used: set[str] = set()
    missing: dict[str, list[str]] = {"parameter": [], "state": []}

    def take(name: str, kind: str = "state") -> np.ndarray | None:
        """The entry ``name``; ``None`` (and noted, to be reported with all the others) where it is missing."""
        if name not in ckpt:
            missing[kind].append(name)
            return None
        used.add(name)
        return ckpt[name]

    if isinstance(params_like, FlatParams):  # packed by a fused optimizer that a wrapper hides
        layout = params_like.layout
        flat_names = [slot.name for slot in layout.leaves]
        buffers = [np.zeros(b.shape, b.dtype) for b in params_like.buffers]  # flatten pads with zeros
        for slot in layout.leaves:
            value = take(slot.name, "parameter")
            if value is not None:
                _check_entry(slot.name, value, slot.shape, slot.dtype, f"the parameter {slot.name!r}")
                buffers[slot.buffer][slot.offset:slot.offset + slot.size] = value.reshape(-1)
        params = FlatParams(tuple(jnp.asarray(b) for b in buffers), layout)
    else:
        names = param_names(params_like)
        flat_names, treedef = jax.tree.flatten(names)
        values = []
        for name, like in zip(flat_names, treedef.flatten_up_to(params_like)):
            value = take(name, "parameter")
            if value is None:
                value = np.zeros(like.shape, like.dtype)  # a stand-in, so that every missing entry is listed
            _check_entry(name, value, tuple(like.shape), like.dtype, f"the parameter {name!r}")
            values.append(jnp.asarray(value))
        params = treedef.unflatten(values)
        if fused:
            params = optimizer.flatten(params)
    state0 = optimizer.init(params)
    rmsprop = _contains(state0, (optax.ScaleByRmsState, optax.ScaleByRStdDevState))
    has_step = []
    _walk(state0, lambda f, v, w: has_step.append(f.kind in ("step", "lr")) or v, "", rmsprop)
    step = None
    if any(has_step):
        saved_step = take("global_step")
        step = 0 if saved_step is None else int(_scalar_entry("global_step", saved_step, np.int32))
        if step < 0:
            raise ValueError(f"Checkpoint entry 'global_step' must be >= 0, but got {step}.")
    if step:
        # The learning rate the next update uses is the optimizer's own rule at `step`: set every step counter to
        # step - 1 and advance it by one update (its other results are overwritten from the checkpoint below).
        before = _walk(state0, lambda f, v, w: jnp.asarray(step - 1, v.dtype) if f.kind == "step" else v, "", rmsprop)
        zeros = jax.tree.map(jnp.zeros_like, params)
        _, template = _jitted_update(optimizer)(zeros, before, params)
    else:
        template = state0
    if "afactor_step" in ckpt and step is not None:
        afactor = float(_scalar_entry("afactor_step", ckpt["afactor_step"], ckpt["afactor_step"].dtype))
        if afactor != step:
            raise ValueError(f"Checkpoint entries 'afactor_step' ({afactor}) and 'global_step' ({step}) differ; "
                             "AdaFactor's step and the learning-rate step are one count here.")

    def fill(field: _Field, value: Any, where: str) -> Any:
        if field.kind in ("step", "lr", "keep"):
            return value
        if field.kind == "scale":
            saved = take(field.ms) if field.ms in ckpt else None
            # a fixed scale is configuration; MindSpore saves it only with a loss-scale cell
            return value if saved is None else jnp.asarray(_scalar_entry(field.ms, saved, value.dtype))
        if field.kind == "scalar":
            got = take(field.ms)
            return value if got is None else jnp.asarray(_scalar_entry(field.ms, got, value.dtype))
        if field.kind == "stat":
            taken = {n: take(field.ms + n) for n in flat_names}
            flags = {n: np.unique(v) for n, v in taken.items() if v is not None}
            if not flags:
                return value
            found = {float(v[0]) for v in flags.values() if v.size == 1}
            if len(found) != 1 or any(v.size != 1 for v in flags.values()):
                raise ValueError(f"The checkpoint's '{field.ms}<name>' entries disagree ({flags}); SGD's first-step "
                                 "flag is one value for all parameters.")
            return jnp.asarray(found.pop(), value.dtype)
        # per-parameter arrays
        if isinstance(value, FlatParams):
            buffers = [b if _absent(b) else np.array(b) for b in value.buffers]
            for slot in value.layout.leaves:
                buf = buffers[slot.buffer]
                if _absent(buf):
                    continue  # a buffer of another parameter group
                name = field.ms + slot.name
                got = take(name)
                if got is None:
                    continue
                _check_entry(name, got, () if field.leaf_scalar else slot.shape, buf.dtype, f"the state field {where}")
                got = got * np.asarray(field.sign, buf.dtype)
                if buf.ndim == 0:  # one value for the whole buffer (ASGD's eta, mu): every leaf must agree
                    first = buffers[slot.buffer] = np.array(got) if slot is _first(value, slot.buffer) else buf
                    if got != first:
                        raise ValueError(f"Checkpoint entry {name!r} ({got}) differs from the other parameters' "
                                         f"({first}), which the fused state holds as one value.")
                    continue
                buf[slot.offset:slot.offset + slot.size] = got.reshape(-1)
            return FlatParams(tuple(b if _absent(b) else jnp.asarray(b) for b in buffers),
                              value.layout)

        def one(leaf_name, leaf):
            name = field.ms + leaf_name
            got = take(name)
            if got is None:
                return leaf
            _check_entry(name, got, leaf.shape, leaf.dtype, f"the state field {where}")
            return jnp.asarray(got * np.asarray(field.sign, got.dtype) if field.sign != 1.0 else got)
        return jax.tree.map(one, param_names(value), value)  # param_names: nnx Variables named by their place

    state = _walk(template, fill, "", rmsprop)
    if missing["parameter"] or missing["state"]:
        raise ValueError(_missing_message(missing, ckpt, used))
    unread = _unread_state(ckpt, state, rmsprop, set(flat_names))
    left = [k for k in ckpt if k not in used and not is_ignored(k) and not HYPERPARAMETER.match(k)
            and k not in unread]
    if not _contains(state, (DynamicLossScaleState, FixedLossScaleState)):
        problem = loss_scale_error(ckpt, left)
        if problem:
            raise ValueError(problem)
    if left:
        raise ValueError(f"Checkpoint entries map nowhere (not a leaf of params_like, not this optimizer's state): "
                         f"{left[:10]}{' ...' if len(left) > 10 else ''}; pass ignore=[...] to leave them out.")
    check_against_optimizer(optimizer, ckpt, state, params, step, rmsprop)
    return params, state


def _state_prefixes() -> set[str]:
    """Every prefix MindSpore puts before a parameter's name for its per-parameter state."""
    return {f.ms for table in _FIELDS.values() for f in table.values()
            if f is not None and f.kind in ("param", "stat")} | {_TRACE_MOMENTUM.ms, _TRACE_RMSPROP.ms}


def _params_from_checkpoint(ckpt: dict, is_ignored: Callable[[str], bool], nested: bool) -> Any:
    """The parameters of a checkpoint without a template: the entries that have per-parameter optimizer state."""
    prefixes = _state_prefixes()
    names = [k for k in ckpt if not is_ignored(k) and not HYPERPARAMETER.match(k)
             and any(p + k in ckpt for p in prefixes)]
    if not names:
        raise ValueError("from_mindspore(params_like=None) takes as parameters the checkpoint's entries that have "
                         f"optimizer state ({', '.join(sorted(p + '<name>' for p in prefixes)[:4])}, ...), and this "
                         "checkpoint has none (saved from the network alone?): pass params_like.")
    flat = {k: jnp.asarray(ckpt[k]) for k in names}
    if not nested:
        return flat
    out: dict = {}
    for name, value in flat.items():
        node, parts = out, name.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"nested=True: the parameter {'.'.join(parts[:i + 1])!r} is also a prefix of "
                                 f"{name!r}, so the names do not nest; use the flat dict (nested=False).")
        if parts[-1] in node:
            raise ValueError(f"nested=True: {name!r} is also a prefix of another parameter's name, so the names do "
                             "not nest; use the flat dict (nested=False).")
        node[parts[-1]] = value
    return out


def _shown(names: list[str], limit: int = 20) -> str:
    return repr(names[:limit])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > limit else "]")


def _missing_message(missing: dict[str, list[str]], ckpt: dict, used: set[str]) -> str:
    """Every missing entry at once: the parameters (with the closest names in the file) apart from the state."""
    parts = []
    params = missing["parameter"]
    if params:
        text = f"{len(params)} parameter(s) of params_like: {_shown(params)}"
        prefixes = _state_prefixes()
        candidates = [k for k in ckpt if not HYPERPARAMETER.match(k)
                      and not any(k.startswith(p) and (k[len(p):] in ckpt or k[len(p):] in params) for p in prefixes)]
        close = {n: difflib.get_close_matches(n, candidates, n=2, cutoff=0.6) for n in params[:5]}
        close = {n: c for n, c in close.items() if c}
        if close:
            text += f" (the closest names in the checkpoint: {close})"
        if any(n.rsplit(".", 1)[-1] in ("kernel", "scale", "embedding", "mean", "var") for n in params):
            text += (" (these are Flax's names: MindSpore's are 'weight', 'gamma', 'beta', 'embedding_table', "
                     "'moving_mean', 'moving_variance'; map the names, and the layouts, to MindSpore's first)")
        parts.append(text)
    state = missing["state"]
    if state:
        text = f"{len(state)} optimizer-state entr{'y' if len(state) == 1 else 'ies'}: {_shown(state)}"
        if not any(k in used for k in ckpt if not HYPERPARAMETER.match(k)) or len(state) > len(used):
            text += (" (a file saved from the network alone, save_checkpoint(net), has no optimizer state: save the "
                     "training cell; a file saved by another MindSpore optimizer has other state names: build the "
                     "jaxopt_ms optimizer that matches it)")
        parts.append(text)
    return ("The checkpoint lacks " + "; and ".join(parts) + ". Nothing is initialised in their place: a run "
            "continued without them would not be MindSpore's.")


def to_mindspore(optimizer: optax.GradientTransformation, params: Any, state: Any) -> dict[str, np.ndarray]:
    """jaxopt_ms ``(params, state)`` as MindSpore's checkpoint entries (the way back of :func:`from_mindspore`).

    The result, written by :func:`save`, loads with ``mindspore.load_checkpoint`` and
    ``mindspore.load_param_into_net(net_or_train_cell, ...)``; the MindSpore optimizer built with the same
    hyperparameters continues the run. Scalars are written with MindSpore's shapes where one form fits every
    optimizer (``global_step``, beta powers: ``(1,)``, which MindSpore reshapes to ``()`` where it keeps a 0-d).
    Learning rates are not written: the MindSpore optimizer carries its own (as it is built).

    Raises:
        ValueError: an optimizer whose state has no MindSpore form (THOR, master weights).
    """
    optimizer, _ = _unwrap(optimizer)
    out: dict[str, np.ndarray] = {}
    tree = _flat_unflatten(params)
    names = param_names(tree)
    for name, leaf in zip(jax.tree.leaves(names), jax.tree.leaves(tree)):
        out[name] = np.asarray(leaf)
    rmsprop = _contains(state, (optax.ScaleByRmsState, optax.ScaleByRStdDevState))
    leaf_names = jax.tree.leaves(names)
    adafactor = _contains(state, (AdaFactorState,))

    def emit(field: _Field, value: Any, where: str) -> Any:
        if field.kind == "step":
            out["global_step"] = np.asarray(value, np.int32).reshape(1)
            if adafactor:
                out["afactor_step"] = np.asarray(value, np.float32).reshape(1)
        elif field.kind in ("scalar", "scale"):
            arr = np.asarray(value)
            out[field.ms] = arr.reshape(field.ms_shape) if field.ms_shape is not None else arr
        elif field.kind == "stat":
            for n, leaf in zip(leaf_names, jax.tree.leaves(tree)):
                out[field.ms + n] = np.full(np.shape(leaf), float(value), np.float32)
        elif field.kind == "param":
            if isinstance(value, FlatParams):
                for slot in value.layout.leaves:
                    if _absent(value.buffers[slot.buffer]):
                        continue
                    buf = np.asarray(value.buffers[slot.buffer])
                    arr = buf.reshape(1) if buf.ndim == 0 else buf[slot.offset:slot.offset + slot.size]
                    arr = arr[0] if field.leaf_scalar else arr.reshape(slot.shape)
                    out[field.ms + slot.name] = arr * np.asarray(field.sign, arr.dtype) if field.sign != 1.0 else arr
            else:
                for n, arr in _per_param(value):
                    arr = np.asarray(arr)
                    out[field.ms + n] = arr * np.asarray(field.sign, arr.dtype) if field.sign != 1.0 else arr
        return value

    _walk(state, emit, "", rmsprop)
    return out


def _flat_unflatten(params: Any) -> Any:
    from jaxopt_ms._flat import unflatten

    return unflatten(params) if isinstance(params, FlatParams) else params
