"""Gradient centralization exactly where MindSpore applies it (``Optimizer.gradients_centralization``).

Only in group mode, for groups with ``grad_centralization=True``, and only for leaves whose gradient has
``ndim >= 2`` and ``shape[1] % 16 == 0`` (MindSpore's Ascend alignment rule, so Dense weights whose
``in_features`` is a multiple of 16 qualify as well as convolutions):
``g <- g - mean(g, axes=1..ndim-1, keepdims=True)``. Applied after weight decay, before loss-scale division
(reference §2.5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._flat import map_leaves

__all__ = ["centralize_gradients", "qualifies_for_centralization"]


def qualifies_for_centralization(shape: tuple[int, ...]) -> bool:
    """MindSpore's rule: rank >= 2 and ``shape[1] % 16 == 0``."""
    return len(shape) >= 2 and shape[1] % 16 == 0


def _centralize(g: jax.Array) -> jax.Array:
    axes = tuple(range(1, g.ndim))
    return g - jnp.mean(g, axis=axes, keepdims=True).astype(g.dtype)


def centralize_gradients() -> optax.GradientTransformation:
    """Subtracts from each qualifying gradient its mean over all axes but the first (see module docstring).

    Works on flat buffers too (:mod:`jaxopt_ms.fused`): the rule needs each leaf's shape, so it maps over leaves.
    """
    return optax.stateless(lambda updates, _: map_leaves(_centralize, updates, where=qualifies_for_centralization))
