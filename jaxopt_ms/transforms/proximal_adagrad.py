"""MindSpore's ProximalAdagrad rule (op ``ApplyProximalAdagrad``), reference §3.10.

Per element::

    a   <- a + g²
    eta  = lr / sqrt(a)
    v    = p - eta * g
    p   <- sign(v) * max(|v| - eta * l1, 0) / (1 + eta * l2)

With ``l1 == 0`` this is exactly MindSpore's ``v / (1 + eta * l2)`` branch (``sign(v) * |v| == v`` in floating
point), so one expression serves both. The new parameter is computed directly, so the transformation returns
``new_p - p`` as its update and must be the last block of a chain.

A :class:`~jaxopt_ms.sparse.RowSparse` gradient updates only its (deduplicated) rows with the same rule
(MindSpore's ``FusedSparseProximalAdagrad``); the update is then a ``RowSparse`` (reference §2.8).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._tree import require_params, unzip
from jaxopt_ms.sparse import RowSparse, is_row_sparse, update_rows
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = ["ProximalAdagradState", "apply_proximal_adagrad", "proximal_adagrad_update", "proximal_step"]


class ProximalAdagradState(NamedTuple):
    """MindSpore's name: ``accum``; ``lr``: the learning-rate state."""

    accum: optax.Updates
    lr: LearningRateState


def proximal_step(v, eta, l1: float, l2: float):
    """The proximal operator of ``eta * (l1 |x| + l2/2 x²)`` at ``v``:

    ``sign(v) max(|v| - eta l1, 0) / (1 + eta l2)``."""
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - eta * l1, 0.0) / (1.0 + eta * l2)


def proximal_adagrad_update(g, p, accum, *, lr, l1: float, l2: float):
    """One element-wise ProximalAdagrad step (see the module docstring). Returns ``(new_p, new_accum)``.

    Args:
        g, p, accum: arrays of one shape (gradient, parameter, accumulator).
        lr: the learning rate (a scalar, may be traced).
        l1, l2: regularisation strengths ``>= 0``.
    """
    dtype = p.dtype
    new_accum = accum + g * g
    eta = jnp.asarray(lr, dtype) / jnp.sqrt(new_accum)
    new_p = proximal_step(p - eta * g, eta, l1, l2)
    return new_p.astype(dtype), new_accum.astype(accum.dtype)


def apply_proximal_adagrad(learning_rate: LearningRateLike = 0.001, initial_accum: float = 0.1, l1: float = 0.0,
                     l2: float = 0.0) -> optax.GradientTransformation:
    """The ProximalAdagrad rule as a transformation: its update is ``new_p - p`` (so it ends a chain).

    Args:
        learning_rate: any form accepted by :func:`~jaxopt_ms.transforms.resolve_learning_rate`; update ``k``
            uses ``lr(k)``.
        initial_accum: the accumulator's initial value (MindSpore's ``accum``).
        l1, l2: regularisation strengths ``>= 0``.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`ProximalAdagradState`; needs ``params``.
    """
    lr = resolve_learning_rate(learning_rate, "proximal_adagrad")

    def init_fn(params: Any) -> ProximalAdagradState:
        return ProximalAdagradState(accum=jax.tree.map(lambda p: jnp.full_like(p, initial_accum), params),
                                    lr=lr.init())

    def update_fn(updates, state, params=None):
        require_params(params, "proximal_adagrad")
        rate = lr.current(state.lr)
        rule = lambda g, p, a: proximal_adagrad_update(g, p, a, lr=rate, l1=l1, l2=l2)

        def leaf(g, p, a):
            if isinstance(g, RowSparse):
                return update_rows(rule, g, p, a)
            new_p, a = rule(g, p, a)
            return (new_p - p).astype(p.dtype), a

        out = jax.tree.map(leaf, updates, params, state.accum, is_leaf=is_row_sparse)
        deltas, accum = unzip(out, params, 2)
        return deltas, ProximalAdagradState(accum, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)
