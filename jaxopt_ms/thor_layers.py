"""Layer registration for THOR: the statistics A and G of each dense / conv / embedding layer, in one
forward+backward.

A model marks its THOR layers by computing them with :func:`register_dense` / :func:`register_conv2d` /
:func:`register_embedding` (the layer's own arithmetic plus a tag), in a plain-JAX apply function or inside a Flax
or Equinox module. Outside :func:`value_grad_and_statistics` the tags cost nothing: they are the plain layer.
Inside it, each tag records the layer's input statistic ``A`` in the forward pass and, through a ``custom_vjp`` on
the layer output, the output-gradient statistic ``G`` in the backward pass, so one call returns the loss, the
gradients and::

    statistics = {'conv1.kernel': LayerStatistics(a=..., g=..., ...), 'fc1.kernel': ..., ...}

keyed by the dotted name of the kernel leaf (:func:`jaxopt_ms.param_names`). The kernel passed to a tag must be
the parameter leaf itself (not a cast, copy or transpose of it): that is how a tag finds its parameter.

Formulas (MindSpore 2.10 ``DenseThor`` / ``Conv2dThor``, GPU build; reference §3.14), with ``dout`` the gradient
of the loss ``loss_fn`` returns (the scaled batch-mean loss) w.r.t. the layer output before its bias:

* dense, ``x`` of shape ``(N, in)``: ``A = xᵀx / in`` (sic: not ``/N``), ``G = doutᵀdout / N``.
* conv2d: ``P`` = im2col patches of ``x`` with **'SAME' padding whatever the conv's padding** (MindSpore's
  ``ThorIm2Col(pad_mode='same')``), rows ordered ``(c_in, kh, kw)``; ``P̄`` = their mean over the batch,
  shape ``(c_in·kh·kw, Ho·Wo)``; ``A = P̄P̄ᵀ / (Ho·Wo)``. ``D̄`` = batch mean of ``dout``, shape
  ``(c_out, Ho'·Wo')`` (the conv's own output size); ``G = D̄D̄ᵀ / (Ho'·Wo')``. The normalisers ``Ho·Wo``
  and ``Ho'·Wo'`` are kept for the optimizer's damping.
* embedding (``EmbeddingThor``), ``ids`` of any shape, ``rows`` of them: ``A`` = the ``(vocab,)`` vector of row
  counts (a scatter-add: no one-hot of the vocabulary), ``G = doutᵀdout / rows`` with ``dout`` the ``(rows, dim)``
  gradient of the looked-up rows. ``row_sparse=True`` gives the table a :class:`jaxopt_ms.sparse.RowSparse`
  gradient.

Example (plain JAX)::

    def apply(params, x):
        h = register_conv2d(x, params['conv']['kernel'], params['conv']['bias'], padding='SAME')
        return register_dense(jax.nn.relu(h).reshape(len(x), -1), params['fc']['kernel'], params['fc']['bias'])

    loss, grads, stats = value_grad_and_statistics(lambda p, b: loss_of(apply(p, b[0]), b[1]), params, batch)
    updates, opt_state = opt.update(grads, opt_state, params, statistics=stats)

Example (Flax linen): call the tag in the module with its own parameters::

    class Dense(nn.Module):
        features: int
        @nn.compact
        def __call__(self, x):
            kernel = self.param('kernel', nn.initializers.lecun_normal(), (x.shape[-1], self.features))
            bias = self.param('bias', nn.initializers.zeros, (self.features,))
            return register_dense(x, kernel, bias)

    loss, grads, stats = value_grad_and_statistics(lambda p, b: loss_of(model.apply({'params': p}, b[0]), b[1]),
                                                   variables['params'], batch)
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms.names import param_names
from jaxopt_ms.sparse import RowSparse, gather_rows, valid_indices

__all__ = [
    "LayerStatistics",
    "register_conv2d",
    "register_dense",
    "register_embedding",
    "statistics_shapes",
    "value_grad_and_statistics",
]

_HIGHEST = jax.lax.Precision.HIGHEST


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["a", "g"],
    meta_fields=["kind", "kernel_layout", "a_normalizer", "g_normalizer"],
)
@dataclasses.dataclass(frozen=True)
class LayerStatistics:
    """One layer's THOR statistics.

    Attributes:
        a: input statistic, ``(d_in, d_in)``; conv: ``d_in = c_in·kh·kw`` ordered ``(c_in, kh, kw)``; embedding:
            the vector ``(vocab,)`` of row counts (how many looked-up ids name each row).
        g: output-gradient statistic, ``(d_out, d_out)`` (embedding: ``(dim, dim)``).
        kind: ``'dense'``, ``'conv2d'`` or ``'embedding'``.
        kernel_layout: how the kernel leaf is laid out: ``'io'`` (dense ``y = x @ kernel``), ``'hwio'`` or
            ``'oihw'`` (conv), ``'vd'`` (embedding table ``(vocab, dim)``).
        a_normalizer, g_normalizer: conv: the ``Ho·Wo`` that divided ``A`` and ``G`` (1 for dense).
    """

    a: jax.Array
    g: jax.Array
    kind: str
    kernel_layout: str
    a_normalizer: int = 1
    g_normalizer: int = 1


@dataclasses.dataclass
class _LayerRecord:
    leaf_index: int
    kind: str
    kernel_layout: str
    a_dim: int
    g_dim: int
    a_normalizer: int
    g_normalizer: int
    rows: int = 0  # embedding: number of looked-up ids

    @property
    def a_shape(self) -> tuple[int, ...]:
        return (self.a_dim,) if self.kind == "embedding" else (self.a_dim, self.a_dim)


class _Recorder:
    """Collects the tagged layers of one trace of the loss (discovery pass or statistics pass)."""

    def __init__(self, leaves: Sequence[Any], carriers: Sequence[jax.Array] | None, compute: Any,
                 deltas: dict[int, jax.Array] | None = None):
        self.leaves = leaves
        self.carriers = carriers
        self.compute = compute
        self.deltas = deltas  # row_sparse: per record index, the zero perturbation of the looked-up rows
        self.records: list[_LayerRecord] = []
        self.a_stats: list[jax.Array] = []
        self.lookups: dict[int, jax.Array] = {}  # record index -> flat ids

    def leaf_index(self, kernel: Any, tag: str) -> int:
        for i, leaf in enumerate(self.leaves):
            if leaf is kernel:
                if any(r.leaf_index == i for r in self.records):
                    raise ValueError(f"{tag}: this kernel is registered twice; a THOR layer must be used once per "
                                     "forward pass (shared weights are not supported).")
                return i
        raise ValueError(
            f"{tag}: the kernel is not a leaf of the params given to value_grad_and_statistics. Pass the "
            "parameter itself (not a cast, copy, reshape or transpose of it) to the tag."
        )


_LOCAL = threading.local()


def _active() -> _Recorder | None:
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


class _recording:
    def __init__(self, recorder: _Recorder):
        self.recorder = recorder

    def __enter__(self) -> _Recorder:
        if not hasattr(_LOCAL, "stack"):
            _LOCAL.stack = []
        _LOCAL.stack.append(self.recorder)
        return self.recorder

    def __exit__(self, *exc) -> None:
        _LOCAL.stack.pop()


def _when(flag: Any, fn: Callable[[], jax.Array], shape: tuple[int, ...]) -> jax.Array:
    """``fn()`` if ``flag`` else zeros; a Python ``True`` skips the ``lax.cond``."""
    if flag is True:
        return fn()
    return jax.lax.cond(flag, fn, lambda: jnp.zeros(shape, jnp.float32))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _output_tag(g_statistic: Callable, y: jax.Array, carrier: jax.Array, compute: jax.Array) -> jax.Array:
    del g_statistic, carrier, compute
    return y


def _output_tag_fwd(g_statistic, y, carrier, compute):
    del carrier
    return y, compute


def _output_tag_bwd(g_statistic, compute, dy):
    # The carrier's cotangent is the layer's G: the backward pass hands it out with the gradients.
    return dy, g_statistic(dy, compute), None


_output_tag.defvjp(_output_tag_fwd, _output_tag_bwd)


def _record(recorder: _Recorder, record: _LayerRecord, a_fn: Callable[[], jax.Array],
            g_fn: Callable[[jax.Array], jax.Array], y: jax.Array) -> jax.Array:
    index = len(recorder.records)
    recorder.records.append(record)
    if recorder.carriers is None:  # discovery pass: shapes only
        return y
    compute = recorder.compute
    recorder.a_stats.append(jax.lax.stop_gradient(_when(compute, a_fn, record.a_shape)))
    shape = (record.g_dim, record.g_dim)
    static = compute if isinstance(compute, bool) else None
    g_statistic = lambda dy, flag: _when(flag if static is None else static, lambda: g_fn(dy), shape)
    return _output_tag(g_statistic, y, recorder.carriers[index], jnp.asarray(compute))


def register_dense(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """A dense layer ``x @ kernel + bias`` that THOR preconditions (``kernel``: ``(in, out)``).

    ``x`` has shape ``(N, in)`` (MindSpore's ``DenseThor`` input). Returns the layer output ``(N, out)``.
    """
    y = jnp.matmul(x, kernel)
    recorder = _active()
    if recorder is not None:
        if x.ndim != 2 or kernel.ndim != 2:
            raise ValueError(f"register_dense: expected x (N, in) and kernel (in, out), got {x.shape} and "
                             f"{kernel.shape}.")
        d_in, d_out = kernel.shape
        record = _LayerRecord(recorder.leaf_index(kernel, "register_dense"), "dense", "io", d_in, d_out, 1, 1)

        def a_fn():
            xf = x.astype(jnp.float32)
            return jnp.matmul(xf.T, xf, precision=_HIGHEST) * np.float32(1.0 / d_in)

        def g_fn(dy):
            dy = dy.astype(jnp.float32)
            return jnp.matmul(dy.T, dy, precision=_HIGHEST) * np.float32(1.0 / dy.shape[0])

        y = _record(recorder, record, a_fn, g_fn, y)
    if bias is not None:
        y = y + bias
    return y


_CONV_LAYOUTS = {"NHWC": ("NHWC", "HWIO", "NHWC"), "NCHW": ("NCHW", "OIHW", "NCHW")}


def register_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides: int | tuple[int, int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    data_format: str = "NHWC",
) -> jax.Array:
    """A 2-D convolution (``lax.conv_general_dilated``) plus bias that THOR preconditions.

    Args:
        x: ``(N, H, W, C)`` for ``data_format='NHWC'`` (Flax; kernel ``(kh, kw, c_in, c_out)``) or
            ``(N, C, H, W)`` for ``'NCHW'`` (MindSpore; kernel ``(c_out, c_in, kh, kw)``).
        kernel, bias: the parameters (bias ``(c_out,)``, optional).
        strides: int or pair. padding: ``'SAME'``, ``'VALID'`` or explicit pairs, as in ``lax``.

    No dilation and one group, as MindSpore's THOR conversion. Returns the conv output (same format as ``x``).
    """
    if data_format not in _CONV_LAYOUTS:
        raise ValueError(f"register_conv2d: data_format must be 'NHWC' or 'NCHW', got {data_format!r}.")
    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    dimension_numbers = _CONV_LAYOUTS[data_format]
    y = jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=dimension_numbers)
    nhwc = data_format == "NHWC"
    recorder = _active()
    if recorder is not None:
        if nhwc:
            kh, kw, c_in, c_out = kernel.shape
        else:
            c_out, c_in, kh, kw = kernel.shape
        x_nchw = jnp.transpose(x, (0, 3, 1, 2)) if nhwc else x
        same_h = -(-x_nchw.shape[2] // strides[0])
        same_w = -(-x_nchw.shape[3] // strides[1])
        out_hw = (y.shape[1] * y.shape[2]) if nhwc else (y.shape[2] * y.shape[3])
        record = _LayerRecord(recorder.leaf_index(kernel, "register_conv2d"), "conv2d", "hwio" if nhwc else "oihw",
                              c_in * kh * kw, c_out, same_h * same_w, out_hw)

        def a_fn():
            # MindSpore's GPU ThorIm2Col always pads 'same', whatever the conv's own padding.
            patches = jax.lax.conv_general_dilated_patches(x_nchw.astype(jnp.float32), (kh, kw), strides, "SAME",
                                                           precision=_HIGHEST)
            mean = jnp.mean(patches, axis=0).reshape(c_in * kh * kw, -1)
            return jnp.matmul(mean, mean.T, precision=_HIGHEST) * np.float32(1.0 / record.a_normalizer)

        def g_fn(dy):
            dy = dy.astype(jnp.float32)
            mean = jnp.mean(jnp.moveaxis(dy, 3, 1) if nhwc else dy, axis=0).reshape(c_out, -1)
            return jnp.matmul(mean, mean.T, precision=_HIGHEST) * np.float32(1.0 / record.g_normalizer)

        y = _record(recorder, record, a_fn, g_fn, y)
    if bias is not None:
        y = y + (bias if nhwc else bias[:, None, None])
    return y


def register_embedding(ids: jax.Array, table: jax.Array, *, lookup: bool = False) -> jax.Array:
    """An embedding lookup ``table[ids]`` that THOR preconditions (MindSpore's ``EmbeddingThor``).

    Args:
        ids: integer ids of any shape; an id outside ``[0, vocab)`` reads a row of zeros and is not counted.
        table: the ``(vocab, dim)`` embedding table (the parameter leaf itself).
        lookup: follow ``EmbeddingLookupThor`` (``nn.EmbeddingLookup``'s THOR layer, device path) instead:
            ``G`` divided by ``ids.shape[0]`` rather than by the number of ids, and ``A`` and ``G`` rounded to
            float16, as that layer stores them.

    Returns:
        The looked-up rows, shape ``ids.shape + (dim,)``.

    Statistics (MindSpore 2.10 ``nn/layer/thor_layer.py``, ``EmbeddingThor.construct`` / ``save_gradient``):
    ``A`` = the row counts, ``A[v]`` = how many of the ids equal ``v`` (MindSpore sums a one-hot of the
    vocabulary; here a scatter-add, so the cost grows with the number of ids, not with ``vocab``); ``G =
    doutᵀdout / rows`` with ``dout`` the ``(rows, dim)`` gradient of the looked-up rows, ``rows`` = the number of
    ids. Inside ``value_grad_and_statistics(..., row_sparse=True)`` the table's gradient is a
    :class:`jaxopt_ms.sparse.RowSparse` of the looked-up rows (the dense table gradient is never formed).
    """
    ids = jnp.asarray(ids)
    if table.ndim != 2:
        raise ValueError(f"register_embedding: expected a table (vocab, dim), got shape {table.shape}.")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"register_embedding: 'ids' must be integers, got dtype {ids.dtype}.")
    vocab, dim = table.shape
    flat = valid_indices(ids.reshape(-1), vocab)
    rows = gather_rows(table, flat)
    recorder = _active()
    if recorder is not None:
        index = len(recorder.records)
        record = _LayerRecord(recorder.leaf_index(table, "register_embedding"), "embedding", "vd", vocab, dim, 1, 1,
                              rows=flat.shape[0])
        if recorder.deltas is not None and index in recorder.deltas:
            rows = rows + recorder.deltas[index]
            recorder.lookups[index] = flat
        g_rows = (ids.shape[0] if ids.ndim else 1) if lookup else flat.shape[0]

        def a_fn():
            counts = jnp.zeros(vocab, jnp.float32).at[flat].add(np.float32(1.0), mode="drop")
            return counts.astype(jnp.float16).astype(jnp.float32) if lookup else counts

        def g_fn(dy):
            dy = dy.astype(jnp.float32).reshape(-1, dim)
            product = jnp.matmul(dy.T, dy, precision=_HIGHEST)
            if lookup:  # thor_layer.py EmbeddingLookupThor.save_gradient: float16 normaliser and result
                scale = np.float32(np.float16(1.0) / np.float16(g_rows))
                return (product * scale).astype(jnp.float16).astype(jnp.float32)
            return product * np.float32(1.0 / g_rows)

        rows = _record(recorder, record, a_fn, g_fn, rows)
    return rows.reshape(ids.shape + (dim,))


def _discover(loss_fn: Callable, params: Any, args: tuple, kwargs: dict) -> list[_LayerRecord]:
    leaves, treedef = jax.tree.flatten(params)
    found: list[_LayerRecord] = []

    def trace(leaves):
        with _recording(_Recorder(leaves, None, False)) as recorder:
            loss_fn(jax.tree.unflatten(treedef, leaves), *args, **kwargs)
        found.extend(recorder.records)
        return 0

    jax.eval_shape(trace, leaves)
    return found


def value_grad_and_statistics(
    loss_fn: Callable[..., Any],
    params: Any,
    *args: Any,
    has_aux: bool = False,
    compute_statistics: bool | jax.Array = True,
    row_sparse: bool = False,
    **kwargs: Any,
) -> tuple[Any, Any, dict[str, LayerStatistics]]:
    """``loss_fn(params, *args, **kwargs)``, its gradient w.r.t. ``params`` and the THOR statistics.

    One forward and one backward pass (plus a shape-only trace to find the tagged layers).

    Args:
        loss_fn: returns a scalar loss (or ``(loss, aux)`` with ``has_aux``); its model computes THOR layers
            with :func:`register_dense` / :func:`register_conv2d` / :func:`register_embedding` on leaves of
            ``params``.
        params: the pytree differentiated.
        compute_statistics: ``False`` (or a traced false) skips the A/G arithmetic (zeros are returned), e.g. on
            the steps where THOR reuses its stale inverses (:func:`jaxopt_ms.thor_refresh_due`).
        row_sparse: give each table registered with :func:`register_embedding` a
            :class:`jaxopt_ms.sparse.RowSparse` gradient (its looked-up ids and the gradients of the looked-up
            rows; MindSpore's sparse lookup path), never forming the dense table gradient. Such a table must
            reach the loss only through its ``register_embedding`` call (other uses get no gradient).

    Returns:
        ``(loss, grads, statistics)`` (``((loss, aux), grads, statistics)`` with ``has_aux``); ``statistics`` maps
        each tagged kernel's dotted name to its :class:`LayerStatistics`.
    """
    records = _discover(loss_fn, params, args, kwargs)
    leaves, treedef = jax.tree.flatten(params)
    names = jax.tree.leaves(param_names(params))  # an nnx Variable named by its place, as everywhere
    carriers = [jnp.zeros((r.g_dim, r.g_dim), jnp.float32) for r in records]
    if not isinstance(compute_statistics, bool):
        compute_statistics = jnp.asarray(compute_statistics, bool)
    sparse_records = {i: r for i, r in enumerate(records) if r.kind == "embedding"} if row_sparse else {}
    tables = {r.leaf_index for r in sparse_records.values()}
    slots = [i for i in range(len(leaves)) if i not in tables]
    deltas = {i: jnp.zeros((r.rows, r.g_dim), leaves[r.leaf_index].dtype) for i, r in sparse_records.items()}

    def wrapped(diff_leaves, carriers, deltas):
        full = list(leaves)  # the row-sparse tables stay constants: only their rows' perturbations are differentiated
        for i, leaf in zip(slots, diff_leaves):
            full[i] = leaf
        with _recording(_Recorder(full, carriers, compute_statistics, deltas if row_sparse else None)) as recorder:
            out = loss_fn(jax.tree.unflatten(treedef, full), *args, **kwargs)
        loss = out[0] if has_aux else out
        return loss, (out, recorder.a_stats, recorder.lookups)

    loss, vjp, (out, a_stats, lookups) = jax.vjp(wrapped, [leaves[i] for i in slots], carriers, deltas, has_aux=True)
    diff_grads, g_stats, row_grads = vjp(jnp.ones_like(loss))
    grad_leaves: list[Any] = [None] * len(leaves)
    for i, g in zip(slots, diff_grads):
        grad_leaves[i] = g
    for k, r in sparse_records.items():
        grad_leaves[r.leaf_index] = RowSparse(lookups[k], row_grads[k], leaves[r.leaf_index].shape)
    statistics = {
        names[r.leaf_index]: LayerStatistics(a, g, r.kind, r.kernel_layout, r.a_normalizer, r.g_normalizer)
        for r, a, g in zip(records, a_stats, g_stats)
    }
    return out, jax.tree.unflatten(treedef, grad_leaves), statistics


def statistics_shapes(loss_fn: Callable[..., Any], params: Any, *args: Any, has_aux: bool = False,
                      **kwargs: Any) -> dict[str, LayerStatistics]:
    """The statistics' shapes (``jax.ShapeDtypeStruct`` leaves), e.g. for ``thor(..., layers=...)``."""
    fn = lambda p: value_grad_and_statistics(loss_fn, p, *args, has_aux=has_aux, **kwargs)[2]
    return jax.eval_shape(fn, params)
