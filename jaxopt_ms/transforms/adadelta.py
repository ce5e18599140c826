"""MindSpore's Adadelta direction (op ``ApplyAdadelta``), reference §7.

    a  <- rho a + (1 - rho) g²
    d   = sqrt(au + eps) * g / sqrt(a + eps)
    au <- rho au + (1 - rho) d²

Both accumulators start at 0. The learning rate is a later block (``p -= lr * d``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import f32, one_minus
from jaxopt_ms._tree import unzip

__all__ = ["ScaleByAdadeltaState", "adadelta_update", "scale_by_adadelta"]


class ScaleByAdadeltaState(NamedTuple):
    """MindSpore's names: ``accum``, ``accum_update``."""

    accum: optax.Updates
    accum_update: optax.Updates


def adadelta_update(g, accum, accum_update, rho: float, epsilon: float):
    """One element-wise Adadelta step. Returns ``(direction, new_accum, new_accum_update)``."""
    # ApplyAdadelta: rho, epsilon are float32 tensors, 1 - rho computed in float32
    r, c = f32(rho).astype(accum.dtype), one_minus(rho, accum.dtype)
    accum = (r * accum + c * g * g).astype(accum.dtype)
    direction = (jnp.sqrt(accum_update + epsilon) * g / jnp.sqrt(accum + epsilon)).astype(g.dtype)
    accum_update = (r * accum_update + c * direction * direction).astype(accum_update.dtype)
    return direction, accum, accum_update


def scale_by_adadelta(rho: float = 0.9, epsilon: float = 1e-6) -> optax.GradientTransformation:
    """MindSpore Adadelta's direction (see the module docstring)."""

    def init_fn(params):
        return ScaleByAdadeltaState(optax.tree.zeros_like(params), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        out = jax.tree.map(lambda g, a, au: adadelta_update(g, a, au, rho, epsilon),
                           updates, state.accum, state.accum_update)
        direction, accum, accum_update = unzip(out, updates, 3)
        return direction, ScaleByAdadeltaState(accum, accum_update)

    return optax.GradientTransformation(init_fn, update_fn)
