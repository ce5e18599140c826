"""Loss-scale division inside the optimizer (``Optimizer.scale_grad``).

``g <- g * f32(1 / loss_scale)`` when ``loss_scale != 1``: multiplication by the float32 reciprocal, not
division (bit-exact with MindSpore, reference §2.6). Use it with gradients that arrive still scaled
(MindSpore's ``FixedLossScaleManager(drop_overflow_update=False)``); the wrappers in
:mod:`jaxopt_ms.loss_scale` unscale themselves.
"""

from __future__ import annotations

import numpy as np
import optax

__all__ = ["unscale_gradients"]


def unscale_gradients(loss_scale: float = 1.0) -> optax.GradientTransformation:
    """Multiplies gradients by the float32 reciprocal of ``loss_scale`` (identity when it is 1)."""
    if float(loss_scale) == 1.0:
        return optax.identity()
    reciprocal = np.float32(1.0 / float(loss_scale))
    return optax.stateless_with_tree_map(lambda g, _: g * reciprocal.astype(g.dtype))
