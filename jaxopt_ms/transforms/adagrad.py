"""MindSpore's Adagrad direction (op ``ApplyAdagrad``), reference §3.11.

    a <- a + g²   (only if update_slots)
    p <- p - lr * g * (1 / sqrt(a))       no epsilon; the accumulator starts at ``initial_accum`` (0.1)

evaluated in that order, ``(lr * g) * (1 / sqrt(a))``, as MindSpore's CPU kernels ``ApplyAdagrad`` and
``ApplyAdagradV2`` do (bit for bit): where one ulp of the inputs moves a trajectory past float32 tolerance (large
gradients, a frozen accumulator), ``lr * (g / sqrt(a))`` drifts away from MindSpore. So :func:`apply_adagrad` applies
the learning rate itself and ends a chain; :func:`scale_by_adagrad` is the direction alone (``lr = 1``) for chains
that scale it by a later block.

``update_slots=False`` freezes the accumulator, as the documented formula and MindSpore's GPU kernel do (the CPU
kernel ignores the flag). ``optax.scale_by_rss`` is not used: it maps ``0 / 0`` to 0 where MindSpore gives nan
(``accum=0`` with a zero gradient) and has no ``update_slots``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import rounded
from jaxopt_ms._tree import unzip
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = ["AdagradState", "ScaleByAdagradState", "adagrad_update", "apply_adagrad", "scale_by_adagrad"]


class ScaleByAdagradState(NamedTuple):
    """MindSpore's name: ``accum``."""

    accum: optax.Updates


class AdagradState(NamedTuple):
    """MindSpore's name: ``accum``; ``lr``: the learning-rate state."""

    accum: optax.Updates
    lr: LearningRateState


def adagrad_update(g, accum, update_slots: bool = True, lr: Any = 1.0):
    """One element-wise Adagrad step. Returns ``(step, new_accum)``: ``step = (lr g) (1 / sqrt(new_accum))``, the
    amount MindSpore's kernel subtracts (rounded before any later add: no fused multiply-add)."""
    new_accum = (accum + g * g).astype(accum.dtype) if update_slots else accum
    step = (jnp.asarray(lr, g.dtype) * g) * (1.0 / jnp.sqrt(new_accum)).astype(g.dtype)
    return rounded(step).astype(g.dtype), new_accum


def scale_by_adagrad(initial_accum: float = 0.1, update_slots: bool = True) -> optax.GradientTransformation:
    """MindSpore Adagrad's direction ``g (1 / sqrt(accum))``, for a learning rate applied by a later block (the
    optimizer uses :func:`apply_adagrad`, see the module docstring)."""

    def init_fn(params):
        return ScaleByAdagradState(accum=jax.tree.map(lambda p: jnp.full_like(p, initial_accum), params))

    def update_fn(updates, state, params=None):
        del params
        out = jax.tree.map(lambda g, a: adagrad_update(g, a, update_slots), updates, state.accum)
        direction, accum = unzip(out, updates, 2)
        return direction, ScaleByAdagradState(accum)

    return optax.GradientTransformation(init_fn, update_fn)


def apply_adagrad(learning_rate: LearningRateLike = 0.001, initial_accum: float = 0.1,
                  update_slots: bool = True) -> optax.GradientTransformation:
    """The Adagrad rule with its learning rate, in MindSpore's order: the update is ``-(lr g) (1 / sqrt(a))`` (so it
    ends a chain).

    Args:
        learning_rate: any form accepted by :func:`~jaxopt_ms.transforms.resolve_learning_rate`; update ``k``
            uses ``lr(k)``.
        initial_accum: the accumulator's initial value (MindSpore's ``accum``).
        update_slots: whether ``a`` accumulates ``g²``.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`AdagradState`.
    """
    lr = resolve_learning_rate(learning_rate, "adagrad")

    def init_fn(params: Any) -> AdagradState:
        return AdagradState(accum=jax.tree.map(lambda p: jnp.full_like(p, initial_accum), params), lr=lr.init())

    def update_fn(updates, state, params=None):
        del params
        rate = lr.current(state.lr)
        out = jax.tree.map(lambda g, a: adagrad_update(g, a, update_slots, rate), updates, state.accum)
        steps, accum = unzip(out, updates, 2)
        return jax.tree.map(jnp.negative, steps), AdagradState(accum, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)
