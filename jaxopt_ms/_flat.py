"""Flat parameter buffers: the data structure of the fused fast path, and the hooks blocks use on it.

A :class:`FlatParams` holds a pytree of arrays as a few 1-D buffers (one per dtype and per partition key) plus a
static :class:`Layout` (the tree structure and, per leaf, its name, shape, dtype, buffer and offset). It is a
pytree node whose children are the buffers, so ``jax.grad``, ``optax.apply_updates``, ``jax.tree.map`` and every
element-wise gradient transformation work on it unchanged, at a cost of a handful of kernels per step. In a
buffer of several leaves each leaf starts at a multiple of the buffer's ``row`` (up to 128 elements; zero
padding between, at most 1/16 of the buffer), so per-leaf reductions read the buffer as one ``(rows, row)``
array instead of copying slices out.

Blocks whose formula is per *leaf* (a reduction over a leaf, a leaf's shape) must not see a buffer as if it were
one array. They call :func:`map_leaves` (apply a per-array function to each leaf, buffers re-assembled by one
concatenate), :func:`leaf_sums` / :func:`leaf_means` (each leaf's sum or mean, broadcast over the leaf's
elements), :func:`buffer_tree` (single-leaf buffers in their leaf's shape) or :func:`leaf_tree` /
:func:`restore`, which behave like ``jax.tree.map`` / ``jnp.sum`` / the identity on ordinary pytrees, so the
per-leaf and the fused paths run the same function.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms._hyper import safe_sqrt
from jaxopt_ms.names import param_names

__all__ = [
    "FlatParams",
    "Layout",
    "LeafSlot",
    "buffer_tree",
    "flatten",
    "from_buffer_tree",
    "is_flat",
    "leaf_means",
    "leaf_norms",
    "leaf_sums",
    "leaf_tree",
    "map_leaves",
    "restore",
    "unflatten",
    "view",
]

PartitionFn = Callable[[str, Any], Hashable]


@dataclasses.dataclass(frozen=True)
class LeafSlot:
    """Where one leaf lives: ``buffer`` index, ``offset`` and ``size`` in that buffer, its ``shape`` and name."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    buffer: int
    offset: int
    size: int


@dataclasses.dataclass(frozen=True)
class BufferSpec:
    """One flat buffer: its pytree key ``name``, ``dtype``, total ``size``, partition ``key``, its leaves, and
    ``row``: every leaf starts at a multiple of ``row`` elements and ``size`` is one (zero padding between)."""

    name: str
    dtype: np.dtype
    size: int
    key: Hashable
    leaves: tuple[int, ...]
    row: int = 1


class Layout:
    """The static description of a :class:`FlatParams` (hashable; equal layouts describe the same packing)."""

    __slots__ = ("treedef", "leaves", "buffers", "_ident", "_hash")

    def __init__(self, treedef: Any, leaves: tuple[LeafSlot, ...], buffers: tuple[BufferSpec, ...]):
        self.treedef = treedef
        self.leaves = leaves
        self.buffers = buffers
        self._ident = (treedef, leaves, buffers)
        self._hash = hash(self._ident)
        _register_flax_serialization()  # a FlatParams may now exist: let flax.serialization know it

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        # Rebuilt from its parts on unpickling: the hash includes the PyTreeDef's, which differs between
        # processes, so a pickled hash would make an unpickled layout unequal to flatten(params)'s.
        return (Layout, (self.treedef, self.leaves, self.buffers))

    def __eq__(self, other: object) -> bool:
        # Layouts are compared on every tree operation over FlatParams: identity first keeps that cheap.
        return self is other or (isinstance(other, Layout) and self._hash == other._hash
                                 and self._ident == other._ident)

    def __repr__(self) -> str:
        bufs = ", ".join(f"{b.name}: {b.dtype.name}[{b.size}] ({len(b.leaves)} leaves)" for b in self.buffers)
        return f"Layout({len(self.leaves)} leaves -> {bufs})"

    def buffer_leaves(self, index: int) -> list[LeafSlot]:
        return [self.leaves[i] for i in self.buffers[index].leaves]


class FlatParams:
    """A pytree held as a few 1-D buffers (``buffers``) with its static ``layout``; itself a pytree node."""

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers: tuple[Any, ...], layout: Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def __repr__(self) -> str:
        return f"FlatParams({self.layout!r})"


def _flatten_with_keys(flat: FlatParams):
    keys = [jax.tree_util.GetAttrKey(b.name) for b in flat.layout.buffers]
    return list(zip(keys, flat.buffers)), flat.layout


jax.tree_util.register_pytree_with_keys(
    FlatParams,
    _flatten_with_keys,
    lambda layout, children: FlatParams(tuple(children), layout),
    flatten_func=lambda flat: (flat.buffers, flat.layout),
)


def _flax_state_dict(flat: FlatParams) -> dict[str, Any]:
    from flax import serialization

    return {b.name: serialization.to_state_dict(buf) for b, buf in zip(flat.layout.buffers, flat.buffers)}


def _flax_from_state_dict(target: FlatParams, state: dict[str, Any]) -> FlatParams:
    from flax import serialization

    names = [b.name for b in target.layout.buffers]
    if set(state) != set(names):
        raise ValueError(f"FlatParams: the state dict has buffers {sorted(state)}, but the target's layout has "
                         f"{names} ({target.layout!r}).")
    return FlatParams(tuple(serialization.from_state_dict(buf, state[n], name=n)
                            for n, buf in zip(names, target.buffers)), target.layout)


_FLAX_REGISTERED = [False]


def _register_flax_serialization() -> None:
    """Teaches ``flax.serialization`` (``to_bytes`` / ``from_bytes`` / ``to_state_dict``) the FlatParams node,
    when Flax is installed: its state dict is ``{buffer name: buffer}``, restored into a target's layout."""
    if _FLAX_REGISTERED[0]:
        return
    _FLAX_REGISTERED[0] = True
    if importlib.util.find_spec("flax") is None:
        return
    from flax import serialization

    serialization.register_serialization_state(FlatParams, _flax_state_dict, _flax_from_state_dict, override=True)


if "flax.serialization" in sys.modules:  # already paid for: register now (else on the first flatten)
    _register_flax_serialization()


def is_flat(x: Any) -> bool:
    """Whether ``x`` is a :class:`FlatParams`."""
    return isinstance(x, FlatParams)


MAX_ROW = 128  # elements: the widest row a buffer is aligned to (see _row_width)


def _row_width(sizes: list[int]) -> int:
    """The row width of a buffer holding leaves of ``sizes``: the widest power of two <= MAX_ROW whose zero
    padding (each leaf rounded up to whole rows) stays within 1/16 of the buffer; 1 (no padding) for one leaf.

    Whole rows let :func:`leaf_sums` reduce a buffer as one ``(rows, row)`` array (no per-leaf slice copies,
    which XLA's CPU backend writes out before reducing) and broadcast per-leaf values back row by row.
    """
    if len(sizes) <= 1:
        return 1
    total = sum(sizes)
    row = MAX_ROW
    while row > 1 and (sum(-(-s // row) * row for s in sizes) - total) * 16 > total:
        row //= 2
    return row


def make_layout(params: Any, partition: PartitionFn | None = None) -> Layout:
    """The layout :func:`flatten` uses for ``params`` (leaves grouped by dtype and ``partition(name, leaf)``;
    each leaf starting at a multiple of its buffer's ``row``, zero padding between)."""
    names, treedef = jax.tree.flatten(param_names(params))
    leaves = treedef.flatten_up_to(params)
    groups: dict[tuple, list[int]] = {}
    for i, (name, leaf) in enumerate(zip(names, leaves)):
        key = partition(name, leaf) if partition is not None else None
        groups.setdefault((np.dtype(jnp.result_type(leaf)).name, key), []).append(i)
    slots: list[LeafSlot | None] = [None] * len(leaves)
    buffers = []
    for b, ((dtype_name, key), members) in enumerate(groups.items()):
        shapes = [tuple(np.shape(leaves[i])) for i in members]
        sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
        row = _row_width(sizes)
        offset = 0
        for i, shape, size in zip(members, shapes, sizes):
            slots[i] = LeafSlot(names[i], shape, np.dtype(dtype_name), b, offset, size)
            offset += -(-size // row) * row
        buffers.append(BufferSpec(f"flat{b}", np.dtype(dtype_name), offset, key, tuple(members), row))
    return Layout(treedef, tuple(slots), tuple(buffers))


def flatten(params: Any, partition: PartitionFn | None = None) -> FlatParams:
    """Packs the leaves of ``params`` into one 1-D buffer per dtype (and per ``partition(name, leaf)`` key).

    Args:
        params: a pytree of arrays.
        partition: optional ``(name, leaf) -> hashable``; leaves with different keys go to different buffers
            (an optimizer's per-leaf facts: group, decay filter, ...). :meth:`FusedOptimizer.flatten` passes
            the optimizer's own.

    Returns:
        A :class:`FlatParams`; the order inside a buffer is the pytree's.
    """
    layout = make_layout(params, partition)
    leaves = layout.treedef.flatten_up_to(params)
    buffers = [_pack(spec, layout.buffer_leaves(b), [jnp.asarray(leaves[i]) for i in spec.leaves], spec.dtype)
               for b, spec in enumerate(layout.buffers)]
    return FlatParams(tuple(buffers), layout)


def _slices(layout: Layout, buffers: tuple[Any, ...]) -> list[Any]:
    return [jax.lax.slice(buffers[s.buffer], (s.offset,), (s.offset + s.size,)).reshape(s.shape)
            for s in layout.leaves]


def _concat(parts: list[Any]) -> Any:
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _pack(spec: BufferSpec, slots: list[LeafSlot], values: list[Any], dtype: Any = None) -> Any:
    """One buffer from its leaves' values (cast to ``dtype`` if given), zeros in the padding."""
    parts, end = [], 0
    for slot, value in zip(slots, values):
        value = jnp.ravel(value) if dtype is None else jnp.ravel(value).astype(dtype)
        if slot.offset > end:
            parts.append(jnp.zeros(slot.offset - end, value.dtype))
        parts.append(value)
        end = slot.offset + slot.size
    if spec.size > end:
        parts.append(jnp.zeros(spec.size - end, parts[-1].dtype))
    return _concat(parts)


def _assemble(layout: Layout, leaf_values: list[Any]) -> tuple[Any, ...]:
    return tuple(_pack(spec, layout.buffer_leaves(b), [leaf_values[i] for i in spec.leaves], spec.dtype)
                 for b, spec in enumerate(layout.buffers))


def unflatten(flat: FlatParams) -> Any:
    """The pytree ``flat`` holds (for export, checkpoints, evaluation). Inverse of :func:`flatten`."""
    return flat.layout.treedef.unflatten(_slices(flat.layout, flat.buffers))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _leaf_views(layout: Layout, buffers: tuple[Any, ...]) -> list[Any]:
    return _slices(layout, buffers)


def _leaf_views_fwd(layout, buffers):
    return _slices(layout, buffers), None


def _leaf_views_bwd(layout, _, leaf_cotangents):
    # One concatenate per buffer; differentiating the slices instead would pad-and-add every leaf cotangent
    # into a zero buffer, which costs a pass over the whole buffer per leaf.
    return (_assemble(layout, list(leaf_cotangents)),)


_leaf_views.defvjp(_leaf_views_fwd, _leaf_views_bwd)


def view(flat: FlatParams) -> Any:
    """The pytree ``flat`` holds, as views for use inside a jitted step (``loss(view(flat))``).

    Same values as :func:`unflatten`, but its gradient arrives as flat buffers assembled by one concatenate per
    buffer (a custom VJP), so ``jax.grad(lambda f: loss(view(f)))(flat)`` is a :class:`FlatParams`.
    """
    return flat.layout.treedef.unflatten(_leaf_views(flat.layout, flat.buffers))


def _leaf_arg(x: Any, b: int, s: LeafSlot) -> Any:
    buf = x.buffers[b]
    if not hasattr(buf, "shape"):  # a per-buffer value (e.g. a mask bool): the same for every leaf of the buffer
        return buf
    return jax.lax.slice(buf, (s.offset,), (s.offset + s.size,)).reshape(s.shape)


def _map_flat(fn: Callable, node: FlatParams, rest: tuple[FlatParams, ...], where: Callable | None) -> FlatParams:
    buffers = []
    for b, spec in enumerate(node.layout.buffers):
        buf = node.buffers[b]
        if not hasattr(buf, "shape"):  # e.g. optax.MaskedNode: this buffer is not this block's
            buffers.append(buf)
            continue
        slots = node.layout.buffer_leaves(b)
        if where is not None and not any(where(s.shape) for s in slots):
            buffers.append(buf)
            continue
        outs = []
        for s in slots:
            args = [_leaf_arg(x, b, s) for x in (node, *rest)]
            outs.append(fn(*args) if where is None or where(s.shape) else args[0])
        if isinstance(outs[0], tuple):  # several outputs per leaf: a tuple of buffers (see _tree.unzip)
            buffers.append(tuple(_pack(spec, slots, [o[k] for o in outs]) for k in range(len(outs[0]))))
        else:
            buffers.append(_pack(spec, slots, outs, spec.dtype))
    return FlatParams(tuple(buffers), node.layout)


def map_leaves(fn: Callable[..., Any], tree: Any, *rest: Any, where: Callable[[tuple], bool] | None = None) -> Any:
    """``jax.tree.map(fn, tree, *rest)`` that sees leaves, also inside :class:`FlatParams`.

    The hook for blocks whose formula is per leaf (centralization, a trust ratio, ...): on an ordinary pytree it
    is ``jax.tree.map``; on a :class:`FlatParams` node, ``fn`` gets each leaf's view (with its shape) and the
    results are re-assembled with one concatenate per buffer. ``fn`` returns an array of the leaf's shape, or a
    tuple of such arrays (then each buffer holds a tuple, which ``jaxopt_ms._tree.unzip`` splits as usual). A
    non-array child of a FlatParams in ``rest`` (e.g. a mask bool from ``leaf_mask``) is a per-buffer value and
    is passed as it is to every leaf of that buffer.

    Args:
        fn: the per-array function (the same one the per-leaf path uses).
        tree, rest: pytrees of the same structure (``rest`` may be prefixes with FlatParams where ``tree`` has).
        where: optional ``shape -> bool``; leaves where it is false pass through unchanged (and a buffer with no
            such leaf is not sliced at all).
    """

    def one(x, *xs):
        if isinstance(x, FlatParams):
            return _map_flat(fn, x, xs, where)
        if where is not None and not where(tuple(np.shape(x))):
            return x
        return fn(x, *xs)

    return jax.tree.map(one, tree, *rest, is_leaf=is_flat)


def _owners(spec: BufferSpec, slots: list[LeafSlot], width: int) -> np.ndarray:
    """For each ``width``-element piece of the buffer, the index (in ``slots``) of the leaf it belongs to (padding
    to the leaf before it). A NumPy constant: built with ``jnp.repeat`` in the program, XLA would constant-fold
    it (minutes for 4M elements)."""
    starts = np.array([s.offset // width for s in slots])
    return (np.searchsorted(starts, np.arange(spec.size // width), side="right") - 1).astype(np.int32)


def _row_sums(buf: Any, spec: BufferSpec, slots: list[LeafSlot]) -> Any:
    # Each leaf's sum as (its whole rows) + (its last, partial row): one reduction over the buffer seen as
    # (rows, row), whose operand XLA fuses (no copy), then small per-leaf reductions; padding is never read.
    row = spec.row
    rows = jnp.sum(buf.reshape(-1, row), axis=1)
    sums = []
    for s in slots:
        first, full = s.offset // row, s.size // row
        parts = [jnp.sum(jax.lax.slice(rows, (first,), (first + full,)))] if full else []
        if s.size % row:
            parts.append(jnp.sum(jax.lax.slice(buf, (s.offset + full * row,), (s.offset + s.size,))))
        sums.append(parts[0] if len(parts) == 1 else parts[0] + parts[1])
    return jnp.stack(sums)


def _flat_leaf_sums(x: FlatParams, method: str, mean: bool = False) -> FlatParams:
    buffers = []
    for b, spec in enumerate(x.layout.buffers):
        buf = x.buffers[b]
        if not hasattr(buf, "shape"):
            buffers.append(buf)
            continue
        slots = x.layout.buffer_leaves(b)
        if len(slots) == 1:
            s = slots[0]
            whole = buf if s.size == spec.size else jax.lax.slice(buf, (s.offset,), (s.offset + s.size,))
            buffers.append(jnp.broadcast_to(jnp.mean(whole) if mean else jnp.sum(whole), buf.shape))
            continue
        if method == "rows":
            sums = _row_sums(buf, spec, slots)
        elif method == "segment_sum":
            sums = jax.ops.segment_sum(jnp.where(_padding_mask(spec, slots), 0, buf), _owners(spec, slots, 1),
                                       num_segments=len(slots), indices_are_sorted=True)
        else:
            sums = jnp.stack([jnp.sum(jax.lax.slice(buf, (s.offset,), (s.offset + s.size,))) for s in slots])
        if mean:
            sums = sums / np.array([s.size for s in slots], sums.dtype)
        # back to the elements by one gather per row (a concatenate of many broadcasts is slow to compile and run)
        per_row = sums[_owners(spec, slots, spec.row)]
        buffers.append(jnp.broadcast_to(per_row[:, None], (spec.size // spec.row, spec.row)).reshape(spec.size))
    return FlatParams(tuple(buffers), x.layout)


def _padding_mask(spec: BufferSpec, slots: list[LeafSlot]) -> np.ndarray:
    mask = np.ones(spec.size, bool)
    for s in slots:
        mask[s.offset:s.offset + s.size] = False
    return mask


def _check_method(method: str) -> None:
    if method not in ("rows", "slices", "segment_sum"):
        raise ValueError(f"leaf_sums: 'method' must be 'rows', 'slices' or 'segment_sum', but got {method!r}.")


def leaf_sums(tree: Any, method: str = "rows") -> Any:
    """Each leaf's sum, broadcast over that leaf's elements (same structure as ``tree``).

    On an ordinary leaf this is ``broadcast_to(jnp.sum(x), x.shape)``; inside a :class:`FlatParams` each leaf's
    segment of a buffer is summed (padding excluded). Use it for per-leaf norms (``sqrt(leaf_sums(w * w))``) in
    a block that is otherwise element-wise, so the block runs on flat buffers.

    Args:
        method: how a buffer of several leaves is reduced. ``'rows'`` (default): one reduction of the buffer as
            ``(rows, row)`` (its layout aligns leaves to rows), then each leaf's row sums plus its partial last
            row; no copies, one pass. ``'slices'``: one reduction per leaf slice, as the per-leaf path sums;
            XLA's CPU backend copies each slice out first. ``'segment_sum'``: one
            scatter-add (slow on CPU). The methods agree to rounding (a few ulps of the sum). A buffer of one
            leaf is one ``jnp.sum`` (the per-leaf bits) whatever the method.
    """
    _check_method(method)

    def one(x):
        if isinstance(x, FlatParams):
            return _flat_leaf_sums(x, method)
        return jnp.broadcast_to(jnp.sum(x), jnp.shape(x))

    return jax.tree.map(one, tree, is_leaf=is_flat)


def leaf_norms(tree: Any) -> Any:
    """Each leaf's L2 norm (in float32), broadcast over that leaf's elements: ``sqrt(leaf_sums(x * x))``. The norms
    of Lamb's and LARS's trust ratios, for a block that is otherwise element-wise."""
    # safe_sqrt: jnp.sqrt's values, with a finite derivative at a zero norm (meta-gradients through Lamb/LARS)
    return jax.tree.map(safe_sqrt, leaf_sums(jax.tree.map(lambda x: jnp.square(x.astype(jnp.float32)), tree)))


def leaf_means(tree: Any, method: str = "rows") -> Any:
    """Each leaf's mean, broadcast over that leaf's elements: :func:`leaf_sums` divided by the leaf's size
    (``broadcast_to(jnp.mean(x), x.shape)`` on an ordinary leaf), e.g. for an RMS (``sqrt(leaf_means(x * x))``)."""
    _check_method(method)

    def one(x):
        if isinstance(x, FlatParams):
            return _flat_leaf_sums(x, method, mean=True)
        return jnp.broadcast_to(jnp.mean(x), jnp.shape(x))

    return jax.tree.map(one, tree, is_leaf=is_flat)


def leaf_tree(tree: Any) -> Any:
    """``tree`` with every :class:`FlatParams` node replaced by the pytree of leaf views it holds.

    For blocks whose per-leaf *state* has another shape than the leaf (AdaFactor's factored row/column
    moments): build and update that state on ``leaf_tree(params)`` / ``leaf_tree(updates)`` and hand the result
    back with :func:`restore`. A buffer that is not an array (``optax.MaskedNode`` of another group) gives that
    object in place of each of its leaves.
    """

    def one(x):
        if not isinstance(x, FlatParams):
            return x
        leaves = [jax.lax.slice(x.buffers[s.buffer], (s.offset,), (s.offset + s.size,)).reshape(s.shape)
                  if hasattr(x.buffers[s.buffer], "shape") else x.buffers[s.buffer] for s in x.layout.leaves]
        return x.layout.treedef.unflatten(leaves)

    return jax.tree.map(one, tree, is_leaf=is_flat)


def buffer_tree(tree: Any) -> Any:
    """``tree`` with every :class:`FlatParams` node's buffers *shaped*: a buffer that holds a single leaf takes
    that leaf's shape (a free reshape), any other stays 1-D. The identity on ordinary pytrees.

    For blocks whose per-leaf state has another shape than the leaf but only for some leaves (AdaFactor's
    factored moments, rank >= 2): packed so that each such leaf has a buffer of its own (a fact of the fused
    optimizer's partition), the block runs its per-array formula on the shaped buffers, a whole buffer of
    small leaves at once, and hands its result back with :func:`from_buffer_tree`.
    """

    def one(x):
        if not isinstance(x, FlatParams):
            return x
        shaped = []
        for b, buf in enumerate(x.buffers):
            slots = x.layout.buffer_leaves(b)
            shaped.append(buf.reshape(slots[0].shape) if len(slots) == 1 and hasattr(buf, "shape") else buf)
        return FlatParams(tuple(shaped), x.layout)

    return jax.tree.map(one, tree, is_leaf=is_flat)


def from_buffer_tree(tree: Any) -> Any:
    """Inverse of :func:`buffer_tree`: every buffer of the FlatParams nodes of ``tree`` back to 1-D."""

    def one(x):
        if not isinstance(x, FlatParams):
            return x
        return FlatParams(tuple(jnp.ravel(b) if hasattr(b, "shape") else b for b in x.buffers), x.layout)

    return jax.tree.map(one, tree, is_leaf=is_flat)


def restore(template: Any, tree: Any) -> Any:
    """Inverse of :func:`leaf_tree`: ``tree`` packed back into the buffers of the FlatParams nodes of ``template``."""

    def one(t, x):
        if not isinstance(t, FlatParams):
            return x
        leaves = t.layout.treedef.flatten_up_to(x)
        buffers = tuple(
            _pack(spec, t.layout.buffer_leaves(b), [leaves[i] for i in spec.leaves], t.buffers[b].dtype)
            if hasattr(t.buffers[b], "shape") else t.buffers[b]
            for b, spec in enumerate(t.layout.buffers))
        return FlatParams(buffers, t.layout)

    return jax.tree.map(one, template, tree, is_leaf=is_flat)
