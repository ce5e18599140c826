"""MindSpore's ASGD rule (``nn.ASGD``), reference §7.

With ``t`` = the step count after this update (1 on the first) and ``lr = lr(t - 1)``, per leaf::

    eta <- lr                                   on the first update only
    p   <- p (1 - lambd eta) - eta g
    ax  <- ax + (p - ax) mu   if mu != 1   else p
    eta <- lr / (1 + lambd lr t)^alpha          used by the *next* update
    mu  <- 1 / max(1, t - t0)

``eta`` and ``mu`` are per-leaf float32 scalars (initially 0 and 1), ``ax`` the running average of the
parameters. The new parameter is computed directly, so the transformation returns ``new_p - p`` as its update
and must be the last block of a chain.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._tree import require_params, unzip
from jaxopt_ms.transforms.learning_rate import LearningRateLike, LearningRateState, resolve_learning_rate

__all__ = ["ASGDState", "apply_asgd", "asgd_update"]


class ASGDState(NamedTuple):
    """MindSpore's names: ``eta``, ``mu`` (per-leaf scalars), ``ax``; ``lr``: the learning-rate state."""

    eta: optax.Updates
    mu: optax.Updates
    ax: optax.Updates
    lr: LearningRateState


def asgd_update(g, p, eta, mu, ax, *, lr, t, lambd: float, alpha: float, t0: float):
    """One ASGD step of one leaf (see the module docstring). Returns ``(new_p, eta, mu, ax)``."""
    dtype = p.dtype
    lr = jnp.asarray(lr, jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    eta = jnp.where(t == 1.0, lr, eta)
    new_p = (p * (1.0 - lambd * eta).astype(dtype) - eta.astype(dtype) * g).astype(dtype)
    ax = jnp.where(mu != 1.0, ax + (new_p - ax) * mu.astype(dtype), new_p).astype(ax.dtype)
    eta = lr / jnp.power(1.0 + lambd * lr * t, alpha)
    mu = 1.0 / jnp.maximum(1.0, t - jnp.float32(t0))
    return new_p, eta, mu, ax


def apply_asgd(learning_rate: LearningRateLike = 0.1, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6
               ) -> optax.GradientTransformation:
    """The ASGD rule as a transformation: its update is ``new_p - p`` (so it ends a chain).

    Returns:
        An ``optax.GradientTransformation`` with state :class:`ASGDState`; needs ``params`` in ``update``.
    """
    lr = resolve_learning_rate(learning_rate, "asgd")

    def init_fn(params: Any) -> ASGDState:
        return ASGDState(
            eta=jax.tree.map(lambda _: jnp.zeros([], jnp.float32), params),
            mu=jax.tree.map(lambda _: jnp.ones([], jnp.float32), params),
            ax=optax.tree.zeros_like(params),
            lr=lr.init(),
        )

    def update_fn(updates, state, params=None):
        require_params(params, "asgd")
        rate = lr.current(state.lr)
        t = state.lr.count + 1
        out = jax.tree.map(
            lambda g, p, e, m, a: asgd_update(g, p, e, m, a, lr=rate, t=t, lambd=lambd, alpha=alpha, t0=t0),
            updates, params, state.eta, state.mu, state.ax,
        )
        new_p, eta, mu, ax = unzip(out, updates, 4)
        deltas = jax.tree.map(lambda n, p: (n - p).astype(p.dtype), new_p, params)
        return deltas, ASGDState(eta, mu, ax, lr.advance(state.lr))

    return optax.GradientTransformation(init_fn, update_fn)
