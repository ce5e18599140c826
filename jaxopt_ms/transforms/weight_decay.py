"""Coupled L2 weight decay with MindSpore's name filter (``Optimizer.decay_weight``).

``g <- g + w * f32(wd * loss_scale)`` on the leaves where ``decay_filter(name, leaf)`` holds, before gradient
centralization and before loss-scale division, so that after division the effective gradient is
``g / s + wd * w`` (reference §1, §2.4). With ``loss_scale=1`` it is also AdamWeightDecay's decoupled term
``u + wd * w`` (applied to the update direction before the learning rate).

A :class:`~jaxopt_ms.sparse.RowSparse` gradient gets ``values += w[indices] * wd`` per entry, before
deduplication: a row listed twice is decayed twice, untouched rows are not decayed (reference §2.4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._float32 import f32
from jaxopt_ms._hyper import is_static, static_equals
from jaxopt_ms._tree import require_params
from jaxopt_ms.names import mindspore_decay_filter, param_names
from jaxopt_ms.sparse import RowSparse, gather_rows, is_row_sparse

__all__ = ["AddDecayedWeightsState", "add_decayed_weights", "leaf_mask"]

NameFilter = Callable[[str, Any], bool]


class AddDecayedWeightsState(NamedTuple):
    """``count``: updates done, read by a dynamic (callable) weight decay."""

    count: jax.Array


def leaf_mask(tree: Any, name_filter: NameFilter) -> Any:
    """A pytree of Python bools: ``name_filter(name, leaf)`` for each leaf of ``tree``."""
    return jax.tree.map(lambda n, x: bool(name_filter(n, x)), param_names(tree), tree, is_leaf=is_row_sparse)


def _decay(g, w, wd):
    if isinstance(g, RowSparse):
        # MindSpore: values += gather(w, indices) * wd per entry, before dedup (a repeated row decays twice)
        values = (g.values + gather_rows(w, g.indices) * wd.astype(w.dtype)).astype(g.values.dtype)
        return RowSparse(g.indices, values, g.dense_shape)
    return (g + w * wd.astype(w.dtype)).astype(g.dtype)


def add_decayed_weights(
    weight_decay: float | Callable[[jax.Array], Any] = 0.0,
    loss_scale: float = 1.0,
    decay_filter: NameFilter = mindspore_decay_filter,
) -> optax.GradientTransformation:
    """Adds ``w * f32(weight_decay * loss_scale)`` to the gradient of each leaf selected by ``decay_filter``.

    Args:
        weight_decay: a float ``>= 0`` (0 disables the block, as MindSpore applies decay iff ``wd > 0``), or a
            callable ``step -> wd`` evaluated at the update's step ``k`` (MindSpore's dynamic weight decay), or a
            0-d JAX array (``optax.inject_hyperparams``: the block is always there, ``w * 0`` adds nothing).
        loss_scale: the factor MindSpore pre-multiplies the decay by, undone by the later loss-scale division.
        decay_filter: ``(name, leaf) -> bool``; default: names without ``'beta'`` and ``'gamma'``.

    Returns:
        An ``optax.GradientTransformation``; needs ``params`` in ``update``.
    """
    dynamic = callable(weight_decay)
    if not dynamic and static_equals(weight_decay, 0.0):
        return optax.identity()
    if dynamic or is_static(weight_decay) and is_static(loss_scale):
        fixed = None if dynamic else np.float32(float(weight_decay) * float(loss_scale))
    else:  # an array (optax.inject_hyperparams): the general path, the product in float32
        fixed = f32(weight_decay) * f32(loss_scale)

    def init_fn(params):
        del params
        return AddDecayedWeightsState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        require_params(params, "add_decayed_weights")
        if dynamic:
            wd = jnp.asarray(weight_decay(state.count), jnp.float32).reshape(()) * f32(loss_scale)
        else:
            wd = jnp.asarray(fixed)
        mask = leaf_mask(params, decay_filter)
        updates = jax.tree.map(lambda g, w, m: _decay(g, w, wd) if m else g, updates, params, mask,
                               is_leaf=is_row_sparse)
        return updates, AddDecayedWeightsState(optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
