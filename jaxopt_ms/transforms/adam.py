"""MindSpore's Adam direction (op ``Adam`` / ``ApplyAdamWithAmsgradV2``), reference §3.3.

    b1p <- f32(b1p * b1);  b2p <- f32(b2p * b2)           running float32 products, stored
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g²
    d  = sqrt(1 - b2p) / (1 - b1p) * num / (sqrt(v̂) + eps)
    num = b1 m + (1 - b1) g  (use_nesterov)  else  m;   v̂ = max(v̂, v) (use_amsgrad) else v

``eps`` is added to the square root of the *uncorrected* second moment (TensorFlow's "epsilon hat"), unlike
``optax.scale_by_adam``. The learning rate is applied by a later block (``p -= lr * d``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._tree import unzip

__all__ = ["ScaleByAdamState", "adam_direction", "adam_moments", "scale_by_adam"]


class ScaleByAdamState(NamedTuple):
    """MindSpore's names: ``beta1_power``, ``beta2_power`` (float32 scalars), ``moment1``, ``moment2``, ``vhat``."""

    beta1_power: jax.Array
    beta2_power: jax.Array
    moment1: optax.Updates
    moment2: optax.Updates
    vhat: optax.Updates | None


def adam_moments(g, m, v, beta1: float, beta2: float):
    """``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g²`` (in the moments' dtype)."""
    m = (beta1 * m + (1.0 - beta1) * g).astype(m.dtype)
    v = (beta2 * v + (1.0 - beta2) * g * g).astype(v.dtype)
    return m, v


def adam_direction(g, m, v, correction, beta1: float, eps: float, use_nesterov: bool):
    """``correction * num / (sqrt(v) + eps)`` with ``num = b1 m + (1 - b1) g`` under nesterov, else ``m``.

    Low-precision leaves are computed in float32 (cast back to ``g.dtype``): in float16 ``eps = 1e-8`` rounds to 0
    and a zero gradient would give ``0 / 0``. Float32 leaves are unaffected.
    """
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    g_, m, v = g.astype(dtype), m.astype(dtype), v.astype(dtype)
    num = beta1 * m + (1.0 - beta1) * g_ if use_nesterov else m
    return (correction.astype(dtype) * num / (jnp.sqrt(v) + eps)).astype(g.dtype)


def scale_by_adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, use_nesterov: bool = False,
                  use_amsgrad: bool = False) -> optax.GradientTransformation:
    """MindSpore Adam's direction ``d`` (see the module docstring); state ``ScaleByAdamState``."""
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return ScaleByAdamState(
            beta1_power=jnp.ones([], jnp.float32),
            beta2_power=jnp.ones([], jnp.float32),
            moment1=zeros,
            moment2=optax.tree.zeros_like(params),
            vhat=optax.tree.zeros_like(params) if use_amsgrad else None,
        )

    def update_fn(updates, state, params=None):
        del params
        b1p = state.beta1_power * b1
        b2p = state.beta2_power * b2
        correction = jnp.sqrt(1.0 - b2p) / (1.0 - b1p)
        moments = jax.tree.map(lambda g, m, v: adam_moments(g, m, v, beta1, beta2),
                               updates, state.moment1, state.moment2)
        m, v = unzip(moments, updates, 2)
        vhat = None
        den_v = v
        if use_amsgrad:
            vhat = jax.tree.map(jnp.maximum, state.vhat, v)
            den_v = vhat
        direction = jax.tree.map(lambda g, m_, v_: adam_direction(g, m_, v_, correction, beta1, eps, use_nesterov),
                                 updates, m, den_v)
        return direction, ScaleByAdamState(b1p, b2p, m, v, vhat)

    return optax.GradientTransformation(init_fn, update_fn)
