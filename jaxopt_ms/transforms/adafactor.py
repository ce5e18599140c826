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

from jaxopt_ms._flat import buffer_tree, from_buffer_tree, is_flat, leaf_means
from jaxopt_ms._float32 import f32, one_minus
from jaxopt_ms._hyper import is_array, safe_sqrt
from jaxopt_ms._tree import isolated, require_params, unzip
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = [
    "AdaFactorState",
    "ScaleByFactoredRmsState",
    "adafactor_finish",
    "adafactor_update",
    "apply_adafactor",
    "factored",
    "factored_rms_direction",
    "factored_second_moment",
    "init_factored_moments",
    "relative_step_learning_rate",
    "rms",
    "rms_direction",
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
    return safe_sqrt(jnp.mean(jnp.square(x)))


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
    one = lambda: jnp.zeros((1,), dtype)  # a new array each: a state that may be donated holds no array twice
    if p.ndim >= 2:
        return jnp.zeros(p.shape[:-1], dtype), jnp.zeros(p.shape[:-2] + p.shape[-1:], dtype), one()
    return one(), one(), jnp.zeros(p.shape, jnp.float16 if compression else dtype)


def _compute_dtype(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def factored_second_moment(g, row, col, sq, beta2t, eps1: float):
    """AdaFactor's second-moment update of one leaf: ``(row, col, sq)`` (module docstring); ``sq`` in the compute
    dtype, before any float16 rounding (the step uses that value, as MindSpore's CPU kernel does)."""
    u = lambda g, eps1: g * g + eps1
    one_minus = 1.0 - beta2t
    if g.ndim >= 2:
        # each mean recomputes u from its own isolated g and eps1 (two different barriers, or XLA merges them):
        # XLA's CPU backend would write the shared u (or even eps1 broadcast) out first
        eps = jnp.asarray(eps1, g.dtype)
        g_row, eps_row, row = isolated(g, eps, row)
        g_col, eps_col, col = isolated(g, eps, col)
        row = (row.astype(g.dtype) * beta2t + jnp.mean(u(g_row, eps_row), axis=-1) * one_minus).astype(row.dtype)
        col = (col.astype(g.dtype) * beta2t + jnp.mean(u(g_col, eps_col), axis=-2) * one_minus).astype(col.dtype)
        return row, col, sq
    return row, col, sq.astype(g.dtype) * beta2t + u(g, eps1) * one_minus


def rms_direction(g, row, col, sq) -> jax.Array:
    """``g / sqrt(v̂)`` from the updated second moments: factored ``v̂ = row col / mean(row)`` for rank >= 2,
    ``v̂ = sq`` otherwise."""
    if g.ndim >= 2:
        r_factor = (1.0 / jnp.sqrt(row / jnp.mean(row, axis=-1, keepdims=True)))[..., None]
        c_factor = (1.0 / jnp.sqrt(col))[..., None, :]
        return (r_factor * c_factor * g).astype(g.dtype)
    return ((1.0 / jnp.sqrt(sq)) * g).astype(g.dtype)


def factored_rms_direction(g, row, col, sq, beta2t, eps1: float):
    """The second-moment step of AdaFactor for one leaf. Returns ``(d, row, col, sq)`` (module docstring)."""
    row, col, new_sq = factored_second_moment(g, row, col, sq, beta2t, eps1)
    return rms_direction(g, row, col, new_sq), row, col, new_sq.astype(sq.dtype)


def adafactor_finish(d, p, exp_avg, p_rms, d_rms, *, lr, clip_threshold: float, beta1: float,
                     weight_decay: float, scale_parameter: bool, eps2: float):
    """The element-wise rest of an AdaFactor step, from the direction ``d`` and the RMS values (scalars or
    broadcast over the leaf): clipping, first moment, weight decay. ``d``, ``p`` in the compute dtype.
    Returns ``(new_p, exp_avg)`` (module docstring)."""
    lr_t = lr * jnp.maximum(jnp.float32(eps2), p_rms) if scale_parameter else lr
    lr_t = jnp.asarray(lr_t, p.dtype)
    d = d / jnp.maximum(d_rms / clip_threshold, 1.0) * lr_t
    if is_array(beta1) or beta1 > 0:
        # MindSpore: exp_avg * beta1 + update * (1 - beta1), beta1 a float32 tensor
        new_avg = exp_avg.astype(p.dtype) * f32(beta1).astype(p.dtype) + d * one_minus(beta1, p.dtype)
        if is_array(beta1):  # optax.inject_hyperparams: the first moment is kept, used where beta1 > 0
            exp_avg = jnp.where(beta1 > 0, new_avg, exp_avg.astype(p.dtype)).astype(exp_avg.dtype)
            d = jnp.where(beta1 > 0, exp_avg.astype(p.dtype), d)
        else:
            exp_avg = new_avg.astype(exp_avg.dtype)
            d = exp_avg.astype(p.dtype)
    if is_array(weight_decay) or weight_decay > 0:  # an array: the general path, p * -0 * lr_t adds 0
        p = p + p * -weight_decay * lr_t
    return p - d, exp_avg


def adafactor_update(g, p, exp_avg, row, col, sq, *, lr, beta2t, eps: tuple[float, float], clip_threshold: float,
                     beta1: float, weight_decay: float, scale_parameter: bool):
    """One AdaFactor step of one whole leaf. Returns ``(new_p, exp_avg, row, col, sq)`` (module docstring).

    Low-precision leaves are computed in float32 and the new parameter is cast back.
    """
    out_dtype = p.dtype
    dtype = _compute_dtype(out_dtype)
    g, p = g.astype(dtype), p.astype(dtype)
    d, row, col, sq = factored_rms_direction(g, row, col, sq, beta2t, eps[0])
    new_p, exp_avg = adafactor_finish(d, p, exp_avg, rms(p), rms(d), lr=lr, clip_threshold=clip_threshold,
                                      beta1=beta1, weight_decay=weight_decay, scale_parameter=scale_parameter,
                                      eps2=eps[1])
    return new_p.astype(out_dtype), exp_avg, row, col, sq


def factored(shape: tuple[int, ...]) -> bool:
    """Whether AdaFactor factors a leaf of ``shape`` (rank >= 2). The fused path gives such leaves a buffer of
    their own (``jaxopt_ms.adafactor.fused_own_buffer``), so the rest share buffers and are updated at once."""
    return len(shape) >= 2


def _shaped(tree: Any) -> Any:
    # The arrays the per-array formulas see: the leaves, or on flat buffers jaxopt_ms.fused.buffer_tree's shaped
    # buffers. A buffer of several leaves must hold only unfactored ones (else a factored leaf would be updated
    # as if it were not).
    def check(x):
        if not is_flat(x):
            return x
        for b, spec in enumerate(x.layout.buffers):
            slots = x.layout.buffer_leaves(b)
            if len(slots) > 1 and any(factored(s.shape) for s in slots):
                raise ValueError(
                    f"adafactor: buffer '{spec.name}' packs a factored (rank >= 2) leaf with other leaves; pack the "
                    "parameters with jaxopt_ms.fused.fuse(opt).flatten(params), which gives each its own buffer.")
        return x

    jax.tree.map(check, tree, is_leaf=is_flat)
    return buffer_tree(tree)


def _has_first_moment(beta1) -> bool:
    # structure: an array beta1 (optax.inject_hyperparams) may become > 0 at any update, so it keeps the moment
    return is_array(beta1) or beta1 > 0


def _leaf_rms(tree: Any) -> Any:
    # Per-leaf RMS broadcast over each leaf: rms() on a plain leaf, one reduction per buffer on flat buffers.
    return jax.tree.map(safe_sqrt, leaf_means(jax.tree.map(jnp.square, tree)))


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
        shaped = _shaped(params)  # flat buffers: a factored leaf has a buffer of its own (buffer_tree)
        row, col, sq = unzip(jax.tree.map(lambda p: init_factored_moments(p, compression), shaped), shaped, 3)
        zeros = lambda p: jnp.zeros(p.shape, _compute_dtype(p.dtype))
        exp_avg = jax.tree.map(zeros, params) if _has_first_moment(beta1) else None
        return AdaFactorState(exp_avg, row, col, sq, lr.init())

    def update_fn(updates, state, params=None):
        require_params(params, "adafactor")
        beta2t = _beta2t(state.lr.count, decay_rate)
        # None leaves are seen (is_leaf): a None gradient (frozen leaf) stays None, so does its new parameter.
        none = lambda x: x is None
        keep = lambda f: lambda x, *rest: None if x is None else f(x, *rest)
        compute = keep(lambda x: x.astype(_compute_dtype(x.dtype)))
        g, p = jax.tree.map(compute, updates, is_leaf=none), jax.tree.map(compute, params, is_leaf=none)
        shaped = _shaped(g)
        out = jax.tree.map(keep(lambda g, r, c, s: factored_second_moment(g, r, c, s, beta2t, eps[0])),
                           shaped, state.exp_avg_sq_row, state.exp_avg_sq_col, state.exp_avg_sq, is_leaf=none)
        row, col, new_sq = unzip(out, shaped, 3)
        sq = jax.tree.map(keep(lambda new, old: new.astype(old.dtype)), new_sq, state.exp_avg_sq, is_leaf=none)
        d = from_buffer_tree(jax.tree.map(keep(rms_direction), shaped, row, col, new_sq, is_leaf=none))
        # the rest element-wise, with the per-leaf RMS values broadcast over each leaf; the RMS of d from its own
        # (isolated) recomputation of d, so that d is not written out as a temporary
        d_again = from_buffer_tree(jax.tree.map(keep(rms_direction), *isolated(shaped, row, col, new_sq),
                                                is_leaf=none))
        p_rms, d_rms = _leaf_rms(isolated(p)[0]), _leaf_rms(d_again)
        exp_avg = state.exp_avg if _has_first_moment(beta1) else jax.tree.map(lambda _: None, updates)
        finish = keep(lambda d, p, m, pr, dr: adafactor_finish(
            d, p, m, pr, dr, lr=lr.current(state.lr), clip_threshold=clip_threshold, beta1=beta1,
            weight_decay=weight_decay, scale_parameter=scale_parameter, eps2=eps[1]))
        new_p, m = unzip(jax.tree.map(finish, d, p, exp_avg, p_rms, d_rms, is_leaf=none), updates, 2)
        deltas = jax.tree.map(keep(lambda n, p: (n.astype(p.dtype) - p).astype(p.dtype)), new_p, params, is_leaf=none)
        return deltas, AdaFactorState(m if _has_first_moment(beta1) else None, row, col, sq, lr.advance(state.lr))

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
