"""MindSpore's AdaMax direction (op ``ApplyAdaMax``), reference §7.

    b1p <- f32(b1p * b1)                  running float32 product, advanced before the update
    m   <- b1 m + (1 - b1) g;   v <- max(b2 v, |g|)
    d    = m / (v + eps) / (1 - b1p)

The learning rate is a later block (``p -= lr * d``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import f32, one_minus, rounded
from jaxopt_ms._tree import unzip

__all__ = ["ScaleByAdamaxState", "adamax_update", "scale_by_adamax"]


class ScaleByAdamaxState(NamedTuple):
    """MindSpore's names: ``beta1_power`` (a float32 scalar), ``moment1``, ``moment2``."""

    beta1_power: jax.Array
    moment1: optax.Updates
    moment2: optax.Updates


def adamax_update(g, m, v, correction, beta1: float, beta2: float, eps: float):
    """One element-wise AdaMax step with ``correction = 1 / (1 - b1p)``. Returns ``(direction, m, v)``."""
    # ApplyAdaMax: beta1 a float32 tensor, 1 - beta1 computed in float32
    m = (f32(beta1).astype(m.dtype) * m + one_minus(beta1, m.dtype) * g).astype(m.dtype)
    v = jnp.maximum(beta2 * v, jnp.abs(g)).astype(v.dtype)
    direction = (correction.astype(g.dtype) * (m / (v + eps))).astype(g.dtype)
    return direction, m, v


def scale_by_adamax(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """MindSpore AdaMax's direction (see the module docstring)."""

    def init_fn(params):
        return ScaleByAdamaxState(jnp.ones([], jnp.float32), optax.tree.zeros_like(params),
                                  optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        b1p = rounded(state.beta1_power * f32(beta1))
        correction = 1.0 / (1.0 - b1p)
        out = jax.tree.map(lambda g, m, v: adamax_update(g, m, v, correction, beta1, beta2, eps),
                           updates, state.moment1, state.moment2)
        direction, m, v = unzip(out, updates, 3)
        return direction, ScaleByAdamaxState(b1p, m, v)

    return optax.GradientTransformation(init_fn, update_fn)
