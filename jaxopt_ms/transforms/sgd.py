"""MindSpore's SGD direction (op ``SGD(dampening, 0, nesterov)``), reference §3.1."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import one_minus
from jaxopt_ms._hyper import is_array, is_static
from jaxopt_ms._tree import unzip

__all__ = ["ScaleBySgdState", "scale_by_sgd", "sgd_direction"]


class ScaleBySgdState(NamedTuple):
    """``accum``: the momentum buffer; ``stat``: 1 until the first update (then 0), as MindSpore's ``stat``."""

    accum: optax.Updates
    stat: jax.Array


def sgd_direction(g, accum, first, momentum: float, dampening: float, nesterov: bool):
    """One element-wise SGD step. Returns ``(direction, new_accum)``.

    ``accum = g`` on the first update (no dampening), else ``momentum * accum + (1 - dampening) * g``;
    the direction is ``g + momentum * accum`` (nesterov) or ``accum``. An array momentum
    (``optax.inject_hyperparams``) that is 0 passes ``g`` through and keeps ``accum``, as a Python 0 does.
    """
    # SGD kernel: dampening a float attribute, 1 - dampening computed in float32
    new_accum = jnp.where(first, g, momentum * accum + one_minus(dampening, accum.dtype) * g).astype(accum.dtype)
    direction = g + momentum * new_accum if nesterov else new_accum
    if is_array(momentum):  # momentum 0: g through, dampening ignored, the buffer unchanged
        off = momentum <= 0.0
        return jnp.where(off, g, direction).astype(g.dtype), jnp.where(off, accum, new_accum).astype(accum.dtype)
    return direction.astype(g.dtype), new_accum


def scale_by_sgd(momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
                 ) -> optax.GradientTransformation:
    """MindSpore SGD's direction ``d`` (the learning rate is applied by a later block: ``p -= lr * d``).

    With ``momentum == 0`` the gradient passes through and ``dampening`` is ignored (as in MindSpore). The buffer is
    allocated whatever the momentum (MindSpore allocates ``accum`` and ``stat`` too; with a Python momentum of 0 they
    are carried unchanged), so that the state's structure does not depend on the momentum's value: that of
    ``optax.inject_hyperparams(jaxopt_ms.sgd)(...)`` (an array momentum, which may become > 0 later) is the plain
    optimizer's. Per-element ``stat`` of MindSpore is one scalar here: all elements agree.
    """
    def init_fn(params):
        return ScaleBySgdState(accum=optax.tree.zeros_like(params), stat=jnp.ones([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        if is_static(momentum) and momentum <= 0.0:  # an array momentum takes the general path
            return updates, state
        first = state.stat > 0
        out = jax.tree.map(lambda g, a: sgd_direction(g, a, first, momentum, dampening, nesterov),
                           updates, state.accum)
        direction, accum = unzip(out, updates, 2)
        stat = jnp.where(momentum > 0.0, 0, state.stat) if is_array(momentum) else jnp.zeros([], jnp.int32)
        return direction, ScaleBySgdState(accum=accum, stat=stat.astype(jnp.int32))

    return optax.GradientTransformation(init_fn, update_fn)

