"""Loss-scale division inside the optimizer (``Optimizer.scale_grad``).

``g <- g * f32(1 / loss_scale)`` when ``loss_scale != 1``: multiplication by the float32 reciprocal, not
division (bit-exact with MindSpore, reference §2.6);
the values of a :class:`~jaxopt_ms.sparse.RowSparse` gradient. Use it with gradients that arrive still scaled
(MindSpore's ``FixedLossScaleManager(drop_overflow_update=False)``); the wrappers in
:mod:`jaxopt_ms.loss_scale` unscale themselves.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxopt_ms._float32 import f32
from jaxopt_ms._hyper import is_array, static_equals
from jaxopt_ms.sparse import is_row_sparse, map_values

__all__ = ["unscale_gradients"]


def unscale_gradients(loss_scale: float = 1.0) -> optax.GradientTransformation:
    """Multiplies gradients by the float32 reciprocal of ``loss_scale`` (identity when it is 1)."""
    if static_equals(loss_scale, 1.0):
        return optax.identity()
    # an array (optax.inject_hyperparams) takes the general path: its float32 reciprocal, computed in float32
    reciprocal = f32(1.0 / f32(loss_scale)) if is_array(loss_scale) else np.float32(1.0 / float(loss_scale))

    def update_fn(updates, state, params=None):
        del params
        unscale = lambda g: map_values(lambda x: x * reciprocal.astype(x.dtype), g)
        return jax.tree.map(unscale, updates, is_leaf=is_row_sparse), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
