"""MindSpore parameter groups for every optimizer factory (reference §2.3).

``param_groups`` is MindSpore's list of dicts with a JAX selector in place of a list of Parameters::

    opt = jaxopt_ms.adam(learning_rate=0.1, param_groups=[
        {'params': lambda name, leaf: 'conv' in name, 'weight_decay': 0.01, 'grad_centralization': True},
        {'params': r'^fc\\.', 'lr': 0.01},
        {'order_params': None},          # accepted for compatibility: the order is the pytree's
    ])

``params`` is a callable ``(name, leaf) -> bool``, a regular expression (``re.search`` on the leaf name) or a
list of names. Per group: ``lr`` (any learning-rate form; default the optimizer's), ``weight_decay`` (default
the optimizer's; in group mode a group with ``wd > 0`` decays *all* its leaves, names are ignored, as in
MindSpore) and ``grad_centralization`` (default False). Groups must not overlap. A leaf in no group is not
updated (zero update). When any group sets ``lr`` and any learning rate is dynamic, fixed ones are quantised as
``f32(f32(lr + 1) - 1)``, as MindSpore does.

Each group is one instance of the optimizer's chain, run on its own leaves at their paths (dict entries of
other groups left out, other groups' leaves inside other pytree nodes set to ``None``): the state keeps the
parameters' paths (so sharding follows them), and costs nothing per step beyond the ungrouped optimizer's.
``optax.partition`` would mark the other groups' leaves with ``optax.MaskedNode``, a Python-level pytree node
that every jitted step flattens and rebuilds once per leaf and per group: a per-step dispatch cost that grows
with the number of leaves (``benchmarks/groups.py``).

Selector mistakes are errors, raised at ``init`` (and ``update``) when the tree is known: a listed name that is
no leaf (``ValueError`` naming it and the closest real names), an invalid regular expression (``ValueError``
naming the group and the optimizer, at construction), a group that selects no leaf (``ValueError`` naming its
selector).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms.names import decay_all, mindspore_decay_filter, param_names
from jaxopt_ms.sparse import is_row_sparse
from jaxopt_ms.transforms.learning_rate import LearningRate, resolve_learning_rate
from jaxopt_ms.transforms.weight_decay import warn_ineffective_decay
from jaxopt_ms.validation import check_weight_decay

__all__ = ["GroupConfig", "GroupOverlapError", "ParamGroupsState", "check_selection", "with_param_groups"]

NameFilter = Callable[[str, Any], bool]
_GROUP_KEYS = ("params", "lr", "weight_decay", "grad_centralization", "order_params")


class GroupOverlapError(ValueError, RuntimeError):
    """A leaf is selected by two groups (a ``ValueError``; also a ``RuntimeError`` as MindSpore raises)."""


@dataclasses.dataclass(frozen=True)
class GroupConfig:
    """The hyperparameters one group's chain is built with."""

    learning_rate: LearningRate
    weight_decay: float | Callable[[jax.Array], Any]
    grad_centralization: bool
    decay_filter: NameFilter
    index: int = 0


def _selector(spec: Any, index: int, opt_name: str) -> Callable[[str, Any], bool]:
    if callable(spec):
        return spec
    if isinstance(spec, str):
        try:
            pattern = re.compile(spec)
        except re.error as e:
            raise ValueError(
                f"For '{opt_name}', the 'params' of group {index} is not a valid regular expression: {spec!r} "
                f"({e})."
            ) from None
        return lambda name, leaf: pattern.search(name) is not None
    if isinstance(spec, (list, tuple, set, frozenset)):
        names = list(spec)
        if not names:
            raise ValueError(f"For '{opt_name}', the 'params' of group {index} must not be empty.")
        for i, n in enumerate(names):
            if not isinstance(n, str):
                raise TypeError(
                    f"For '{opt_name}', the 'params' of group {index} must hold parameter names (str), but "
                    f"got type '{type(n).__name__}' at index {i} (value {n!r})."
                )
        wanted = frozenset(names)
        return lambda name, leaf: name in wanted
    raise TypeError(
        f"For '{opt_name}', the 'params' of group {index} must be a callable (name, leaf) -> bool, a regular "
        f"expression string or a list of names, but got type '{type(spec).__name__}' (value {spec!r})."
    )


def _parse_groups(param_groups: Any, opt_name: str) -> list[dict]:
    if not isinstance(param_groups, (list, tuple)):
        raise TypeError(
            f"For '{opt_name}', 'param_groups' must be a list of dicts, but got type "
            f"'{type(param_groups).__name__}' (value {param_groups!r})."
        )
    groups = []
    for i, group in enumerate(param_groups):
        if not isinstance(group, dict):
            raise TypeError(
                f"For '{opt_name}', each element of 'param_groups' must be a dict, but got type "
                f"'{type(group).__name__}' at index {i} (value {group!r})."
            )
        for key in group:
            if key not in _GROUP_KEYS:
                raise KeyError(
                    f"For '{opt_name}', the key of a parameter group must be one of {list(_GROUP_KEYS)}, "
                    f"but got {key!r} in group {i}."
                )
        if "order_params" in group:
            if len(group) != 1:
                raise ValueError(
                    f"For '{opt_name}', 'order_params' must be alone in its dict, but group {i} has keys "
                    f"{sorted(group)}."
                )
            order = group["order_params"]
            if order is not None and (isinstance(order, str) or not isinstance(order, Iterable)):
                raise TypeError(
                    f"For '{opt_name}', 'order_params' must be None or an iterable of parameter names, but got "
                    f"type '{type(order).__name__}' (value {order!r})."
                )
            continue  # the order is the pytree's; MindSpore's reordering has no numerical effect
        if "params" not in group:
            raise KeyError(f"For '{opt_name}', parameter group {i} has no 'params' key: {group!r}.")
        groups.append(dict(group, _index=len(groups)))
    if not groups:
        raise ValueError(f"For '{opt_name}', 'param_groups' must hold at least one group with 'params'.")
    _check_name_lists(groups, opt_name)
    return groups


def _check_name_lists(groups: list[dict], opt_name: str) -> None:
    """Overlaps between groups given as name lists are known before ``init``: raise at construction."""
    owner: dict[str, int] = {}
    for g in groups:
        spec = g["params"]
        if not isinstance(spec, (list, tuple, set, frozenset)):
            continue
        for name in spec:
            if isinstance(name, str) and owner.setdefault(name, g["_index"]) != g["_index"]:
                raise GroupOverlapError(
                    f"For '{opt_name}', the parameter '{name}' is selected by groups {[owner[name], g['_index']]}; "
                    f"parameter groups must not overlap (the {name} parameter already exists in another group)."
                )


def _describe(spec: Any) -> str:
    if callable(spec):
        return f"the callable {getattr(spec, '__qualname__', type(spec).__name__)}"
    return repr(spec)


def check_selection(specs: Sequence[Any], indices: Sequence[int], hits: Sequence[bool], names: Sequence[str],
                    opt_name: str) -> None:
    """Raises ``ValueError`` for a listed name that is no leaf of the tree (with the closest real names) and
    for a group that selects no leaf (naming its selector). ``hits[k]``: whether group ``k`` selected a leaf."""
    real = sorted(set(names))
    for spec, index in zip(specs, indices):
        if not isinstance(spec, (list, tuple, set, frozenset)):
            continue
        known = set(real)
        for name in spec:
            if name not in known:
                close = difflib.get_close_matches(name, real, n=3, cutoff=0.6)
                hint = f"; the closest parameter names are {close}" if close else ""
                raise ValueError(
                    f"For '{opt_name}', the 'params' of group {index} names the parameter {name!r}, but the "
                    f"parameters have no leaf of that name{hint}."
                )
    if not names:
        return
    for spec, index, hit in zip(specs, indices, hits):
        if not hit:
            shown = ", ".join(repr(n) for n in real[:20]) + (f", ... ({len(real)} in all)" if len(real) > 20 else "")
            raise ValueError(
                f"For '{opt_name}', parameter group {index} selects no parameter (its 'params' is "
                f"{_describe(spec)}); the parameter names it was matched against are: {shown}. A regular "
                "expression is matched with re.search on these names (Flax nnx leaves are named without '.value')."
            )


class ParamGroupsState(NamedTuple):
    """The state of each group's chain, in group order (each built on its own leaves, at their paths)."""

    inner_states: tuple


def _select(labels: Any, tree: Any, group: int) -> Any:
    """The leaves of ``tree`` labelled ``group``, at their paths: dict entries without such a leaf are left out,
    other leaves inside any other pytree node become ``None`` (an empty subtree)."""
    if type(labels) is dict:
        out = {}
        for k, lab in labels.items():
            sub = _select(lab, tree[k], group)
            if sub is not None and not (type(sub) is dict and not sub):  # keep only entries with such leaves
                out[k] = sub
        return out
    if isinstance(labels, int):
        return tree if labels == group else None
    return jax.tree.map(lambda lab, x: x if lab == group else None, labels, tree)


def _partition(transforms: Sequence[optax.GradientTransformation], labels: Callable[[Any], Any]
               ) -> optax.GradientTransformationExtraArgs:
    """``optax.partition`` without ``optax.MaskedNode``: each group's chain gets only its own leaves, at their
    paths (:func:`_select`); label ``len(transforms)``: zero update.

    ``optax.MaskedNode`` is a Python NamedTuple that each jitted step flattens and rebuilds once per leaf and
    per group (dispatch cost, not compute); dropped dict entries and ``None`` cost nothing or next to nothing.
    """
    transforms = [optax.with_extra_args_support(t) for t in transforms]

    def init_fn(params):
        tree_labels = labels(params)
        return ParamGroupsState(tuple(t.init(_select(tree_labels, params, i)) for i, t in enumerate(transforms)))

    def update_fn(updates, state, params=None, **extra_args):
        tree_labels = labels(updates)
        label_leaves, treedef = jax.tree.flatten(tree_labels)
        values = treedef.flatten_up_to(updates)
        new: list[Any] = [None] * len(values)
        new_states = []
        for i, (t, s) in enumerate(zip(transforms, state.inner_states)):
            p = None if params is None else _select(tree_labels, params, i)
            u, s = t.update(_select(tree_labels, updates, i), s, p, **extra_args)
            members = [k for k, lab in enumerate(label_leaves) if lab == i]  # in flatten order, as selected
            for k, leaf in zip(members, jax.tree.structure(_select(tree_labels, tree_labels, i)).flatten_up_to(u)):
                new[k] = leaf
            new_states.append(s)
        for k, lab in enumerate(label_leaves):
            if lab >= len(transforms):  # a leaf in no group is not updated
                new[k] = jax.tree.map(jnp.zeros_like, values[k])
        return treedef.unflatten(new), ParamGroupsState(tuple(new_states))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _constant(lr: LearningRate, wd: Any) -> tuple[float, float] | None:
    """``(lr, wd)`` as floats when both are known at construction (the largest lr of a per-step list)."""
    if callable(wd) or lr.kind == "schedule":
        return None
    try:
        return float(np.max(np.asarray(lr.value, np.float64))), float(wd)
    except (TypeError, jax.errors.ConcretizationTypeError):  # a traced value: nothing to decide from
        return None


def _warn_at_init(tx: optax.GradientTransformation, entries: list, opt_name: str
                  ) -> optax.GradientTransformationExtraArgs:
    """``tx`` whose first ``init`` warns about decayed 16-bit leaves that decay cannot change."""
    tx = optax.with_extra_args_support(tx)
    if not entries:
        return tx
    done = [False]

    def init_fn(params):
        if not done[0]:
            done[0] = True
            warn_ineffective_decay(params, entries, opt_name)
        return tx.init(params)

    return optax.GradientTransformationExtraArgs(init_fn, tx.update)


def with_param_groups(
    build: Callable[[GroupConfig], optax.GradientTransformation],
    *,
    learning_rate: Any,
    weight_decay: Any,
    param_groups: Sequence[dict] | None,
    decay_filter: NameFilter | None,
    opt_name: str,
    allow_dynamic_weight_decay: bool = True,
) -> optax.GradientTransformation:
    """Builds the optimizer from ``build(config)``, once, or once per parameter group.

    Args:
        build: makes one group's chain from its :class:`GroupConfig`.
        learning_rate, weight_decay: the optimizer-level defaults (validated here).
        param_groups: ``None`` or MindSpore's list of dicts (see the module docstring).
        decay_filter: overrides the default decay filter (MindSpore's name rule without groups; every leaf of
            a group with ``wd > 0`` in group mode).
        opt_name: the MindSpore class name, for error messages.
    """
    default_lr = resolve_learning_rate(learning_rate, opt_name)
    default_wd = check_weight_decay(weight_decay, opt_name, allow_schedule=allow_dynamic_weight_decay)
    if param_groups is None:
        decays = decay_filter or mindspore_decay_filter
        fixed = _constant(default_lr, default_wd)
        return _warn_at_init(build(GroupConfig(default_lr, default_wd, False, decays)),
                             [(decays, *fixed)] if fixed else [], opt_name)

    groups = _parse_groups(param_groups, opt_name)
    selectors = [_selector(g["params"], g["_index"], opt_name) for g in groups]
    lrs = [resolve_learning_rate(g["lr"], opt_name, "lr") if "lr" in g else default_lr for g in groups]
    is_group_lr = any("lr" in g for g in groups)
    if is_group_lr and any(lr.is_dynamic for lr in lrs + [default_lr]):
        lrs = [lr.quantized() for lr in lrs]
    if default_lr.kind == "array":
        for g, lr in zip(groups, lrs):
            if lr.kind == "array" and lr.length != default_lr.length:
                raise ValueError(
                    f"For '{opt_name}', the per-step 'lr' of group {g['_index']} has {lr.length} elements but "
                    f"the per-step 'learning_rate' has {default_lr.length}; they must be equal."
                )
    configs = []
    for g, lr in zip(groups, lrs):
        wd = check_weight_decay(g.get("weight_decay", default_wd), opt_name,
                                allow_schedule=allow_dynamic_weight_decay)
        gc = g.get("grad_centralization", False)
        if not isinstance(gc, bool):
            raise TypeError(
                f"For '{opt_name}', the 'gradients_centralization' must be bool type, but got type "
                f"'{type(gc).__name__}' (value {gc!r}) in group {g['_index']}."
            )
        configs.append(GroupConfig(lr, wd, gc, decay_filter or decay_all, g["_index"]))

    transforms = [build(cfg) for cfg in configs]
    entries = []
    for sel, cfg in zip(selectors, configs):
        fixed = _constant(cfg.learning_rate, cfg.weight_decay)
        if fixed:
            entries.append((lambda n, x, _s=sel, _f=cfg.decay_filter: bool(_s(n, x)) and bool(_f(n, x)), *fixed))
    unselected = len(configs)
    specs = [g["params"] for g in groups]
    indices = [g["_index"] for g in groups]

    def labels(tree: Any) -> Any:
        seen = [False] * len(selectors)
        names: list[str] = []

        def label(name: str, leaf: Any) -> int:
            names.append(name)
            hits = [i for i, sel in enumerate(selectors) if sel(name, leaf)]
            if len(hits) > 1:
                raise GroupOverlapError(
                    f"For '{opt_name}', the parameter '{name}' is selected by groups {hits}; parameter groups "
                    f"must not overlap (the {name} parameter already exists in another group)."
                )
            if hits:
                seen[hits[0]] = True
                return hits[0]
            return unselected

        out = jax.tree.map(label, param_names(tree), tree, is_leaf=is_row_sparse)
        check_selection(specs, indices, seen, names, opt_name)
        return out

    return _warn_at_init(_partition(transforms, labels), entries, opt_name)
