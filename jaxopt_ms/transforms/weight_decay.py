"""Coupled L2 weight decay with MindSpore's name filter (``Optimizer.decay_weight``).

``g <- g + w * f32(wd * loss_scale)`` on the leaves where ``decay_filter(name, leaf)`` holds, before gradient
centralization and before loss-scale division, so that after division the effective gradient is
``g / s + wd * w`` (reference §1, §2.4). With ``loss_scale=1`` it is also AdamWeightDecay's decoupled term
``u + wd * w`` (applied to the update direction before the learning rate).

A :class:`~jaxopt_ms.sparse.RowSparse` gradient gets ``values += w[indices] * wd`` per entry, before
deduplication: a row listed twice is decayed twice, untouched rows are not decayed (reference §2.4).

State: a constant weight decay keeps none (``optax.EmptyState``), so that ``optax.tree_utils.tree_get(state,
'count')`` finds the optimizer's one step count; a dynamic one counts its steps (:class:`AddDecayedWeightsState`).

Low precision: ``w - lr * wd * w`` rounds back to ``w`` whenever ``lr * wd`` is below a quarter of the dtype's
machine epsilon (half the spacing between neighbouring values, relative to ``|w|``): bfloat16 needs
``lr * wd >= 2**-9``, float16 ``>= 2**-12``. :func:`warn_ineffective_decay` warns about such leaves at ``init``;
keep float32 master weights (``jaxopt_ms.loss_scale.master_weights``) to decay them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
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

__all__ = ["AddDecayedWeightsState", "add_decayed_weights", "decay_cannot_change", "leaf_mask",
           "warn_ineffective_decay"]

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
        if not dynamic:  # nothing to count: one 'count' in the optimizer's state (optax.tree_utils.tree_get)
            return optax.EmptyState()
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
        if not dynamic:
            return updates, state
        return updates, AddDecayedWeightsState(optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def decay_cannot_change(dtype: Any, step: float) -> bool:
    """Whether ``w - step * w`` rounds back to ``w`` for every normal ``w`` of a 16-bit float ``dtype``.

    In ``[2**e, 2**(e+1))`` the spacing is ``eps * 2**e > eps * |w| / 2``; round-to-nearest keeps ``w`` when
    ``step * |w|`` is under half of it, which holds for all ``w`` iff ``step < eps / 4``.
    """
    dtype = np.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize > 2:
        return False
    return 0.0 < step < float(jnp.finfo(dtype).eps) / 4


def warn_ineffective_decay(params: Any, groups: Sequence[tuple[Callable[[str, Any], bool], float, float]],
                           opt_name: str) -> None:
    """Warns (``UserWarning``, once per call) about the decayed 16-bit leaves that weight decay cannot change.

    Args:
        params: the parameter pytree (arrays, tracers or ShapeDtypeStructs: only dtypes are read).
        groups: ``(selects(name, leaf), learning_rate, weight_decay)`` for each constant (lr, wd) pair; a leaf
            is decayed with ``lr * wd`` by the first group that selects it.
        opt_name: the optimizer, for the message.
    """
    stuck: list[str] = []
    names = jax.tree.leaves(param_names(params))
    leaves = jax.tree.leaves(params, is_leaf=is_row_sparse)
    for name, leaf in zip(names, leaves):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            continue
        for selects, lr, wd in groups:
            if selects(name, leaf):
                if decay_cannot_change(dtype, lr * wd):
                    stuck.append(f"{name} ({np.dtype(dtype).name}, lr * weight_decay = {lr * wd:.3g})")
                break
    if stuck:
        shown = ", ".join(stuck[:5]) + (f" and {len(stuck) - 5} more" if len(stuck) > 5 else "")
        warnings.warn(
            f"For '{opt_name}', weight decay cannot change these low-precision parameters: {shown}; "
            f"w - lr * weight_decay * w rounds back to w when lr * weight_decay is below a quarter of the dtype's "
            f"epsilon. Keep float32 master weights (jaxopt_ms.loss_scale.master_weights) to decay them.",
            UserWarning, stacklevel=4,  # the caller of opt.init
        )
