"""MindSpore's FTRL rule (op ``ApplyFtrl``, GPU kernel and sparse kernels), reference §3.8.

Per element, with ``P = -lr_power``::

    a1    = a + g²
    sigma = (a1^P - a^P) / lr
    lin  <- lin + g - sigma * p
    p    <- (sign(lin) * l1 - lin) / (a1^P / lr + 2 * l2)   if |lin| > l1   else 0
    a    <- a1

Every element is re-solved on every step, so a zero gradient can set a weight to 0. The sign of ``lin`` is
the documented formula's and the GPU / sparse kernels'; MindSpore's dense CPU kernel uses ``+l1`` for every
``lin`` (a bug, not reproduced). The new parameter is computed directly, so the transformation returns
``new_p - p`` as its update and must be the last block of a chain.

A :class:`~jaxopt_ms.sparse.RowSparse` gradient updates only its (deduplicated) rows with the same rule
(MindSpore's ``FusedSparseFtrl``); the update is then a ``RowSparse`` (reference §2.8).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import rounded
from jaxopt_ms._hyper import is_array
from jaxopt_ms._tree import require_params, unzip
from jaxopt_ms.sparse import RowSparse, is_row_sparse, update_rows
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = ["FtrlState", "apply_ftrl", "ftrl_update"]


class FtrlState(NamedTuple):
    """MindSpore's names: ``moments`` (the accumulator ``a``), ``linear``; ``lr``: the learning-rate state."""

    moments: optax.Updates
    linear: optax.Updates
    lr: LearningRateState


def _accum_power(a, lr_power: float):
    # MindSpore's kernels special-case lr_power == -0.5 as a square root.
    if is_array(lr_power):  # optax.inject_hyperparams: the same special case, by value
        return jnp.where(lr_power == -0.5, jnp.sqrt(a), jnp.power(a, -lr_power))
    if lr_power == -0.5:
        return jnp.sqrt(a)
    return jnp.power(a, -lr_power)


def ftrl_update(g, p, accum, linear, *, lr, l1: float, l2: float, lr_power: float):
    """One element-wise FTRL step (see the module docstring). Returns ``(new_p, new_accum, new_linear)``.

    Args:
        g, p, accum, linear: arrays of one shape (gradient, parameter, accumulator, linear term).
        lr: the learning rate (a scalar, may be traced).
        l1, l2: regularisation strengths ``>= 0``.
        lr_power: ``<= 0``; ``0`` gives a fixed learning rate.
    """
    dtype = p.dtype
    lr = jnp.asarray(lr, dtype)
    new_accum = accum + g * g
    power_new = _accum_power(new_accum, lr_power)
    sigma = (power_new - _accum_power(accum, lr_power)) / lr
    # lin += g - sigma * p: the increment first, as the formula and MindSpore's ApplyFtrl kernel (bit for bit)
    # round it; (lin + g) - sigma * p loses lin when g and sigma * p nearly cancel.
    new_linear = linear + (g - rounded(sigma * p))
    quadratic = power_new / lr + 2.0 * l2
    solved = (jnp.sign(new_linear) * l1 - new_linear) / quadratic
    new_p = jnp.where(jnp.abs(new_linear) > l1, solved, jnp.zeros_like(solved))
    return new_p.astype(dtype), new_accum.astype(accum.dtype), new_linear.astype(linear.dtype)


def apply_ftrl(learning_rate: LearningRateLike = 0.001, initial_accum: float = 0.1, lr_power: float = -0.5,
         l1: float = 0.0, l2: float = 0.0) -> optax.GradientTransformation:
    """The FTRL rule as a transformation: its update is ``new_p - p`` (so it ends a chain).

    Args:
        learning_rate: any form accepted by :func:`~jaxopt_ms.transforms.resolve_learning_rate` (MindSpore's
            ``nn.FTRL`` only accepts a fixed float; the factory checks that).
        initial_accum: the accumulator's initial value.
        lr_power, l1, l2: see :func:`ftrl_update`.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`FtrlState`; needs ``params`` in ``update``.
    """
    lr = resolve_learning_rate(learning_rate, "ftrl")

    def init_fn(params: Any) -> FtrlState:
        return FtrlState(
            moments=jax.tree.map(lambda p: jnp.full_like(p, initial_accum), params),
            linear=optax.tree.zeros_like(params),
            lr=lr.init(),
        )

    def update_fn(updates, state, params=None):
        require_params(params, "ftrl")
        rate = lr.current(state.lr)
        rule = lambda g, p, a, lin: ftrl_update(g, p, a, lin, lr=rate, l1=l1, l2=l2, lr_power=lr_power)

        def leaf(g, p, a, lin):
            if isinstance(g, RowSparse):
                return update_rows(rule, g, p, a, lin)
            new_p, a, lin = rule(g, p, a, lin)
            return (new_p - p).astype(p.dtype), a, lin

        out = jax.tree.map(leaf, updates, params, state.moments, state.linear, is_leaf=is_row_sparse)
        deltas, accum, linear = unzip(out, params, 3)
        return deltas, FtrlState(accum, linear, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)
