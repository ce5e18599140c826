"""Mixed precision: MindSpore's loss-scale managers as wrappers around any optimizer, and master weights.

A training step with loss scaling multiplies the loss by the current scale before differentiating and hands
those (scaled) gradients to the wrapped optimizer::

    opt = jaxopt_ms.loss_scale.dynamic_loss_scale(jaxopt_ms.adam(1e-3), init_loss_scale=2.0**16)
    state = opt.init(params)

    @jax.jit
    def step(params, state, batch):
        scale = jaxopt_ms.loss_scale.loss_scale_value(state)
        grads = jax.grad(lambda p: loss_fn(p, batch) * scale)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

The wrappers reproduce ``TrainOneStepWithLossScaleCell`` with MindSpore's update cells (reference §6):

    g = g_scaled * f32(1 / scale)              # multiplication by the float32 reciprocal, as MindSpore
    overflow = any(not isfinite(g))
    scale = update_cell(scale, overflow)       # fixed: unchanged; dynamic: DynamicLossScaleUpdateCell
    if not overflow: updates, inner_state = optimizer.update(g, inner_state, params)
    else:            updates = 0, inner_state unchanged

On a skipped step nothing but the scale bookkeeping changes: the parameters, the moments and the inner step
counter (so learning-rate schedules and Adam's beta powers) stay exactly as they were. Everything is selected
with ``jnp.where`` on the device: no Python branch on traced values and no host round trip, under ``jax.jit``.

Low-precision parameters: every optimizer runs on float16 / bfloat16 parameters (its state then has their
dtype). Wrap it in :func:`master_weights` to keep float32 copies of the parameters and run the optimizer in
float32 (see there for when to use it); put the loss-scale wrapper inside it:
``master_weights(dynamic_loss_scale(opt))`` unscales float32 gradients, so nothing underflows. Loss scaling
matters for float16 (whose range ends at 65504 and whose small gradients flush to zero); bfloat16 has float32's
range and rarely needs it, but the wrappers work the same there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms.sparse import is_row_sparse, map_values
from jaxopt_ms.validation import check_float_range, check_gradient_transformation, check_positive_int

__all__ = [
    "DynamicLossScaleState",
    "FixedLossScaleState",
    "MasterWeightsState",
    "all_finite",
    "dynamic_loss_scale",
    "fixed_loss_scale",
    "loss_scale_value",
    "master_weights",
]


class FixedLossScaleState(NamedTuple):
    """``loss_scale``: float32 scalar; ``overflow``: whether the last update was skipped; the inner state."""

    loss_scale: jax.Array
    overflow: jax.Array
    inner_state: Any


class DynamicLossScaleState(NamedTuple):
    """MindSpore's ``DynamicLossScaleUpdateCell`` state (``cur_iter`` starts at 1, ``last_overflow_iter`` at 0),
    the current ``loss_scale``, whether the last update was skipped (``overflow``) and the inner state."""

    loss_scale: jax.Array
    cur_iter: jax.Array
    last_overflow_iter: jax.Array
    overflow: jax.Array
    inner_state: Any


class MasterWeightsState(NamedTuple):
    """``master``: float32 copies of the low-precision parameters (other leaves as they are); the inner state."""

    master: Any
    inner_state: Any


_LOSS_SCALE_STATES = (FixedLossScaleState, DynamicLossScaleState)


def _compute_dtype(dtype: Any) -> Any:
    return jnp.promote_types(dtype, jnp.float32)


def all_finite(tree: Any) -> jax.Array:
    """``True`` when every element of every leaf is finite (MindSpore's ``amp.all_finite``), as a device bool."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _unscale(grads: Any, loss_scale: jax.Array) -> Any:
    # MindSpore: grad * cast(reciprocal(scale), grad.dtype). Low-precision grads are multiplied in float32 and cast
    # back, which for the usual power-of-two scales is the same number and never flushes the reciprocal to 0.
    reciprocal = jnp.float32(1.0) / loss_scale
    unscale = lambda g: (g.astype(_compute_dtype(g.dtype)) * reciprocal).astype(g.dtype)
    return jax.tree.map(lambda g: map_values(unscale, g), grads, is_leaf=is_row_sparse)


def _skip_if(overflow: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(overflow, o, n), new, old)


def _apply_unless_overflow(inner, grads, state_inner, params, overflow, extra_args):
    updates, new_inner = inner.update(grads, state_inner, params, **extra_args)
    # -0.0, not 0.0: p + (-0.0) == p bit for bit for every p (0.0 would turn a -0.0 parameter into +0.0).
    zero = lambda u: jnp.where(overflow, jnp.array(-0.0, u.dtype), u)
    updates = jax.tree.map(lambda u: map_values(zero, u), updates, is_leaf=is_row_sparse)  # a RowSparse's rows stay
    return updates, _skip_if(overflow, new_inner, state_inner)


def fixed_loss_scale(optimizer: optax.GradientTransformation, loss_scale: float = 128.0,
                     drop_overflow_update: bool = True) -> optax.GradientTransformationExtraArgs:
    """MindSpore's ``FixedLossScaleManager(loss_scale, drop_overflow_update)`` around ``optimizer``.

    * ``drop_overflow_update=True`` (``TrainOneStepWithLossScaleCell`` + ``FixedLossScaleUpdateCell``): the
      gradients (of ``loss * loss_scale``) are unscaled by ``f32(1 / loss_scale)``; a step with a non-finite
      gradient is skipped (zero updates, inner state untouched). Build ``optimizer`` with ``loss_scale=1``.
    * ``drop_overflow_update=False`` (``TrainOneStepCell(sens=loss_scale)``): exactly MindSpore's behaviour, the
      wrapper does nothing to the gradients: no unscaling and no overflow check. The still-scaled gradients reach
      ``optimizer``, which must be built with the same ``loss_scale=`` (it then divides by it after adding the
      weight decay pre-multiplied by it, reference §2.6), e.g.
      ``fixed_loss_scale(jaxopt_ms.momentum(0.1, 0.9, loss_scale=128.0), 128.0, drop_overflow_update=False)``.
      A non-finite gradient is applied. The wrapper then only carries the scale for :func:`loss_scale_value`.

    Args:
        optimizer: any ``optax.GradientTransformation``.
        loss_scale: number ``>= 1``.
        drop_overflow_update: as MindSpore, any truthy value means True.

    Raises:
        TypeError: ``optimizer`` is not a gradient transformation; ``loss_scale`` not a number.
        ValueError: ``loss_scale < 1``.

    Example:
        >>> opt = jaxopt_ms.loss_scale.fixed_loss_scale(jaxopt_ms.sgd(0.1), 1024.0)
    """
    name = "FixedLossScaleManager"
    check_gradient_transformation("optimizer", optimizer, name)
    scale = np.float32(check_float_range("loss_scale", loss_scale, name, 1.0, None, strict=False))
    drop = bool(drop_overflow_update)
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params):
        return FixedLossScaleState(jnp.asarray(scale), jnp.array(False), inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if not drop:
            updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
            return updates, state._replace(inner_state=inner_state)
        grads = _unscale(updates, state.loss_scale)
        overflow = jnp.logical_not(all_finite(grads))
        updates, inner_state = _apply_unless_overflow(inner, grads, state.inner_state, params, overflow, extra_args)
        return updates, FixedLossScaleState(state.loss_scale, overflow, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def dynamic_loss_scale(optimizer: optax.GradientTransformation, init_loss_scale: float = 2 ** 24,
                       scale_factor: float = 2, scale_window: int = 2000) -> optax.GradientTransformationExtraArgs:
    """MindSpore's ``DynamicLossScaleManager`` (its ``DynamicLossScaleUpdateCell``) around ``optimizer``.

    Gradients (of ``loss * scale``) are unscaled by ``f32(1 / scale)``; a step with a non-finite gradient is
    skipped (zero updates, inner state untouched). Then, per call (reference §6)::

        scale' = max(scale * f32(1 / scale_factor), 1)  if overflow  else scale
        grow   = cur_iter - last_overflow_iter >= scale_window
        if overflow or grow: last_overflow_iter = cur_iter
        scale  = scale' * scale_factor  if grow and not overflow  else scale'
        cur_iter += 1

    so the scale halves (factor 2) on an overflow, never below 1, and doubles after ``scale_window`` good steps
    in a row. As in MindSpore there is no upper bound (a scale that reaches inf stays there). Build ``optimizer``
    with ``loss_scale=1``.

    Args:
        optimizer: any ``optax.GradientTransformation``.
        init_loss_scale: number ``>= 1``.
        scale_factor: number ``> 0`` (int or float, as MindSpore).
        scale_window: int ``> 0``.

    Raises:
        TypeError: ``optimizer`` not a gradient transformation, ``scale_window`` not an int, a non-number.
        ValueError: ``init_loss_scale < 1``, ``scale_window <= 0``, ``scale_factor <= 0``.

    Example:
        >>> opt = jaxopt_ms.loss_scale.dynamic_loss_scale(jaxopt_ms.adam(1e-3), 2.0 ** 16, 2, 1000)
    """
    name = "DynamicLossScaleManager"
    check_gradient_transformation("optimizer", optimizer, name)
    init = np.float32(check_float_range("init_loss_scale", init_loss_scale, name, 1.0, None, strict=False))
    window = np.int32(check_positive_int("scale_window", scale_window, name))
    factor = np.float32(check_float_range("scale_factor", scale_factor, name, 0.0, None, lower_inclusive=False,
                                          strict=False))
    reciprocal_factor = np.float32(1.0) / factor  # MindSpore's Reciprocal in float32: 1000 -> 333.33334 (factor 3)
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params):
        return DynamicLossScaleState(jnp.asarray(init), jnp.ones([], jnp.int32), jnp.zeros([], jnp.int32),
                                     jnp.array(False), inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        grads = _unscale(updates, state.loss_scale)
        overflow = jnp.logical_not(all_finite(grads))
        updates, inner_state = _apply_unless_overflow(inner, grads, state.inner_state, params, overflow, extra_args)
        scale, cur_iter, last = state.loss_scale, state.cur_iter, state.last_overflow_iter
        on_overflow = jnp.where(overflow, jnp.maximum(scale * reciprocal_factor, jnp.float32(1.0)), scale)
        grow = (cur_iter - last) >= window
        last = jnp.where(overflow | grow, cur_iter, last)
        scale = jnp.where(grow & ~overflow, on_overflow * factor, on_overflow)
        return updates, DynamicLossScaleState(scale, cur_iter + 1, last, overflow, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_loss_scale_state(x: Any) -> bool:
    return isinstance(x, _LOSS_SCALE_STATES)


def loss_scale_value(state: Any) -> jax.Array:
    """The scale to multiply the loss by for the next step (a float32 scalar), found anywhere in ``state``.

    ``state`` may also be a Flax ``nnx.Optimizer``'s ``opt_state``, whose arrays are wrapped in ``nnx.OptArray``
    variables: the array inside is returned.

    Raises:
        ValueError: ``state`` holds no loss-scale wrapper state.
    """
    for x in jax.tree.leaves(state, is_leaf=_is_loss_scale_state):
        if _is_loss_scale_state(x):
            scale = x.loss_scale
            get_value = getattr(scale, "get_value", None)  # a Flax nnx Variable (OptArray) around the array
            return jnp.asarray(get_value() if callable(get_value) else scale)
    raise ValueError("loss_scale_value: this optimizer state holds no loss scale (wrap the optimizer with "
                     "jaxopt_ms.loss_scale.fixed_loss_scale or dynamic_loss_scale).")


def _is_low_precision(x: Any) -> bool:
    dtype = jnp.asarray(x).dtype
    return jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4


def master_weights(optimizer: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Keeps float32 master copies of low-precision (float16/bfloat16) parameters; runs ``optimizer`` on them.

    ``init`` copies the parameters to float32 and initialises ``optimizer`` on the copies (so its moments are
    float32). ``update`` casts the gradients to float32, updates the master copy with ``optimizer`` and returns
    float32 updates that take each parameter to the cast of its master copy:
    ``optax.apply_updates(params, updates) == master.astype(params.dtype)`` (``apply_updates`` casts back to the
    parameter's dtype; exact whenever the old and new values are within 2**16 (bfloat16) / 2**13 (float16) of
    each other, i.e. always in practice). Float32 and non-float leaves pass through unchanged.

    Use it when the parameters themselves are stored in float16/bfloat16 (to halve their memory or feed a
    low-precision model without casts) and the updates ``lr * d`` are small next to the parameters: in bfloat16
    an update below ``|p| * 2**-9`` is lost entirely, and float16 moments underflow (Adam's ``(1 - b2) g²``). The
    trajectory of the master copy is then exactly the float32 trajectory for the same gradients. It is not needed
    when the parameters are float32 and only the forward pass is cast to low precision.

    Put a loss-scale wrapper inside it, ``master_weights(dynamic_loss_scale(opt))``, so that the gradients are
    unscaled in float32. The master copy is the source of truth: changing the parameters outside the optimizer
    (e.g. loading a checkpoint) needs a new ``init``.

    Example:
        >>> opt = jaxopt_ms.loss_scale.master_weights(jaxopt_ms.loss_scale.dynamic_loss_scale(jaxopt_ms.adam(1e-3)))
        >>> state = opt.init({'w': jnp.ones(3, jnp.bfloat16)})
    """
    check_gradient_transformation("optimizer", optimizer, "master_weights")
    inner = optax.with_extra_args_support(optimizer)

    def to_master(x):
        return jnp.asarray(x).astype(jnp.float32) if _is_low_precision(x) else x

    def init_fn(params):
        master = jax.tree.map(to_master, params)
        return MasterWeightsState(master, inner.init(master))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("master_weights: update needs the current parameters: opt.update(grads, state, params).")
        grads = jax.tree.map(lambda g, m: jnp.asarray(g).astype(jnp.asarray(m).dtype), updates, state.master)
        master_updates, inner_state = inner.update(grads, state.inner_state, state.master, **extra_args)
        master = optax.apply_updates(state.master, master_updates)

        def to_param(p, m, u):
            if not _is_low_precision(p):
                return u
            # The difference of two low-precision values, in float32: exact, so p + delta lands on cast(m).
            return m.astype(p.dtype).astype(jnp.float32) - p.astype(jnp.float32)

        out = jax.tree.map(to_param, params, master, master_updates)
        return out, MasterWeightsState(master, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
