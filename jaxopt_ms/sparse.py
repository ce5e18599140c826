"""Row-sparse gradients: MindSpore's ``RowTensor`` as a JAX pytree (reference §2.8).

A gradient leaf may be a :class:`RowSparse` instead of a dense array: the rows ``indices`` of a table of shape
``dense_shape`` (rank >= 2) with ``values[i]`` the gradient of row ``indices[i]``. Duplicate indices are summed
(MindSpore's deduplicated semantics: ``Unique`` + ``UnsortedSegmentSum``, and every ``FusedSparse*`` kernel).

``lazy_adam``, ``ftrl`` and ``proximal_adagrad`` then update only the touched rows, at a cost that grows with the
number of touched rows, not with the table; ``adam`` follows MindSpore's non-lazy sparse Adam (= dense Adam on the
densified gradient). The other optimizers raise a ``TypeError`` naming the optimizer and the leaf, as MindSpore
cannot run them on a ``RowTensor`` either (densify first with :func:`densify` if that is what you want).

Fixed shapes under ``jax.jit``: the number of entries is static, so a batch with fewer rows is padded with the
**fill index** ``dense_shape[0]`` (one past the last row, :attr:`RowSparse.fill_index`). An entry whose index is
outside ``[0, dense_shape[0])`` means "no row": its value is ignored everywhere (scatter with ``mode='drop'``,
gather with a zero fill). :func:`coalesce` returns the unique rows sorted, padded with the fill index.

Inside Optax chains. A RowSparse's pytree children are its ``values`` and its ``indices``, the latter held as an
array of a dedicated dtype (``key<RowSparse.indices: ...>``, a JAX extended dtype that accepts no arithmetic)
and read back as ``int32`` through :attr:`RowSparse.indices`. So an Optax transform that maps arithmetic over
every leaf (``optax.global_norm``, ``clip_by_global_norm``, ``scale``, ``add_noise``, ...) cannot silently treat
row numbers as gradient entries: it raises a ``TypeError`` naming ``RowSparse.indices`` and
:func:`on_values`, the fix. ``on_values(transform)`` runs ``transform`` on the deduplicated values (the norm of a
RowSparse is the norm of its densified sum, duplicates included), and :func:`global_norm` is ``optax.global_norm``
with that rule. Transforms that only select or copy leaves (``apply_if_finite``, ``MultiSteps``, ``masked``,
``zero_nans``) work on a RowSparse as they are.

Getting such a gradient from an embedding lookup without ever materialising the dense table gradient::

    def loss_fn(params, ids, labels):
        rows = sparse.embedding_lookup(params['emb'], ids)       # (batch, dim)
        return jnp.mean((rows @ params['w'] - labels) ** 2)

    loss, grads = sparse.value_and_sparse_grad(loss_fn)(params, ids, labels)
    # grads['emb'] is a RowSparse (ids, row cotangents); grads['w'] is dense
    updates, state = opt.update(grads, state, params)          # opt = jaxopt_ms.lazy_adam(...)
    params = optax.apply_updates(params, updates)              # scatter-adds only the touched rows
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "RowSparse",
    "coalesce",
    "densify",
    "embedding_lookup",
    "gather_rows",
    "global_norm",
    "is_row_sparse",
    "map_values",
    "on_values",
    "reject_row_sparse",
    "row_mask",
    "scatter_add",
    "set_rows",
    "update_rows",
    "valid_indices",
    "value_and_sparse_grad",
]


def _not_random(*args: Any, **kwargs: Any):
    raise TypeError("RowSparse indices are row numbers, not random keys.")


# An extended dtype for the row numbers: it accepts no arithmetic, so an Optax transform mapped over a gradient
# pytree raises on it (its name says what to do) instead of scaling or squaring row numbers as if they were values.
_INDEX_DTYPE_TAG = "RowSparse.indices: apply this Optax transform through jaxopt_ms.sparse.on_values"
_INDEX_IMPL = jax.extend.random.define_prng_impl(
    key_shape=(1,), seed=_not_random, split=_not_random, random_bits=_not_random, fold_in=_not_random,
    name="RowSparse.indices", tag=_INDEX_DTYPE_TAG)


_INDEX_DTYPE_NAME = f"key<{_INDEX_DTYPE_TAG}>"


def _is_index_array(x: Any) -> bool:
    return str(getattr(x, "dtype", "")) == _INDEX_DTYPE_NAME


def _to_index_array(indices: Any) -> Any:
    """int row numbers -> the opaque index array (an int32 bit pattern per entry, negatives kept)."""
    if _is_index_array(indices):
        return indices
    indices = jnp.asarray(indices)
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"RowSparse: 'indices' must be integers, but got dtype {indices.dtype}.")
    bits = jax.lax.bitcast_convert_type(indices.astype(jnp.int32), jnp.uint32)
    return jax.random.wrap_key_data(bits[..., None], impl=_INDEX_IMPL)


def _from_index_array(keys: Any) -> Any:
    if not _is_index_array(keys):
        return keys  # a placeholder of jax's pytree internals
    return jax.lax.bitcast_convert_type(jax.random.key_data(keys)[..., 0], jnp.int32)


class RowSparse:
    """Rows ``indices`` of a dense ``dense_shape`` tensor, with values ``values`` (MindSpore's ``RowTensor``).

    A pytree node: ``indices`` (int, shape ``(n,)``; a child of an arithmetic-free dtype, read as ``int32``, see
    the module docstring) and ``values`` (shape ``(n, *dense_shape[1:])``) are its children, ``dense_shape``
    (a tuple of ints, rank >= 2) is static. Duplicate indices mean a sum; an index
    outside ``[0, dense_shape[0])`` (conventionally :attr:`fill_index` ``= dense_shape[0]``) is padding.

    ``params + rs`` (and ``optax.apply_updates``) scatter-adds the rows into the dense array; ``rs + rs``
    concatenates the entries; ``scalar * rs`` scales the values.
    """

    __slots__ = ("_index_array", "values", "dense_shape")
    __array_ufunc__ = None  # numpy defers `ndarray + RowSparse` to __radd__

    def __init__(self, indices: Any, values: Any, dense_shape: Sequence[int]):
        self._index_array = _to_index_array(indices)
        self.values = values
        self.dense_shape = tuple(int(d) for d in dense_shape)
        if len(self.dense_shape) < 2:
            raise ValueError(f"RowSparse: 'dense_shape' must have rank >= 2, but got {self.dense_shape}.")
        i_shape, v_shape = getattr(indices, "shape", None), getattr(values, "shape", None)
        if i_shape is not None and v_shape is not None:  # pytree internals unflatten with placeholders
            if len(i_shape) != 1 or tuple(v_shape) != (i_shape[0], *self.dense_shape[1:]):
                raise ValueError(
                    f"RowSparse: 'indices' must have shape (n,) and 'values' shape (n, *dense_shape[1:]) = "
                    f"(n, {', '.join(map(str, self.dense_shape[1:]))}), but got indices {tuple(i_shape)} and "
                    f"values {tuple(v_shape)}."
                )

    @property
    def indices(self) -> jax.Array:
        """The row numbers, ``int32`` of shape ``(n,)``."""
        return _from_index_array(self._index_array)

    # array-like metadata, so name filters and shape rules see the dense leaf this gradient stands for
    @property
    def shape(self) -> tuple[int, ...]:
        return self.dense_shape

    @property
    def ndim(self) -> int:
        return len(self.dense_shape)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def fill_index(self) -> int:
        """The padding index, one past the last row: ``dense_shape[0]``."""
        return self.dense_shape[0]

    def astype(self, dtype) -> RowSparse:
        return RowSparse(self.indices, self.values.astype(dtype), self.dense_shape)

    def __repr__(self) -> str:
        return f"RowSparse(indices={self.indices!r}, values={self.values!r}, dense_shape={self.dense_shape})"

    def __mul__(self, scalar: Any) -> RowSparse:
        if isinstance(scalar, RowSparse) or np.ndim(scalar) != 0:
            return NotImplemented
        return RowSparse(self._index_array, self.values * scalar, self.dense_shape)

    __rmul__ = __mul__

    def __neg__(self) -> RowSparse:
        return RowSparse(self._index_array, -self.values, self.dense_shape)

    def __add__(self, other: Any) -> Any:
        if isinstance(other, RowSparse):
            if other.dense_shape != self.dense_shape:
                raise ValueError(f"RowSparse: cannot add dense shapes {self.dense_shape} and {other.dense_shape}.")
            return RowSparse(jnp.concatenate([self._index_array, other._index_array]),
                             jnp.concatenate([self.values, other.values]), self.dense_shape)
        return scatter_add(other, self)

    def __radd__(self, other: Any) -> Any:
        return scatter_add(other, self)


def _flatten_with_keys(rs: RowSparse):
    return ((jax.tree_util.GetAttrKey("indices"), rs._index_array),
            (jax.tree_util.GetAttrKey("values"), rs.values)), rs.dense_shape


def _unflatten(dense_shape, children) -> RowSparse:
    obj = object.__new__(RowSparse)  # no validation: jax unflattens with placeholders (None, object(), specs)
    obj._index_array, obj.values = children
    obj.dense_shape = dense_shape
    return obj


jax.tree_util.register_pytree_with_keys(
    RowSparse, _flatten_with_keys, _unflatten, lambda rs: ((rs._index_array, rs.values), rs.dense_shape)
)


def is_row_sparse(x: Any) -> bool:
    """``is_leaf`` predicate: treats a :class:`RowSparse` as one leaf in ``jax.tree.map``."""
    return isinstance(x, RowSparse)


def map_values(fn: Callable[[jax.Array], jax.Array], g: Any) -> Any:
    """``fn(g)`` for a dense leaf; ``fn`` applied to the values of a :class:`RowSparse` (same rows)."""
    if isinstance(g, RowSparse):
        return RowSparse(g._index_array, fn(g.values), g.dense_shape)
    return fn(g)


def row_mask(g: RowSparse) -> jax.Array:
    """Boolean ``(n,)``: which entries name a real row (not padding)."""
    return (g.indices >= 0) & (g.indices < g.dense_shape[0])


def valid_indices(indices: jax.Array, rows: int) -> jax.Array:
    """``indices`` with every padding entry (outside ``[0, rows)``) replaced by the fill index ``rows``.

    Needed because JAX indexing wraps negative indices Python-style even with ``mode='drop'``/``'fill'``.
    """
    indices = jnp.asarray(indices)
    return jnp.where((indices >= 0) & (indices < rows), indices, rows)


def gather_rows(table: jax.Array, indices: jax.Array) -> jax.Array:
    """``table[indices]`` with zeros for padding indices (outside ``[0, rows)``)."""
    table = jnp.asarray(table)
    return table.at[valid_indices(indices, table.shape[0])].get(mode="fill", fill_value=0)


def scatter_add(dense: Any, g: RowSparse) -> jax.Array:
    """``dense`` with ``g``'s values added to its rows (duplicates accumulate, padding is dropped)."""
    dense = jnp.asarray(dense)
    if tuple(dense.shape) != g.dense_shape:
        raise ValueError(f"RowSparse: cannot add dense shape {g.dense_shape} to an array of shape {dense.shape}.")
    return dense.at[valid_indices(g.indices, dense.shape[0])].add(g.values.astype(dense.dtype), mode="drop")


def set_rows(dense: jax.Array, rows: jax.Array, values: jax.Array) -> jax.Array:
    """``dense`` with the rows ``rows`` replaced by ``values``; ``rows`` unique and sorted, as :func:`coalesce`
    returns them (padding entries are dropped)."""
    return dense.at[valid_indices(rows, dense.shape[0])].set(
        values.astype(dense.dtype), mode="drop", indices_are_sorted=True, unique_indices=True)


def update_rows(rule: Callable[..., tuple], g: RowSparse, param: jax.Array, *slots: jax.Array) -> tuple:
    """Applies an element-wise optimizer rule to the touched rows only (MindSpore's lazy sparse kernels).

    ``rule(g_rows, p_rows, *slot_rows) -> (new_p_rows, *new_slot_rows)`` is the dense path's own function,
    evaluated on the deduplicated rows gathered from ``param`` and each state ``slot``; the new slot rows are
    scattered back. Cost: the touched rows, not the table.

    Returns:
        ``(delta, *new_slots)`` where ``delta`` is a :class:`RowSparse` of ``new_p_rows - p_rows`` (zero on
        padding entries), to be added to ``param`` (``optax.apply_updates`` does).
    """
    g = coalesce(g)
    rows = g.indices
    p_rows = gather_rows(param, rows)
    new_p_rows, *new_slot_rows = rule(g.values, p_rows, *(gather_rows(s, rows) for s in slots))
    keep = row_mask(g).reshape((-1,) + (1,) * (p_rows.ndim - 1))
    delta = jnp.where(keep, new_p_rows - p_rows, jnp.zeros_like(p_rows)).astype(param.dtype)
    return (RowSparse(rows, delta, g.dense_shape),
            *(set_rows(s, rows, r) for s, r in zip(slots, new_slot_rows)))


def densify(g: Any) -> Any:
    """The dense array a :class:`RowSparse` stands for (duplicates summed); other leaves are returned as they are.

    Works on a whole pytree too: ``densify(grads)`` densifies every :class:`RowSparse` leaf.
    """
    return jax.tree.map(
        lambda x: scatter_add(jnp.zeros(x.dense_shape, x.values.dtype), x) if isinstance(x, RowSparse) else x,
        g, is_leaf=is_row_sparse,
    )


def coalesce(g: RowSparse) -> RowSparse:
    """Deduplicates: the unique rows, sorted, each with the sum of its values (MindSpore's ``Unique`` +
    ``UnsortedSegmentSum``).

    The result has as many entries as ``g`` (fixed shape under jit); the entries past the unique rows carry the
    fill index ``dense_shape[0]`` and zero values. Cost ``O(n log n)`` in the number of entries ``n``.
    """
    rows = g.dense_shape[0]
    idx = valid_indices(jnp.asarray(g.indices).astype(jnp.int32), rows)
    n = idx.shape[0]
    unique, inverse = jnp.unique(idx, size=n, fill_value=rows, return_inverse=True)
    values = jax.ops.segment_sum(g.values, inverse.reshape(-1), num_segments=n)
    keep = (unique < rows).reshape((n,) + (1,) * (values.ndim - 1))
    return RowSparse(unique, jnp.where(keep, values, jnp.zeros_like(values)), g.dense_shape)


def global_norm(tree: Any) -> jax.Array:
    """``optax.global_norm`` for a gradient pytree that may hold :class:`RowSparse` leaves: a RowSparse counts
    as its densified sum (duplicate rows summed first), its indices not at all. ``sqrt(sum_leaves sum(g**2))``."""
    leaves = [coalesce(x).values if isinstance(x, RowSparse) else x
              for x in jax.tree.leaves(tree, is_leaf=is_row_sparse)]
    return optax.tree.norm(leaves)


def on_values(transform: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``transform`` applied to a gradient pytree whose :class:`RowSparse` leaves it sees as their values.

    Each RowSparse is deduplicated first (:func:`coalesce`: unique rows, each with the sum of its entries, zero
    padding), so that element-wise rules and norms over its values are those of its densified sum:
    ``on_values(optax.clip_by_global_norm(1.0))`` clips by the dense gradient's norm, ``on_values(optax.scale(s))``
    scales, ``on_values(optax.add_noise(...))`` adds noise to the touched rows. The result is a RowSparse of the
    same unique rows. Dense leaves pass through as they are. ``params`` (if given) reach ``transform`` as the
    touched rows (``param[indices]``, zeros for padding).

    For transforms whose state does not follow the parameters' shapes (norm clipping, scaling, schedules, noise,
    ``apply_if_finite``): the shape of a RowSparse's values is not known at ``init``, so a transform with
    per-parameter state (``optax.trace``) fails on its first sparse update; put it after the sparse optimizer.
    """
    transform = optax.with_extra_args_support(transform)

    def init_fn(params):
        return transform.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        leaves, treedef = jax.tree.flatten(updates, is_leaf=is_row_sparse)
        leaves = [coalesce(x) if isinstance(x, RowSparse) else x for x in leaves]
        seen = treedef.unflatten([x.values if isinstance(x, RowSparse) else x for x in leaves])
        if params is not None:
            p_leaves = treedef.flatten_up_to(params)
            params = treedef.unflatten([gather_rows(p, x.indices) if isinstance(x, RowSparse) else p
                                        for p, x in zip(p_leaves, leaves)])
        new, state = transform.update(seen, state, params, **extra_args)
        new_leaves = treedef.flatten_up_to(new)
        out = [RowSparse(x._index_array, v, x.dense_shape) if isinstance(x, RowSparse) else v
               for x, v in zip(leaves, new_leaves)]
        return treedef.unflatten(out), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def reject_row_sparse(opt_name: str) -> optax.GradientTransformation:
    """An identity block that raises ``TypeError`` if a gradient leaf is a :class:`RowSparse`.

    For the optimizers MindSpore cannot run on a ``RowTensor`` (reference §2.8): SGD, Momentum, Adagrad, RMSProp,
    AdamWeightDecay, AdamOffload, Lamb, AdaFactor. Raised at trace time, naming the optimizer and the leaf.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        from jaxopt_ms.names import path_name

        for path, leaf in jax.tree_util.tree_flatten_with_path(updates, is_leaf=is_row_sparse)[0]:
            if isinstance(leaf, RowSparse):
                raise TypeError(
                    f"For '{opt_name}', the gradient of '{path_name(path)}' is a RowSparse (dense shape "
                    f"{leaf.dense_shape}), but '{opt_name}' has no sparse path (as in MindSpore). Use lazy_adam, "
                    f"adam, ftrl or proximal_adagrad, or pass jaxopt_ms.sparse.densify(grads)."
                )
        return updates, state

    return optax.GradientTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------------------------------------------
# Embedding lookups with row-sparse gradients


class _Recorder(threading.local):
    def __init__(self) -> None:
        self.active: list[dict] = []


_RECORDER = _Recorder()


@contextlib.contextmanager
def _recording(ctx: dict):
    _RECORDER.active.append(ctx)
    try:
        yield ctx
    finally:
        _RECORDER.active.pop()


def embedding_lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    """``table[ids]``: rows of an embedding table, shape ``ids.shape + table.shape[1:]``.

    Ids outside ``[0, rows)`` (padding, e.g. the fill index ``rows``) read a row of zeros and get no gradient.
    Plain ``jax.grad`` gives the table a dense gradient; inside :func:`value_and_sparse_grad` the gradient of a
    table read only through this function is a :class:`RowSparse` of its looked-up rows.
    """
    ids = jnp.asarray(ids)
    ctx = _RECORDER.active[-1] if _RECORDER.active else None
    if ctx is not None:
        slot = next((i for i, leaf in enumerate(ctx["leaves"]) if leaf is table), None)
        if slot is not None:
            return ctx["lookup"](slot, table, ids)
    return gather_rows(table, ids.reshape(-1)).reshape(ids.shape + table.shape[1:])


def value_and_sparse_grad(fun: Callable[..., Any], *, has_aux: bool = False) -> Callable[..., Any]:
    """Like ``jax.value_and_grad(fun)`` (w.r.t. the first argument, a pytree of parameters), but every parameter
    leaf read through :func:`embedding_lookup` gets a :class:`RowSparse` gradient: its looked-up ids and the
    cotangents of the looked-up rows. The dense gradient of such a table is never formed.

    How: a shape-only trace (``jax.eval_shape``) finds which leaves are looked up and the shapes of the lookups;
    then ``fun`` is differentiated with respect to the dense leaves and to a zero perturbation of each lookup's
    rows (``rows = table[ids] + delta``, the table held constant), whose cotangent is the row gradient.

    A table must be passed to :func:`embedding_lookup` as the very leaf of ``params`` (not a transformed copy)
    and must not be used otherwise in ``fun`` (such other uses would get no gradient).

    Returns:
        A function ``(params, *args) -> (value, grads)`` (``((value, aux), grads)`` with ``has_aux``).
    """

    def wrapped(params: Any, *args: Any, **kwargs: Any):
        leaves, treedef = jax.tree.flatten(params)

        # 1. shapes only: which leaves are tables, in which order they are looked up, with which ids shape
        found: list[tuple[int, tuple[int, ...]]] = []

        def record(slot, table, ids):
            found.append((slot, ids.shape))
            return gather_rows(table, ids.reshape(-1)).reshape(ids.shape + table.shape[1:])

        def probe(leaves_):
            with _recording({"leaves": leaves_, "lookup": record}):
                return fun(treedef.unflatten(leaves_), *args, **kwargs)

        jax.eval_shape(probe, leaves)
        tables = sorted({slot for slot, _ in found})
        dense_slots = [i for i in range(len(leaves)) if i not in tables]
        deltas = [jnp.zeros(shape + leaves[slot].shape[1:], leaves[slot].dtype) for slot, shape in found]

        # 2. differentiate w.r.t. the dense leaves and the row perturbations
        def inner(dense_leaves, deltas_):
            full = list(leaves)
            for i, leaf in zip(dense_slots, dense_leaves):
                full[i] = leaf
            seen: list[jax.Array] = []

            def lookup(slot, table, ids):
                k = len(seen)
                if k >= len(found) or found[k][0] != slot:
                    raise RuntimeError("value_and_sparse_grad: 'fun' looked up its tables in a different order on "
                                       "its second trace; the lookups must not depend on values.")
                seen.append(ids.reshape(-1))
                rows = gather_rows(table, ids.reshape(-1))  # a constant here: only `delta` is differentiated
                return rows.reshape(ids.shape + table.shape[1:]) + deltas_[k]

            with _recording({"leaves": full, "lookup": lookup}):
                out = fun(treedef.unflatten(full), *args, **kwargs)
            value, aux = out if has_aux else (out, None)
            return value, (aux, seen)

        (value, (aux, ids)), (dense_grads, row_grads) = jax.value_and_grad(inner, argnums=(0, 1), has_aux=True)(
            [leaves[i] for i in dense_slots], deltas)

        grads: list[Any] = [None] * len(leaves)
        for i, g in zip(dense_slots, dense_grads):
            grads[i] = g
        for slot in tables:
            ks = [k for k, (s, _) in enumerate(found) if s == slot]
            table = leaves[slot]
            grads[slot] = RowSparse(
                jnp.concatenate([ids[k].astype(jnp.int32) for k in ks]),
                jnp.concatenate([row_grads[k].reshape((-1,) + table.shape[1:]) for k in ks]),
                table.shape,
            )
        grads = treedef.unflatten(grads)
        return ((value, aux) if has_aux else value), grads

    return wrapped
