"""MindSpore's LARS gradient rescaling (op ``LARSUpdate``, Ascend kernel ``lars_v2_update``), reference §3.13.

Per leaf selected by ``lars_filter`` (norms over the whole leaf)::

    trust = coefficient ||w|| / (||g|| + wd ||w|| + epsilon)
    trust = clip(trust / lr, 0, 1)                      only with use_clip (lr: the wrapped optimizer's lr(k))
    g    <- trust * (g + wd w)

``wd`` is the weight decay on the leaves the decay filter selects and 0 elsewhere; leaves outside ``lars_filter``
pass through unchanged (no weight decay at all). The result feeds the wrapped optimizer (see
:func:`jaxopt_ms.lars`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._flat import leaf_norms
from jaxopt_ms._float32 import f32
from jaxopt_ms._hyper import is_static, safe_sqrt
from jaxopt_ms._tree import require_params
from jaxopt_ms.names import mindspore_decay_filter, mindspore_lars_filter
from jaxopt_ms.transforms.learning_rate import LearningRateLike, resolve_learning_rate
from jaxopt_ms.transforms.weight_decay import leaf_mask

__all__ = ["LarsState", "lars_gradient", "lars_scale", "lars_trust", "scale_by_lars"]

LEARNING_RATE_ARG = "lars_learning_rate"


class LarsState(NamedTuple):
    """``count``: MindSpore's ``global_step`` as LARS reads it (for a dynamic weight decay)."""

    count: jax.Array


def lars_trust(w_norm, g_norm, weight_decay, lr, *, epsilon: float, coefficient: float, use_clip: bool):
    """The trust ratio from the two norms (see the module docstring). Element-wise, so it also takes norms
    broadcast over a leaf (the fused path)."""
    trust = coefficient * w_norm / (g_norm + weight_decay * w_norm + epsilon)
    if use_clip:
        # lr == 0: the forward value trust / 0 as before, with a zero (not NaN) gradient
        nonzero = lr != 0
        ratio = jnp.where(nonzero, trust / jnp.where(nonzero, lr, 1.0), jax.lax.stop_gradient(trust / lr))
        trust = jnp.clip(ratio, 0.0, 1.0)
    return trust


def lars_scale(g, w, weight_decay, trust) -> jax.Array:
    """The scaled gradient ``trust * (g + weight_decay * w)`` in the gradient's dtype."""
    return ((weight_decay * w + g) * trust).astype(g.dtype)


def _square(x) -> jax.Array:
    return jnp.square(x.astype(jnp.float32))


def lars_gradient(g, w, weight_decay, lr, *, epsilon: float, coefficient: float, use_clip: bool):
    """The LARS-scaled gradient of one whole leaf: ``trust * (g + weight_decay * w)`` (see the module docstring)."""
    trust = lars_trust(safe_sqrt(jnp.sum(_square(w))), safe_sqrt(jnp.sum(_square(g))), weight_decay, lr,
                       epsilon=epsilon, coefficient=coefficient, use_clip=use_clip)
    return lars_scale(g, w, weight_decay, trust)


def scale_by_lars(
    epsilon: float = 1e-5,
    coefficient: float = 0.001,
    use_clip: bool = False,
    weight_decay: float | Callable[[jax.Array], Any] = 0.0,
    decay_filter: Callable[[str, Any], bool] = mindspore_decay_filter,
    lars_filter: Callable[[str, Any], bool] = mindspore_lars_filter,
    learning_rate: LearningRateLike | None = None,
    *,
    loss_scale: float = 1.0,
    group: int = 0,
    steps_per_update: int = 1,
) -> optax.GradientTransformation:
    """LARS's trust-ratio rescaling of the gradient (see the module docstring).

    Args:
        epsilon, coefficient, use_clip: MindSpore's ``LARS`` arguments.
        weight_decay: a float, or a callable ``step -> wd`` read at MindSpore's ``global_step``.
        decay_filter, lars_filter: ``(name, leaf) -> bool`` selecting the decayed leaves and the LARS leaves.
        learning_rate: the learning rate ``use_clip`` divides by, when used alone. Inside :func:`jaxopt_ms.lars`
            it comes instead from the wrapped optimizer's state as the extra argument ``lars_learning_rate``
            (a scalar, or a tuple with one value per parameter group, indexed by ``group``).
        loss_scale: MindSpore stores ``f32(wd * loss_scale)`` and divides it by ``loss_scale`` again.
        group: this block's parameter-group index (see ``learning_rate``).
        steps_per_update: how far ``global_step`` advances per update (MindSpore's LARS advances it twice when
            the wrapped optimizer has a dynamic weight decay and a fixed learning rate).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` with state :class:`LarsState`; needs ``params``.
    """
    dynamic = callable(weight_decay)
    scale = np.float32(loss_scale) if is_static(loss_scale) else f32(loss_scale)
    if dynamic or is_static(weight_decay) and is_static(loss_scale):
        fixed = None if dynamic else np.float32(np.float32(float(weight_decay) * float(loss_scale)) / scale)
    else:  # an array (optax.inject_hyperparams): the same two roundings, in float32
        fixed = f32(weight_decay) * scale / scale
    own_lr = None if learning_rate is None else resolve_learning_rate(learning_rate, "LARS")

    def init_fn(params):
        del params
        return LarsState(jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        require_params(params, "lars")
        if dynamic:
            wd = jnp.asarray(weight_decay(state.count), jnp.float32).reshape(()) * scale / scale
        else:
            wd = jnp.asarray(fixed)
        lr = jnp.ones([], jnp.float32)
        if use_clip:
            lr = extra_args.get(LEARNING_RATE_ARG)
            if lr is None:
                if own_lr is None:
                    raise ValueError("scale_by_lars(use_clip=True) needs 'learning_rate' (or the extra argument "
                                     f"'{LEARNING_RATE_ARG}').")
                lr = own_lr.at(state.count)
            elif isinstance(lr, (tuple, list)):
                lr = lr[group]
        decayed = leaf_mask(params, decay_filter)
        scaled = leaf_mask(params, lars_filter)
        zero = jnp.zeros([], jnp.float32)
        trust_of = functools.partial(lars_trust, lr=lr, epsilon=epsilon, coefficient=coefficient,
                                     use_clip=use_clip)
        updates = jax.tree.map(
            lambda g, w, d, s, wn, gn: lars_scale(g, w, wd if d else zero, trust_of(wn, gn, wd if d else zero))
            if s else g,
            updates, params, decayed, scaled, leaf_norms(params), leaf_norms(updates),
        )
        return updates, LarsState(state.count + steps_per_update)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
