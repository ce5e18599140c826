"""MindSpore's Rprop rule (``nn.Rprop``), reference §7.

With ``t`` = the step count after this update (1 on the first), per element::

    step <- lr                                   on the first update only (``lr = lr(t - 1)``)
    s     = etaplus if g prev > 0, etaminus if g prev < 0, else 1
    step <- clip(step * s, step_min, step_max)
    g'    = 0 where s == etaminus, else g
    p    <- p - sign(g') step;   prev <- g'

The update is ``-sign(g') * step`` and does not pass through a learning-rate block, so the transformation ends a
chain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._tree import unzip
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = ["RpropState", "apply_rprop", "rprop_update"]


class RpropState(NamedTuple):
    """MindSpore's names: ``prev``, ``step_size``; ``lr``: the learning-rate state."""

    prev: optax.Updates
    step_size: optax.Updates
    lr: LearningRateState


def rprop_update(g, prev, step_size, *, lr, first, etaminus: float, etaplus: float, step_min: float,
                 step_max: float):
    """One element-wise Rprop step. Returns ``(update, new_prev, new_step_size)`` with ``p <- p + update``."""
    dtype = g.dtype
    step = jnp.where(first, jnp.full_like(step_size, lr), step_size)
    s = jnp.sign(g * prev)
    s = jnp.where(s > 0, jnp.asarray(etaplus, dtype), s)
    s = jnp.where(s < 0, jnp.asarray(etaminus, dtype), s)
    s = jnp.where(s == 0, jnp.ones_like(s), s)
    step = jnp.clip(step * s, step_min, step_max).astype(step_size.dtype)
    g = jnp.where(s == jnp.asarray(etaminus, dtype), jnp.zeros_like(g), g)
    return (-jnp.sign(g) * step).astype(dtype), g.astype(prev.dtype), step


def apply_rprop(learning_rate: LearningRateLike = 0.1, etas: tuple[float, float] = (0.5, 1.2),
                step_sizes: tuple[float, float] = (1e-6, 50.0)) -> optax.GradientTransformation:
    """The Rprop rule as a transformation (its update is the whole step, so it ends a chain).

    Returns:
        An ``optax.GradientTransformation`` with state :class:`RpropState`.
    """
    lr = resolve_learning_rate(learning_rate, "rprop")
    etaminus, etaplus = etas
    step_min, step_max = step_sizes

    def init_fn(params: Any) -> RpropState:
        return RpropState(optax.tree.zeros_like(params), optax.tree.zeros_like(params), lr.init())

    def update_fn(updates, state, params=None):
        del params
        rate = lr.current(state.lr)
        first = state.lr.count == 0
        out = jax.tree.map(
            lambda g, pr, st: rprop_update(g, pr, st, lr=rate, first=first, etaminus=etaminus, etaplus=etaplus,
                                           step_min=step_min, step_max=step_max),
            updates, state.prev, state.step_size,
        )
        deltas, prev, step_size = unzip(out, updates, 3)
        return deltas, RpropState(prev, step_size, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)
