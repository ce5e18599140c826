"""Gradient centralization exactly where MindSpore applies it (``Optimizer.gradients_centralization``).

Only in group mode, for groups with ``grad_centralization=True``, and only for leaves whose gradient has
``ndim >= 2`` and ``shape[1] % 16 == 0`` (MindSpore's Ascend alignment rule, so Dense weights whose
``in_features`` is a multiple of 16 qualify as well as convolutions):
``g <- g - mean(g, axes=1..ndim-1, keepdims=True)``. Applied after weight decay, before loss-scale division
(reference §2.5). A :class:`~jaxopt_ms.sparse.RowSparse` gradient: same test on its dense shape, its values
are centralized.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._flat import is_flat, map_leaves
from jaxopt_ms.sparse import RowSparse, is_row_sparse

__all__ = ["centralize_gradients", "qualifies_for_centralization"]


def qualifies_for_centralization(shape: tuple[int, ...]) -> bool:
    """MindSpore's rule: rank >= 2 and ``shape[1] % 16 == 0``."""
    return len(shape) >= 2 and shape[1] % 16 == 0


def _centralize_dense(g: jax.Array) -> jax.Array:
    axes = tuple(range(1, g.ndim))
    return g - jnp.mean(g, axis=axes, keepdims=True).astype(g.dtype)


def _centralize(g):
    if not qualifies_for_centralization(g.shape):  # a RowSparse is tested on its dense shape
        return g
    if isinstance(g, RowSparse):  # rows are centralized independently, so the values can be
        return RowSparse(g.indices, _centralize_dense(g.values), g.dense_shape)
    return _centralize_dense(g)


def centralize_gradients() -> optax.GradientTransformation:
    """Subtracts from each qualifying gradient its mean over all axes but the first (see module docstring).

    Works on flat buffers too (:mod:`jaxopt_ms.fused`): the rule needs each leaf's shape, so it maps over leaves.
    """

    def one(g):
        if is_flat(g):
            return map_leaves(_centralize_dense, g, where=qualifies_for_centralization)
        return _centralize(g)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(one, updates, is_leaf=lambda x: is_row_sparse(x) or is_flat(x)), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
