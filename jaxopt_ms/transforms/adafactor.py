"""MindSpore's AdaFactor (``nn.AdaFactor``, python path and CPU ``FusedAdaFactor``), reference §3.12.

With ``s`` = the step count after this update (1 on the first, float32)::

    beta2t = 1 - s^(-decay_rate)
    lr_t   = lr(s - 1) * max(eps2, rms(p))   with scale_parameter, else lr(s - 1)
    u      = g² + eps1
    rank >= 2 (factored over the last two axes):
        row <- beta2t row + (1 - beta2t) mean(u, -1);   col <- beta2t col + (1 - beta2t) mean(u, -2)
        d    = g / sqrt(row / mean(row, -1))[..., None] / sqrt(col)[..., None, :]
    rank < 2:
        sq  <- beta2t sq + (1 - beta2t) u;              d = g / sqrt(sq)
    d      = d / max(rms(d) / clip_threshold, 1) * lr_t
    beta1 > 0:  exp_avg <- beta1 exp_avg + (1 - beta1) d;   d = exp_avg
    p     <- p + p (-weight_decay lr_t) - d              (weight_decay > 0; all leaves)

``rms(x) = sqrt(mean(x²))`` over the whole leaf. ``compression`` stores ``sq`` (the un-factored second moment)
in float16, as MindSpore does; the step itself uses the float32 value before rounding, as MindSpore's CPU kernel
``FusedAdaFactor`` does (its python path, used on GPU, reads the float16 value back instead). The factored second
moment is also a transformation of its own, :func:`scale_by_factored_rms`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._tree import require_params, unzip
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = [
    "AdaFactorState",
    "ScaleByFactoredRmsState",
    "adafactor_update",
    "apply_adafactor",
    "factored_rms_direction",
    "init_factored_moments",
    "relative_step_learning_rate",
    "rms",
    "scale_by_factored_rms",
]


class AdaFactorState(NamedTuple):
    """MindSpore's names: ``exp_avg`` (``None`` without a first moment), ``exp_avg_sq_row``, ``exp_avg_sq_col``,
    ``exp_avg_sq`` (shape ``(1,)`` placeholders where unused, as in MindSpore); ``lr``: the learning-rate state,
    whose ``count`` is MindSpore's ``afactor_step``."""

    exp_avg: optax.Updates | None
    exp_avg_sq_row: optax.Updates
    exp_avg_sq_col: optax.Updates
    exp_avg_sq: optax.Updates
    lr: LearningRateState


class ScaleByFactoredRmsState(NamedTuple):
    """``count``: updates done; MindSpore's names for the second moments (see :class:`AdaFactorState`)."""

    count: jax.Array
    exp_avg_sq_row: optax.Updates
    exp_avg_sq_col: optax.Updates
    exp_avg_sq: optax.Updates


def rms(x) -> jax.Array:
    """Root mean square over the whole array."""
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def relative_step_learning_rate(warmup_init: bool = False):
    """AdaFactor's relative step as a schedule of the 0-based update count ``k`` (``s = k + 1``):
    ``min(1e-6 s if warmup_init else 1e-2, 1 / sqrt(s))``."""

    def schedule(count):
        s = jnp.asarray(count, jnp.float32) + 1.0
        min_step = 1e-6 * s if warmup_init else jnp.float32(1e-2)
        return jnp.minimum(min_step, 1.0 / jnp.sqrt(s))

    return schedule


def init_factored_moments(p, compression: bool = False):
    """``(row, col, sq)`` zeros with MindSpore's shapes (``(1,)`` where unused; ``sq`` float16 if compressed).

    Float16/bfloat16 leaves keep their statistics in float32: ``g² + 1e-30`` underflows to 0 in float16.
    """
    dtype = _compute_dtype(p.dtype)
    one = jnp.zeros((1,), dtype)
    if p.ndim >= 2:
        return jnp.zeros(p.shape[:-1], dtype), jnp.zeros(p.shape[:-2] + p.shape[-1:], dtype), one
    return one, one, jnp.zeros(p.shape, jnp.float16 if compression else dtype)


def _compute_dtype(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def factored_rms_direction(g, row, col, sq, beta2t, eps1: float):
    """The second-moment step of AdaFactor for one leaf. Returns ``(d, row, col, sq)`` (module docstring)."""
    u = g * g + eps1
    one_minus = 1.0 - beta2t
    if g.ndim >= 2:
        row = (row.astype(g.dtype) * beta2t + jnp.mean(u, axis=-1) * one_minus).astype(row.dtype)
        col = (col.astype(g.dtype) * beta2t + jnp.mean(u, axis=-2) * one_minus).astype(col.dtype)
        r_factor = (1.0 / jnp.sqrt(row / jnp.mean(row, axis=-1, keepdims=True)))[..., None]
        c_factor = (1.0 / jnp.sqrt(col))[..., None, :]
        return (r_factor * c_factor * g).astype(g.dtype), row, col, sq
    new_sq = sq.astype(g.dtype) * beta2t + u * one_minus
    return ((1.0 / jnp.sqrt(new_sq)) * g).astype(g.dtype), row, col, new_sq.astype(sq.dtype)


def adafactor_update(g, p, exp_avg, row, col, sq, *, lr, beta2t, eps: tuple[float, float], clip_threshold: float,
                     beta1: float, weight_decay: float, scale_parameter: bool):
    """One AdaFactor step of one leaf. Returns ``(new_p, exp_avg, row, col, sq)`` (module docstring).

    Low-precision leaves are computed in float32 and the new parameter is cast back.
    """
    out_dtype = p.dtype
    dtype = _compute_dtype(out_dtype)
    g, p = g.astype(dtype), p.astype(dtype)
    lr_t = lr * jnp.maximum(jnp.float32(eps[1]), rms(p)) if scale_parameter else lr
    lr_t = jnp.asarray(lr_t, dtype)
    d, row, col, sq = factored_rms_direction(g, row, col, sq, beta2t, eps[0])
    d = d / jnp.maximum(rms(d) / clip_threshold, 1.0) * lr_t
    if beta1 > 0:
        exp_avg = (exp_avg.astype(dtype) * beta1 + d * (1.0 - beta1)).astype(exp_avg.dtype)
        d = exp_avg.astype(dtype)
    if weight_decay > 0:
        p = p + p * -weight_decay * lr_t
    return (p - d).astype(out_dtype), exp_avg, row, col, sq


def _beta2t(count, decay_rate: float):
    s = jnp.asarray(count, jnp.float32) + 1.0
    return 1.0 - jnp.power(s, jnp.float32(-decay_rate))


def apply_adafactor(learning_rate: LearningRateLike, eps: tuple[float, float] = (1e-30, 1e-3),
                    clip_threshold: float = 1.0, decay_rate: float = 0.8, beta1: float = 0.9,
                    weight_decay: float = 0.0, scale_parameter: bool = True, compression: bool = False
                    ) -> optax.GradientTransformation:
    """The AdaFactor rule as a transformation: its update is ``new_p - p`` (so it ends a chain).

    Args:
        learning_rate: any learning-rate form; :func:`relative_step_learning_rate` gives MindSpore's relative step.
        eps, clip_threshold, decay_rate, beta1, weight_decay, scale_parameter, compression: MindSpore's arguments.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`AdaFactorState`; needs ``params`` in ``update``.
    """
    lr = resolve_learning_rate(learning_rate, "AdaFactor")

    def init_fn(params: Any) -> AdaFactorState:
        moments = jax.tree.map(lambda p: init_factored_moments(p, compression), params)
        row, col, sq = unzip(moments, params, 3)
        exp_avg = jax.tree.map(lambda p: jnp.zeros(p.shape, _compute_dtype(p.dtype)), params) if beta1 > 0 else None
        return AdaFactorState(exp_avg, row, col, sq, lr.init())

    def update_fn(updates, state, params=None):
        require_params(params, "adafactor")
        beta2t = _beta2t(state.lr.count, decay_rate)
        rate = state.lr.learning_rate
        exp_avg = state.exp_avg if beta1 > 0 else jax.tree.map(lambda _: None, updates)
        # None leaves are seen here (is_leaf, for the absent exp_avg): a None gradient (frozen leaf) stays None.
        out = jax.tree.map(
            lambda g, p, m, r, c, s: None if g is None else adafactor_update(
                g, p, m, r, c, s, lr=rate, beta2t=beta2t, eps=eps, clip_threshold=clip_threshold, beta1=beta1,
                weight_decay=weight_decay, scale_parameter=scale_parameter),
            updates, params, exp_avg, state.exp_avg_sq_row, state.exp_avg_sq_col, state.exp_avg_sq,
            is_leaf=lambda x: x is None,
        )
        new_p, m, row, col, sq = unzip(out, updates, 5)
        deltas = jax.tree.map(lambda n, p: (n - p).astype(p.dtype), new_p, params)
        return deltas, AdaFactorState(m if beta1 > 0 else None, row, col, sq, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_factored_rms(decay_rate: float = 0.8, eps: float = 1e-30, compression: bool = False
                          ) -> optax.GradientTransformation:
    """AdaFactor's second-moment normalisation alone: ``g / sqrt(v̂)`` with ``v̂`` factored over the last two
    axes of leaves of rank >= 2 (MindSpore's factoring), full elsewhere; ``beta2t = 1 - s^(-decay_rate)``."""

    def init_fn(params):
        row, col, sq = unzip(jax.tree.map(lambda p: init_factored_moments(p, compression), params), params, 3)
        return ScaleByFactoredRmsState(jnp.zeros([], jnp.int32), row, col, sq)

    def update_fn(updates, state, params=None):
        del params
        beta2t = _beta2t(state.count, decay_rate)
        out = jax.tree.map(lambda g, r, c, s: factored_rms_direction(g, r, c, s, beta2t, eps),
                           updates, state.exp_avg_sq_row, state.exp_avg_sq_col, state.exp_avg_sq)
        d, row, col, sq = unzip(out, updates, 4)
        return d, ScaleByFactoredRmsState(optax.safe_int32_increment(state.count), row, col, sq)

    return optax.GradientTransformation(init_fn, update_fn)
