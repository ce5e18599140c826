"""MindSpore's Lamb rule (op ``Lamb``, GPU kernel of MindSpore 2.10), reference §3.7.

With ``t`` = the step count after this update (1 on the first), per leaf::

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g²
    mh = m / (1 - b1^t);      vh = v / (1 - b2^t)            pow(b, t), not a running product
    r    = mh / (sqrt(vh) + eps) + wd p                       the update
    ghat = mh / sqrt(vh + eps)  + wd p                        eps inside the root: only for the trust ratio
    tr   = ||p|| / ||ghat||  (1 when either norm is 0), clipped to [0, 10], nan -> 0
    d    = tr * r                                             then p -= lr * d (a later block)

``wd`` is the weight decay on the leaves the decay filter selects and 0 elsewhere (MindSpore passes 0.0 to the op
for those leaves); a callable ``wd`` is evaluated at the update's step ``t - 1``. Norms are over the whole leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._flat import leaf_norms
from jaxopt_ms._float32 import f32
from jaxopt_ms._hyper import safe_div, safe_sqrt
from jaxopt_ms._tree import isolated, require_params, unzip
from jaxopt_ms.names import mindspore_decay_filter
from jaxopt_ms.transforms.adam import adam_moments
from jaxopt_ms.transforms.weight_decay import leaf_mask

__all__ = [
    "ScaleByLambState",
    "lamb_direction",
    "lamb_ghat",
    "lamb_r",
    "lamb_ratio_of_norms",
    "lamb_scale",
    "lamb_trust_ratio",
    "lamb_update",
    "scale_by_lamb",
]


class ScaleByLambState(NamedTuple):
    """``count``: updates done (MindSpore's ``global_step``); MindSpore's names ``lamb_m``, ``lamb_v``."""

    count: jax.Array
    lamb_m: optax.Updates
    lamb_v: optax.Updates


def lamb_ratio_of_norms(p_norm, ghat_norm) -> jax.Array:
    """MindSpore's trust ratio from the two norms: ``p_norm / ghat_norm`` (1 if one is 0), clipped to [0, 10],
    nan -> 0. Element-wise, so it also takes norms broadcast over a leaf (the fused path)."""
    ratio = safe_div(p_norm, ghat_norm, (p_norm > 0) & (ghat_norm > 0), 1.0)  # finite gradient at a zero norm
    ratio = jnp.clip(ratio, 0.0, 10.0)
    return jnp.where(jnp.isnan(ratio), 0.0, ratio)


def _square(x) -> jax.Array:
    return jnp.square(x.astype(jnp.float32))


def lamb_trust_ratio(p, ghat) -> jax.Array:
    """MindSpore's per-leaf trust ratio ``||p|| / ||ghat||`` (1 if a norm is 0), clipped to [0, 10], nan -> 0."""
    return lamb_ratio_of_norms(safe_sqrt(jnp.sum(_square(p))), safe_sqrt(jnp.sum(_square(ghat))))


def _corrected(m, v, t, beta1: float, beta2: float):
    t = jnp.asarray(t, jnp.float32)
    return m / (1.0 - jnp.power(jnp.float32(beta1), t)), v / (1.0 - jnp.power(jnp.float32(beta2), t))


def lamb_r(m, v, p, t, weight_decay, beta1: float, beta2: float, eps: float) -> jax.Array:
    """The update ``r = mh / (sqrt(vh) + eps) + wd p`` from the new moments."""
    mh, vh = _corrected(m, v, t, beta1, beta2)
    return mh / (safe_sqrt(vh) + eps) + weight_decay * p


def lamb_ghat(m, v, p, t, weight_decay, beta1: float, beta2: float, eps: float) -> jax.Array:
    """The trust ratio's ``ghat = mh / sqrt(vh + eps) + wd p`` from the new moments."""
    mh, vh = _corrected(m, v, t, beta1, beta2)
    return mh / jnp.sqrt(vh + eps) + weight_decay * p


def lamb_update(g, p, m, v, t, weight_decay, beta1: float, beta2: float, eps: float):
    """The element-wise part of one Lamb step. Returns ``(r, ghat, new_m, new_v)`` (see the module docstring)."""
    m, v = adam_moments(g, m, v, beta1, beta2)
    args = (t, weight_decay, beta1, beta2, eps)
    return lamb_r(m, v, p, *args), lamb_ghat(m, v, p, *args), m, v


def lamb_scale(update, ratio, dtype) -> jax.Array:
    """The direction ``tr * r`` in the gradient's ``dtype``."""
    return (ratio * update).astype(dtype)


def lamb_direction(g, p, m, v, t, weight_decay, beta1: float, beta2: float, eps: float):
    """One Lamb step of one whole leaf. Returns ``(direction, new_m, new_v)`` with ``direction = tr * r``."""
    update, ghat, m, v = lamb_update(g, p, m, v, t, weight_decay, beta1, beta2, eps)
    return lamb_scale(update, lamb_trust_ratio(p, ghat), g.dtype), m, v


def scale_by_lamb(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-6,
                  weight_decay: float | Callable[[jax.Array], Any] = 0.0,
                  decay_filter: Callable[[str, Any], bool] = mindspore_decay_filter) -> optax.GradientTransformation:
    """MindSpore Lamb's direction ``tr * r`` (see the module docstring); needs ``params`` in ``update``."""
    dynamic = callable(weight_decay)
    fixed = None if dynamic else f32(weight_decay)

    def init_fn(params):
        return ScaleByLambState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params),
                                optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        require_params(params, "lamb")
        wd = jnp.asarray(weight_decay(state.count), jnp.float32).reshape(()) if dynamic else jnp.asarray(fixed)
        t = state.count + 1
        mask = leaf_mask(params, decay_filter)
        zero = jnp.zeros([], jnp.float32)
        moments = jax.tree.map(lambda g, m, v: adam_moments(g, m, v, beta1, beta2), updates, state.lamb_m,
                               state.lamb_v)
        m, v = unzip(moments, updates, 2)
        # ghat only feeds its norm: computed from isolated operands, so that the norm's reduction recomputes it
        # instead of sharing temporaries with the update pass (jaxopt_ms._tree.isolated). One barrier per array,
        # scalars (eps too) included: behind a shared one, XLA's CPU backend shares the scalars' broadcasts
        # between arrays of one shape and writes them out as temporaries.
        def ghat_of(m, v, p, flag):
            m, v, p, t_i, wd_i, eps_i = isolated(m, v, p, t, wd if flag else zero, f32(eps))
            return lamb_ghat(m, v, p, t_i, wd_i, beta1, beta2, eps_i)

        ghat = jax.tree.map(ghat_of, m, v, params, mask)
        p_norm, ghat_norm = leaf_norms(isolated(params)[0]), leaf_norms(ghat)
        direction = jax.tree.map(
            lambda g, m, v, p, flag, pn, gn: lamb_scale(lamb_r(m, v, p, t, wd if flag else zero, beta1, beta2, eps),
                                                        lamb_ratio_of_norms(pn, gn), g.dtype),
            updates, m, v, params, mask, p_norm, ghat_norm)
        return direction, ScaleByLambState(optax.safe_int32_increment(state.count), m, v)

    return optax.GradientTransformation(init_fn, update_fn)
