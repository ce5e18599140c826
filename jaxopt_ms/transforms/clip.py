"""Per-tensor clipping by L2 norm (MindSpore ``nn.ClipByNorm`` applied leaf by leaf, as THOR's ``clip_grad``).

``g <- g * max_norm / max(||g||₂, max_norm)`` for each leaf separately (not optax's global-norm clipping).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["clip_by_norm"]


def clip_by_norm(max_norm: float = 1.0) -> optax.GradientTransformation:
    """Rescales each leaf whose L2 norm exceeds ``max_norm`` to norm ``max_norm``; others are unchanged."""
    clip = np.float32(max_norm)

    def clip_leaf(g, _):
        norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
        return (g * clip / jnp.maximum(norm, clip)).astype(g.dtype)

    return optax.stateless_with_tree_map(clip_leaf)
