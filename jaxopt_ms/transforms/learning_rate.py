"""Learning-rate resolution: every form MindSpore accepts, with the step counter in the optimizer state.

Forms (MindSpore ``Optimizer`` §2.2):

* ``float`` / ``int`` (``bool`` too) ``>= 0``, or a 0-d array: fixed.
* 1-d array, list or tuple: dynamic, update ``k`` (0-based) uses element ``k``. MindSpore raises past the end;
  a jitted update cannot raise, so the last element is held (documented policy). An empty one is a
  ``ValueError`` at construction (MindSpore accepts it and fails at the first step).
* any callable ``step -> lr`` (an Optax schedule or one of :mod:`jaxopt_ms.schedules`): dynamic.

MindSpore reads the learning rate *before* it increments ``global_step``: update ``k`` uses ``lr(k)``.
The state keeps ``count`` (= MindSpore's ``global_step``) and ``learning_rate``, the value the *next* update
uses, so that :func:`current_lr` is a plain read and a fixed learning rate can be changed between steps
(:func:`set_lr`) without recompiling and without touching anything else in the trajectory.

Every concrete learning rate gets the same rule, whatever its Python type (``float``, ``int``, NumPy scalar, JAX
array, every element of a sequence): finite and ``>= 0``, else ``ValueError``.

A 0-d *JAX* array (traced or not) is an injected rate: the optimizer reads it from its arguments at every update
instead of from its state. That is what ``optax.inject_hyperparams(jaxopt_ms.sgd)(learning_rate=0.1)`` needs: it
rebuilds the optimizer inside each update from ``state.hyperparams``. There, :func:`set_lr` writes
``state.hyperparams['learning_rate']`` and :func:`current_lr` reads it; both work the same way on either form.
The state is a :class:`LearningRateState` whatever the form, so that the inner state of
``optax.inject_hyperparams(factory)(...)`` has the plain optimizer's tree structure (a checkpoint of one restores
into the other). Its ``learning_rate`` is then the rate the last update used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms.sparse import is_row_sparse, map_values

__all__ = [
    "LearningRate",
    "LearningRateLike",
    "LearningRateState",
    "current_lr",
    "resolve_learning_rate",
    "scale_by_learning_rate",
    "set_lr",
]

LearningRateLike = Union[float, int, jax.Array, np.ndarray, Sequence[float], Callable[[jax.Array], Any]]


class LearningRateState(NamedTuple):
    """``count``: updates done (MindSpore's ``global_step``); ``learning_rate``: what the next update uses."""

    count: jax.Array
    learning_rate: jax.Array


def _quantize(x: Any) -> Any:
    """MindSpore wraps fixed group lrs as ``(lr + 1.0) - 1.0`` in float32 when any group lr is dynamic.

    A NumPy value is quantised here, at construction; a JAX array only in :meth:`LearningRate.at`, at ``init`` /
    ``update`` time: a JAX operation run while a factory is being built may run inside a trace (``jax.jit(init)``
    of a fused optimizer rebuilds the optimizer there), and its tracer must not be kept by an optimizer object that
    outlives that trace.
    """
    if isinstance(x, jax.Array):
        return (x.astype(jnp.float32) + 1.0) - 1.0
    one = np.float32(1.0)
    return (np.asarray(x, np.float32) + one) - one


def _as_float(x: jax.Array) -> jax.Array:
    """An injected rate in its own floating dtype, at least float32 (float64 stays float64 for float64 runs)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_values(values: Any, opt_name: str, arg_name: str, *, by_type: bool = False) -> None:
    """The one rule for every concrete learning rate: finite and ``>= 0`` (``ValueError`` naming the value;
    ``by_type``: a type MindSpore rejects, accepted as a JAX extension only when valid, so MindSpore's
    ``TypeError``, see :func:`jaxopt_ms.validation.value_error`)."""
    if isinstance(values, jax.core.Tracer):
        return
    arr = np.asarray(values, np.float64)
    bad = ~np.isfinite(arr) | (arr < 0)
    if np.any(bad):
        shown = values if arr.ndim == 0 else arr[bad][0]
        message = (f"For '{opt_name}', the '{arg_name}' must be a finite number >= 0, but got {shown!r}"
                   + ("" if arr.ndim == 0 else f" in {values!r}") + ".")
        if by_type:
            from jaxopt_ms.validation import value_error

            raise value_error(opt_name, arg_name, values, message,
                              "int, float, Tensor, Iterable or LearningRateSchedule")
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """A validated learning-rate specification: ``kind`` is ``'fixed'``, ``'array'`` or ``'schedule'``."""

    kind: str
    value: Any
    quantize: bool = False

    @property
    def is_dynamic(self) -> bool:
        return self.kind != "fixed"

    @property
    def injected(self) -> bool:
        """A fixed JAX-array rate, read from the optimizer's arguments at every update (not from its state)."""
        return self.kind == "fixed" and isinstance(self.value, jax.Array)

    @property
    def length(self) -> int | None:
        """Number of elements of a per-step array, else ``None``."""
        return int(np.shape(self.value)[0]) if self.kind == "array" else None

    def quantized(self) -> LearningRate:
        """The same learning rate with MindSpore's ``(lr + 1) - 1`` float32 quantisation of fixed values (of a JAX
        array: applied when the rate is read, see :func:`_quantize`)."""
        if self.kind != "fixed" or self.quantize:
            return self
        if isinstance(self.value, jax.Array):
            return LearningRate("fixed", self.value, quantize=True)
        return LearningRate("fixed", _quantize(self.value), quantize=True)

    def at(self, count: jax.Array) -> jax.Array:
        """The learning rate of update number ``count`` (0-based), a float32 scalar."""
        if self.injected:
            return _quantize(self.value) if self.quantize else _as_float(self.value)
        if self.kind == "fixed":
            return jnp.asarray(self.value, jnp.float32)
        if self.kind == "array":
            table = self.value.astype(jnp.float32) if isinstance(self.value, jax.Array) else self.value
            table = jnp.asarray(table, jnp.float32)
            return table[jnp.clip(count, 0, table.shape[0] - 1)]
        out = jnp.asarray(self.value(count), jnp.float32)
        if out.size != 1:
            raise ValueError(
                f"A learning-rate schedule must return a scalar, but {self.value!r} returned shape {out.shape} at "
                f"step {count}."
            )
        return out.reshape(())

    def current(self, state: LearningRateState) -> jax.Array:
        """The learning rate of the update being made: the state's, or the argument of an injected rate."""
        return self.at(state.count) if self.injected else state.learning_rate

    def init(self) -> LearningRateState:
        return LearningRateState(count=jnp.zeros([], jnp.int32), learning_rate=self.at(jnp.zeros([], jnp.int32)))

    def advance(self, state: LearningRateState) -> LearningRateState:
        """The state after one update: ``count + 1`` and the learning rate of the next update."""
        count = optax.safe_int32_increment(state.count)
        if self.injected:
            return LearningRateState(count, self.at(count))
        if self.kind == "fixed":
            return LearningRateState(count, state.learning_rate)
        return LearningRateState(count, self.at(count))


def resolve_learning_rate(learning_rate: Any, opt_name: str = "Optimizer", arg_name: str = "learning_rate"
                          ) -> LearningRate:
    """Validates ``learning_rate`` with MindSpore's rules and returns a :class:`LearningRate`.

    Raises:
        TypeError: not a number, array, sequence or callable.
        ValueError: a negative, nan or infinite value (any type, any element), an array of rank >= 2, an empty or
            non-numeric sequence.
    """
    if isinstance(learning_rate, LearningRate):
        return learning_rate
    if isinstance(learning_rate, (bool, int, float)):
        _check_values(float(learning_rate), opt_name, arg_name)
        return LearningRate("fixed", np.float32(float(learning_rate)))
    if isinstance(learning_rate, jax.Array):
        # JAX extension: a 0-d array is an injected rate (optax.inject_hyperparams), traced or not
        if not (jnp.issubdtype(learning_rate.dtype, jnp.floating) or jnp.issubdtype(learning_rate.dtype,
                                                                                      jnp.integer)):
            raise TypeError(f"For '{opt_name}', the '{arg_name}' array must be floating (or integer), but got dtype "
                            f"'{learning_rate.dtype}'.")
        if learning_rate.ndim > 1:
            raise ValueError(f"For '{opt_name}', the dimension of '{arg_name}' should be 0 or 1, but got "
                             f"{learning_rate.ndim} (shape {learning_rate.shape}).")
        _check_values(learning_rate, opt_name, arg_name)
        if learning_rate.ndim == 0:
            return LearningRate("fixed", learning_rate)
        if isinstance(learning_rate, jax.core.Tracer):
            return _per_step(learning_rate, opt_name, arg_name)
        return _per_step(np.asarray(learning_rate, np.float32), opt_name, arg_name)
    if isinstance(learning_rate, (np.ndarray, np.generic)):
        arr = np.asarray(learning_rate, np.float32)
        if arr.ndim > 1:
            raise ValueError(
                f"For '{opt_name}', the dimension of '{arg_name}' should be 0 or 1, but got {arr.ndim} "
                f"(shape {arr.shape})."
            )
        # a NumPy array is MindSpore's Tensor (accepted, value checked here); a NumPy scalar MindSpore rejects by
        # type (a TypeError whatever the value), accepted here only with a valid value
        _check_values(learning_rate if isinstance(learning_rate, np.generic) else arr, opt_name, arg_name,
                      by_type=isinstance(learning_rate, np.generic))
        return LearningRate("fixed", arr) if arr.ndim == 0 else _per_step(arr, opt_name, arg_name)
    if callable(learning_rate):
        return LearningRate("schedule", learning_rate)
    if isinstance(learning_rate, str):
        # MindSpore converts any Iterable with np.array(list(x)).astype(float32): a str fails with ValueError.
        raise ValueError(
            f"For '{opt_name}', the '{arg_name}' must be a number, an array, a sequence of numbers or a callable "
            f"schedule, but got a str {learning_rate!r}."
        )
    if isinstance(learning_rate, Iterable):  # list, tuple, range, generator... as MindSpore's `Iterable`
        try:
            arr = np.asarray(list(learning_rate), np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"For '{opt_name}', the '{arg_name}' sequence must hold numbers, but got {learning_rate!r}."
            ) from e
        if arr.ndim != 1:
            raise ValueError(
                f"For '{opt_name}', the '{arg_name}' sequence must be 1-d, but got shape {arr.shape}."
            )
        _check_values(arr, opt_name, arg_name)
        return _per_step(arr, opt_name, arg_name)
    raise TypeError(
        f"For '{opt_name}', the '{arg_name}' must be int, float, a 0-d or 1-d array, a list/tuple or a "
        f"callable schedule, but got type '{type(learning_rate).__name__}' (value {learning_rate!r})."
    )


def _per_step(arr: Any, opt_name: str, arg_name: str) -> LearningRate:
    if arr.shape[0] == 0:
        raise ValueError(f"For '{opt_name}', the per-step '{arg_name}' must not be empty.")
    return LearningRate("array", arr)


def scale_by_learning_rate(learning_rate: LearningRateLike, *, flip_sign: bool = True
                           ) -> optax.GradientTransformation:
    """Scales updates by ``-lr(k)`` (MindSpore's ``p -= lr * d``), ``k`` counted in the state.

    Args:
        learning_rate: any form accepted by :func:`resolve_learning_rate`.
        flip_sign: multiply by ``-lr`` (descent, default) rather than ``lr``.

    Returns:
        An ``optax.GradientTransformation`` whose state is a :class:`LearningRateState`.
    """
    lr = resolve_learning_rate(learning_rate, "scale_by_learning_rate")
    sign = -1.0 if flip_sign else 1.0

    def init_fn(params: Any) -> LearningRateState:
        del params
        return lr.init()

    def update_fn(updates, state, params=None):
        del params
        step = sign * lr.current(state)
        scale = lambda g: map_values(lambda x: (step * x).astype(x.dtype), g)  # RowSparse: its values
        updates = jax.tree.map(scale, updates, is_leaf=is_row_sparse)
        return updates, lr.advance(state)

    return optax.GradientTransformation(init_fn, update_fn)


def _is_lr_state(x: Any) -> bool:
    return isinstance(x, LearningRateState)


def _is_inject_state(x: Any) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState) and "learning_rate" in x.hyperparams


def _is_node(x: Any) -> bool:
    return _is_lr_state(x) or _is_inject_state(x)


def _nodes(state: Any) -> list[Any]:
    """The outermost learning-rate holders: ``inject_hyperparams`` states (with a learning rate), else
    :class:`LearningRateState`s, in pytree (= group) order."""
    return [x for x in jax.tree.leaves(state, is_leaf=_is_node) if _is_node(x)]


def _is_variable(x: Any) -> bool:
    # a flax.nnx Variable (nnx.Optimizer keeps every state array in one), without importing flax
    return hasattr(x, "get_value") and hasattr(x, "set_value")


def _value(x: Any) -> Any:
    return x.get_value() if _is_variable(x) else x


def _read(node: Any) -> Any:
    return _value(node.hyperparams["learning_rate"] if _is_inject_state(node) else node.learning_rate)


def _lr_states(state: Any) -> list[LearningRateState]:
    return [x for x in jax.tree.leaves(state, is_leaf=_is_lr_state) if _is_lr_state(x)]


def current_lr(state: Any) -> jax.Array | tuple[jax.Array, ...]:
    """The learning rate the next update will use.

    Returns one scalar, or a tuple with one scalar per parameter group (in group order) when the optimizer
    has several groups. Works on the state of ``optax.inject_hyperparams(factory)(...)`` (it returns
    ``state.hyperparams['learning_rate']``; for a rate that optax schedules, that is the last update's value)
    and on ``flax.nnx.Optimizer``'s ``opt.opt_state`` (it returns the value held by the nnx ``Variable``, not the
    ``Variable``).

    Raises:
        ValueError: the state holds no learning rate.
    """
    found = _nodes(state)
    if not found:
        raise ValueError("current_lr: this optimizer state holds no learning rate (no LearningRateState found).")
    if len(found) == 1:
        return _read(found[0])
    return tuple(_read(x) for x in found)


def _new_value(old: Any, value: Any) -> jax.Array:
    old = _value(old)
    dtype = getattr(old, "dtype", jnp.float32)
    new = jnp.asarray(value, dtype)
    if new.size != 1:
        raise ValueError(f"set_lr: a learning rate must be a scalar, but got shape {new.shape} (value {value!r}).")
    return new.reshape(jnp.shape(old))


def _assign(holder: Any, value: jax.Array) -> Any:
    """A new leaf with ``value``; an nnx ``Variable`` is updated in place (nnx states are mutable objects)."""
    if _is_variable(holder):
        holder.set_value(value)
        return holder
    return value


def set_lr(state: Any, learning_rate: float | jax.Array | Sequence[float]) -> Any:
    r"""A copy of ``state`` whose next update uses ``learning_rate`` (one value, or one per group).

    The value is data, not a compile-time constant, so a jitted step does not recompile. A fixed learning
    rate keeps the new value; a dynamic one (array or schedule) uses it for the next update only. Every concrete
    value gets the construction rule (finite, ``>= 0``; else ``ValueError``).

    * ``optax.inject_hyperparams(factory)(...)``: ``set_lr`` sets ``state.hyperparams['learning_rate']``, which
      the optimizer is rebuilt from at every update (the same as assigning it by hand).
    * ``flax.nnx.Optimizer``: pass ``opt.opt_state``; its nnx ``Variable``\ s are updated in place (nnx states
      are mutable) and the same state is returned, so ``opt.opt_state = set_lr(opt.opt_state, lr)`` and a bare
      ``set_lr(opt.opt_state, lr)`` both work.
    * a factory given a 0-d JAX array rate outside ``inject_hyperparams`` (``sgd(jnp.asarray(0.1))``) reads that
      argument at every update, as ``inject_hyperparams`` needs; its state has the same structure as a float
      rate's (so that the two restore into each other), so ``set_lr`` cannot tell it apart and the value it
      sets is not used. Give such an optimizer a Python or NumPy float to change its rate with ``set_lr``.

    Raises:
        ValueError: no learning rate in ``state``; a negative, nan or infinite value; a wrong number of values;
            or a rate that ``inject_hyperparams`` schedules (it overwrites a value set by hand at every update).
    """
    found = _nodes(state)
    if not found:
        raise ValueError("set_lr: this optimizer state holds no learning rate (no LearningRateState found).")
    if isinstance(learning_rate, (list, tuple)):
        if len(learning_rate) != len(found):
            raise ValueError(
                f"set_lr: got {len(learning_rate)} learning rates for {len(found)} groups: {learning_rate!r}."
            )
        values = list(learning_rate)
    else:
        values = [learning_rate] * len(found)
    for v in values:
        _check_values(v, "set_lr", "learning_rate")
    for node in found:
        if _is_inject_state(node) and "learning_rate" in node.hyperparams_states:
            raise ValueError(
                "set_lr: this learning rate is a schedule inside optax.inject_hyperparams, which evaluates it at "
                "every update and overwrites any value set by hand (optax's rule); change the schedule instead, or "
                "inject a number and set it."
            )
    it = iter(values)

    def replace_lr_state(x: Any, value: Any) -> Any:
        if _is_lr_state(x):
            return x._replace(learning_rate=_assign(x.learning_rate, _new_value(x.learning_rate, value)))
        return x

    def replace(x: Any) -> Any:
        if not _is_node(x):
            return x
        value = next(it)
        if _is_inject_state(x):
            old = x.hyperparams["learning_rate"]
            hyperparams = dict(x.hyperparams, learning_rate=_assign(old, _new_value(old, value)))
            inner = jax.tree.map(lambda y: replace_lr_state(y, value), x.inner_state, is_leaf=_is_lr_state)
            return x._replace(hyperparams=hyperparams, inner_state=inner)
        return replace_lr_state(x, value)

    return jax.tree.map(replace, state, is_leaf=_is_node)
