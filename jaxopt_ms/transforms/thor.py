"""THOR's preconditioner (MindSpore 2.10 ``ThorGpu``, reference §3.14), for gradients already unscaled.

With ``lam = damping(k)`` (``k``: this block's own update counter, MindSpore's ``cov_step``), on refresh steps
(``k % frequency == 0``) each registered layer's inverses are recomputed from its statistics
(:mod:`jaxopt_ms.thor_layers`) and stored; the other steps reuse the stored (stale) ones::

    Gs   = G * f32(1/loss_scale²) * f32(batch_size²)         # undo the batch mean and the loss scale
    dense: Ainv = inv(A + sqrt(lam) I);          Ginv = inv(Gs + sqrt(lam) I)
    conv:  Ainv = inv(A + sqrt(lam/a_n) I) * f;  Ginv = inv(Gs + sqrt(lam/g_n) I) * f,   f = sqrt(1/a_n)
    inv(M): 128x128 diagonal blocks only (the last one padded with identity), each through its Cholesky
            factor, M = L Lᵀ, inverse = (L⁻¹)ᵀ L⁻¹  (ops CholeskyTrsm(split_dim=128) + BatchMatMul)
    g2 = Ginv @ g.reshape(out, -1) @ Ainv (block-diagonal products, op UpdateThorGradient)

Embedding tables (``A``: the row counts, a vector; ``G``: ``(dim, dim)``; ``ThorGpu._get_ainv_ginv_list``,
MindSpore 2.10 ``nn/optim/thor.py`` lines 525-531, and ``construct`` lines 593-600 / 617-623)::

    Ainv = 1 / (A * f32(1/batch_size) + sqrt(lam))              # a vector: the counts over the THOR batch_size
    Ginv = L⁻¹ @ L⁻¹,   Gs + sqrt(lam) I = L Lᵀ                 # sic: not (L⁻¹)ᵀ L⁻¹; one whole Cholesky, no blocks
    g2 = (Ainv[:, None] * g) @ Ginv

(``CholeskyTrsm()`` with ``split_dim=0`` returns ``L⁻¹``; the dense rule's ``BatchMatMul(transpose_a=True)``
makes ``(L⁻¹)ᵀL⁻¹``, the embedding rule's plain ``MatMul`` makes ``L⁻¹L⁻¹``, which is neither symmetric nor the
inverse.) A :class:`~jaxopt_ms.sparse.RowSparse` table gradient is preconditioned on its looked-up rows and
returned dense, as the momentum that follows updates the whole table.

``a_n``, ``g_n``: the conv's ``Ho·Wo`` normalisers. Leaves selected by ``layer_norm_filter`` (MindSpore:
parameters of ``nn.LayerNorm`` cells) get, every step, ``g2 = g / (g²/batch_size + sqrt(lam))``; all other
leaves (biases, norms, unregistered layers) pass through. All blocks of all layers are inverted in one batched
Cholesky.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms.names import param_names
from jaxopt_ms.sparse import RowSparse, gather_rows, is_row_sparse, scatter_add
from jaxopt_ms.thor_layers import LayerStatistics
from jaxopt_ms.transforms.learning_rate import LearningRate, resolve_learning_rate

__all__ = [
    "ScaleByThorState",
    "block_diagonal_inverse",
    "scale_by_thor",
    "thor_inverses",
    "thor_refresh_due",
]

SPLIT_DIM = 128
_HIGHEST = jax.lax.Precision.HIGHEST


class ScaleByThorState(NamedTuple):
    """``count``: updates done (``cov_step``); ``frequency``: refresh period; ``a_inv``/``g_inv``: per layer
    name, the stored inverse diagonal blocks ``(n_blocks, s, s)``."""

    count: jax.Array
    frequency: jax.Array
    a_inv: dict[str, jax.Array]
    g_inv: dict[str, jax.Array]


def block_layout(dim: int, split_dim: int = SPLIT_DIM) -> tuple[int, int]:
    """``(n_blocks, block_size)`` of a ``dim x dim`` matrix: one block when ``dim <= split_dim``."""
    size = min(dim, split_dim)
    return -(-dim // size), size


def diagonal_blocks(m: jax.Array, split_dim: int = SPLIT_DIM) -> jax.Array:
    """The diagonal blocks ``(n_blocks, s, s)`` of ``m``, the last one padded with identity."""
    dim = m.shape[0]
    n, size = block_layout(dim, split_dim)
    pad = n * size - dim
    padded = jnp.pad(m, ((0, pad), (0, pad))) + jnp.diag(jnp.concatenate([jnp.zeros(dim), jnp.ones(pad)]))
    idx = jnp.arange(n)
    return padded.reshape(n, size, n, size)[idx, :, idx, :]


def _lower_inverse(blocks: jax.Array) -> jax.Array:
    """``L⁻¹`` of each block, ``M = L Lᵀ`` (what ``CholeskyTrsm`` returns)."""
    lower = jnp.linalg.cholesky(blocks)
    eye = jnp.broadcast_to(jnp.eye(blocks.shape[-1], dtype=blocks.dtype), blocks.shape)
    return jax.scipy.linalg.solve_triangular(lower, eye, lower=True)


def _cholesky_inverse(blocks: jax.Array) -> jax.Array:
    lower_inv = _lower_inverse(blocks)
    return jnp.einsum("bji,bjk->bik", lower_inv, lower_inv, precision=_HIGHEST)


def _pad_blocks(blocks: jax.Array, size: int) -> jax.Array:
    """``(n, s, s)`` blocks embedded in ``(n, size, size)`` with identity on the extra diagonal."""
    pad = size - blocks.shape[-1]
    if pad == 0:
        return blocks
    eye = jnp.diag(jnp.concatenate([jnp.zeros(blocks.shape[-1]), jnp.ones(pad)]))
    return jnp.pad(blocks, ((0, 0), (0, pad), (0, pad))) + eye


def _batched_lower_inverse(blocks: list[jax.Array]) -> list[jax.Array]:
    """``L⁻¹`` of every block of every ``(n, s, s)`` entry: one batched Cholesky per group of sizes.

    Blocks of at most ``SPLIT_DIM`` rows share one call (padded with identity, which leaves ``L⁻¹`` block-diagonal
    with the block's own ``L⁻¹``); larger ones (whole embedding ``G``) get one call per size, chained by an
    optimization barrier so that the LAPACK custom calls never run concurrently (see below).
    """
    small = [i for i, b in enumerate(blocks) if b.shape[-1] <= SPLIT_DIM]
    groups = [small] if small else []
    for size in sorted({b.shape[-1] for b in blocks if b.shape[-1] > SPLIT_DIM}):
        groups.append([i for i, b in enumerate(blocks) if b.shape[-1] == size])
    out: list[Any] = [None] * len(blocks)
    previous = None
    for group in groups:
        size = max(blocks[i].shape[-1] for i in group)
        batch = jnp.concatenate([_pad_blocks(blocks[i], size) for i in group])
        if previous is not None:
            previous, batch = jax.lax.optimization_barrier((previous, batch))
        previous = _lower_inverse(batch)
        offsets = np.cumsum([blocks[i].shape[0] for i in group])[:-1]
        for i, part in zip(group, jnp.split(previous, offsets)):
            out[i] = part[:, :blocks[i].shape[-1], :blocks[i].shape[-1]]
    return out


def block_diagonal_inverse(matrices: list[jax.Array], split_dim: int = SPLIT_DIM) -> list[jax.Array]:
    """``(L⁻¹)ᵀL⁻¹`` of every diagonal block of every matrix, all in one batched Cholesky.

    Blocks smaller than the largest are padded with identity (which leaves their inverse unchanged), so that
    a refresh issues a single LAPACK factorisation and a single triangular solve. One call, rather than one per
    block size, also avoids concurrent LAPACK custom calls: on CPU each waits for batch work queued on the same
    small thread pool, and several at once can leave no thread free to run it.
    """
    blocks = [diagonal_blocks(m, split_dim) for m in matrices]
    size = max(b.shape[-1] for b in blocks)
    inverse = _cholesky_inverse(jnp.concatenate([_pad_blocks(b, size) for b in blocks]))
    offsets = np.cumsum([b.shape[0] for b in blocks])[:-1]
    return [part[:, :b.shape[-1], :b.shape[-1]] for b, part in zip(blocks, jnp.split(inverse, offsets))]


def thor_inverses(statistics: Mapping[str, LayerStatistics], lam: jax.Array, loss_scale: float, batch_size: int
                  ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Damped inverses of every layer's A and G (``ThorGpu._get_ainv_ginv_list``, ``nn/optim/thor.py:493``).

    Dense / conv: block-diagonal ``(n, s, s)`` inverses. Embedding: ``Ainv`` a ``(vocab,)`` vector and ``Ginv``
    the ``(dim, dim)`` matrix ``L⁻¹L⁻¹`` (see the module docstring).
    """
    names = sorted(statistics)
    inv_scale_sq = np.float32(1.0 / (loss_scale * loss_scale))
    batch_sq = np.float32(batch_size * batch_size)
    blocks, feature_maps, a_vectors = [], {}, {}
    for name in names:
        s = statistics[name]
        damping_a = damping_g = lam
        feature_map = np.float32(1.0)
        if s.kind == "conv2d":
            damping_a = lam * (np.float32(1.0) / np.float32(s.a_normalizer))
            damping_g = lam * (np.float32(1.0) / np.float32(s.g_normalizer))
            feature_map = jnp.sqrt(np.float32(1.0) / np.float32(s.a_normalizer))
        g = s.g * inv_scale_sq * batch_sq + jnp.sqrt(damping_g) * jnp.eye(s.g.shape[0], dtype=jnp.float32)
        if s.kind == "embedding":  # thor.py:525-531: reciprocal of the scaled counts; whole G, L⁻¹ @ L⁻¹
            a_vectors[name] = np.float32(1.0) / (s.a * (np.float32(1.0) / np.float32(batch_size)) + jnp.sqrt(lam))
            blocks.append(g[None])
        else:
            a = s.a + jnp.sqrt(damping_a) * jnp.eye(s.a.shape[0], dtype=jnp.float32)
            blocks += [diagonal_blocks(a), diagonal_blocks(g)]
        feature_maps[name] = feature_map
    lower_inv = iter(_batched_lower_inverse(blocks)) if blocks else iter(())
    product = lambda x: jnp.einsum("bji,bjk->bik", x, x, precision=_HIGHEST)   # BatchMatMul(transpose_a=True)
    a_inv, g_inv = {}, {}
    for name in names:
        if name in a_vectors:
            factor = next(lower_inv)[0]
            a_inv[name] = a_vectors[name]
            g_inv[name] = jnp.matmul(factor, factor, precision=_HIGHEST)          # MatMul(): L⁻¹ @ L⁻¹
        else:
            a_inv[name] = product(next(lower_inv)) * feature_maps[name]
            g_inv[name] = product(next(lower_inv)) * feature_maps[name]
    return a_inv, g_inv


def _to_matrix(g: jax.Array, layout: str) -> jax.Array:
    """MindSpore's ``g.reshape(out, -1)`` of its ``(out, in[, kh, kw])`` weight, from our kernel layout."""
    if layout == "io":
        return g.T
    if layout == "hwio":
        g = jnp.transpose(g, (3, 2, 0, 1))
    return g.reshape(g.shape[0], -1)


def _from_matrix(m: jax.Array, layout: str, shape: tuple[int, ...]) -> jax.Array:
    if layout == "io":
        return m.T
    if layout == "hwio":
        kh, kw, c_in, c_out = shape
        return jnp.transpose(m.reshape(c_out, c_in, kh, kw), (2, 3, 1, 0))
    return m.reshape(shape)


def precondition(g: jax.Array, g_inv: jax.Array, a_inv: jax.Array) -> jax.Array:
    """``Ginv @ g @ Ainv`` with block-diagonal inverses ``(n, s, s)`` (op ``UpdateThorGradient``)."""
    out_dim, in_dim = g.shape
    ng, sg = g_inv.shape[:2]
    na, sa = a_inv.shape[:2]
    padded = jnp.pad(g, ((0, ng * sg - out_dim), (0, na * sa - in_dim))).reshape(ng, sg, na, sa)
    result = jnp.einsum("xij,xjyk,ykl->xiyl", g_inv, padded, a_inv, precision=_HIGHEST)
    return result.reshape(ng * sg, na * sa)[:out_dim, :in_dim]


def embedding_direction(g: Any, g_inv: jax.Array, a_inv: jax.Array) -> jax.Array:
    """``(Ainv[:, None] * g) @ Ginv`` (``ThorGpu.construct``, ``nn/optim/thor.py:598-600``); a
    :class:`~jaxopt_ms.sparse.RowSparse` ``g`` is preconditioned on its rows (``O(rows·dim²)``, not
    ``O(vocab·dim²)``) and densified."""
    if isinstance(g, RowSparse):  # linear in the rows: duplicates may be preconditioned apart, then summed
        values = gather_rows(a_inv, g.indices)[:, None] * g.values.astype(jnp.float32)
        values = jnp.matmul(values, g_inv, precision=_HIGHEST)
        return scatter_add(jnp.zeros(g.dense_shape, g.dtype), RowSparse(g.indices, values, g.dense_shape))
    return jnp.matmul(a_inv[:, None] * g.astype(jnp.float32), g_inv, precision=_HIGHEST).astype(g.dtype)


def layer_norm_direction(g: jax.Array, lam: jax.Array, batch_size: int) -> jax.Array:
    """``g / (g²/batch_size + sqrt(lam))`` (``ThorGpu._process_layernorm``)."""
    fim = g * g * (np.float32(1.0) / np.float32(batch_size)) + jnp.sqrt(lam)
    return (np.float32(1.0) / fim) * g


def _is_thor_state(x: Any) -> bool:
    return isinstance(x, ScaleByThorState)


def thor_refresh_due(state: Any) -> jax.Array:
    """Whether the next THOR update refreshes its inverses (so it needs fresh statistics).

    Pass it as ``compute_statistics`` to :func:`jaxopt_ms.thor_layers.value_grad_and_statistics` to skip the
    A/G arithmetic on the other steps.
    """
    found = [x for x in jax.tree.leaves(state, is_leaf=_is_thor_state) if _is_thor_state(x)]
    if len(found) != 1:
        raise ValueError(f"thor_refresh_due: expected one THOR state in the optimizer state, found {len(found)}.")
    return found[0].count % found[0].frequency == 0


def scale_by_thor(
    damping: Any,
    loss_scale: float = 1.0,
    batch_size: int = 32,
    frequency: int = 100,
    layer_norm_filter: Callable[[str, Any], bool] | None = None,
    layers: Mapping[str, LayerStatistics] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """THOR's preconditioning direction (see the module docstring); ``update`` takes ``statistics=``.

    Args:
        damping: a per-step 1-d array (update ``k`` uses ``damping[k]``; the last value is held past the end),
            a fixed value or a callable ``step -> damping``.
        loss_scale, batch_size: as MindSpore's THOR (they rescale G).
        frequency: inverses are refreshed when ``k % frequency == 0``.
        layer_norm_filter: ``(name, leaf) -> bool`` selecting the LayerNorm parameters (diagonal rule).
        layers: optional statistics (or their shapes, :func:`jaxopt_ms.thor_layers.statistics_shapes`) to
            allocate the stored inverses in ``init``; without it they are added by the first update (so the
            state's structure grows once).

    Returns:
        An ``optax.GradientTransformationExtraArgs``: ``update(grads, state, params=None, *, statistics)``,
        ``statistics`` being the dict of :func:`jaxopt_ms.thor_layers.value_grad_and_statistics`.
    """
    damping_rate: LearningRate = resolve_learning_rate(damping, "THOR", "damping")

    def init_fn(params: Any) -> ScaleByThorState:
        del params
        a_inv, g_inv = {}, {}
        for name, s in (layers or {}).items():
            if s.kind == "embedding":
                a_inv[name] = jnp.zeros(s.a.shape, jnp.float32)
                g_inv[name] = jnp.zeros(s.g.shape, jnp.float32)
                continue
            a_inv[name] = jnp.zeros((*block_layout(s.a.shape[0]), block_layout(s.a.shape[0])[1]), jnp.float32)
            g_inv[name] = jnp.zeros((*block_layout(s.g.shape[0]), block_layout(s.g.shape[0])[1]), jnp.float32)
        return ScaleByThorState(jnp.zeros([], jnp.int32), jnp.asarray(frequency, jnp.int32), a_inv, g_inv)

    def update_fn(updates, state, params=None, *, statistics: Mapping[str, LayerStatistics] | None = None,
                  **extra_args):
        del params, extra_args
        statistics = dict(statistics or {})
        if set(state.a_inv) - set(statistics):
            raise ValueError(
                "scale_by_thor: update needs statistics= for the layers "
                f"{sorted(set(state.a_inv) - set(statistics))} (from thor_layers.value_grad_and_statistics)."
            )
        lam = damping_rate.at(state.count)
        if set(statistics) != set(state.a_inv):  # first update: nothing stored yet, compute now
            a_inv, g_inv = thor_inverses(statistics, lam, loss_scale, batch_size)
        else:
            a_inv, g_inv = jax.lax.cond(
                state.count % state.frequency == 0,
                lambda: thor_inverses(statistics, lam, loss_scale, batch_size),
                lambda: (state.a_inv, state.g_inv),
            )
        names = param_names(updates)

        def direction(name: str, g: Any) -> Any:
            if name in statistics and statistics[name].kind == "embedding":
                return embedding_direction(g, g_inv[name], a_inv[name])
            if isinstance(g, RowSparse):
                raise TypeError(f"For 'THOR', the gradient of '{name}' is a RowSparse; THOR takes a row-sparse "
                                "gradient only for a table registered with register_embedding.")
            if name in statistics:
                layout = statistics[name].kernel_layout
                m = precondition(_to_matrix(g.astype(jnp.float32), layout), g_inv[name], a_inv[name])
                return _from_matrix(m, layout, g.shape).astype(g.dtype)
            if layer_norm_filter is not None and layer_norm_filter(name, g):
                return layer_norm_direction(g, lam, batch_size).astype(g.dtype)
            return g

        unknown = set(statistics) - set(jax.tree.leaves(names))
        if unknown:
            raise ValueError(f"scale_by_thor: statistics for {sorted(unknown)} match no leaf of the gradients.")
        updates = jax.tree.map(direction, names, updates, is_leaf=is_row_sparse)
        count = optax.safe_int32_increment(state.count)
        return updates, ScaleByThorState(count, state.frequency, a_inv, g_inv)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
