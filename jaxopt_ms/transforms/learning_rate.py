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


def _quantize(x: np.ndarray | float) -> np.ndarray:
    # MindSpore wraps fixed group lrs as `(lr + 1.0) - 1.0` in float32 when any group lr is dynamic.
    one = np.float32(1.0)
    return (np.asarray(x, np.float32) + one) - one


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
    def length(self) -> int | None:
        """Number of elements of a per-step array, else ``None``."""
        return int(np.shape(self.value)[0]) if self.kind == "array" else None

    def quantized(self) -> LearningRate:
        """The same learning rate with MindSpore's ``(lr + 1) - 1`` float32 quantisation of fixed values."""
        if self.kind != "fixed":
            return self
        return LearningRate("fixed", _quantize(self.value), quantize=True)

    def at(self, count: jax.Array) -> jax.Array:
        """The learning rate of update number ``count`` (0-based), a float32 scalar."""
        if self.kind == "fixed":
            return jnp.asarray(self.value, jnp.float32)
        if self.kind == "array":
            table = jnp.asarray(self.value, jnp.float32)
            return table[jnp.clip(count, 0, table.shape[0] - 1)]
        return jnp.asarray(self.value(count), jnp.float32).reshape(())

    def init(self) -> LearningRateState:
        return LearningRateState(count=jnp.zeros([], jnp.int32), learning_rate=self.at(jnp.zeros([], jnp.int32)))

    def advance(self, state: LearningRateState) -> LearningRateState:
        """The state after one update: ``count + 1`` and the learning rate of the next update."""
        count = optax.safe_int32_increment(state.count)
        if self.kind == "fixed":
            return LearningRateState(count, state.learning_rate)
        return LearningRateState(count, self.at(count))


def resolve_learning_rate(learning_rate: Any, opt_name: str = "Optimizer", arg_name: str = "learning_rate"
                          ) -> LearningRate:
    """Validates ``learning_rate`` with MindSpore's rules and returns a :class:`LearningRate`.

    Raises:
        TypeError: not a number, array, sequence or callable.
        ValueError: a negative fixed value, an array of rank >= 2, an empty or non-numeric sequence.
    """
    if isinstance(learning_rate, LearningRate):
        return learning_rate
    if isinstance(learning_rate, (bool, int, float)):
        if learning_rate < 0:
            raise ValueError(
                f"For '{opt_name}', the '{arg_name}' should be >= 0 when it is a number, "
                f"but got {learning_rate!r}."
            )
        return LearningRate("fixed", np.float32(float(learning_rate)))
    if isinstance(learning_rate, (jax.Array, np.ndarray, np.generic)):
        if isinstance(learning_rate, jax.core.Tracer):
            raise TypeError(
                f"For '{opt_name}', the '{arg_name}' must be concrete when the optimizer is built, but got a "
                f"traced value; build the optimizer outside jit and change a fixed rate with jaxopt_ms.set_lr."
            )
        arr = np.asarray(learning_rate, np.float32)
        if arr.ndim == 0:
            return LearningRate("fixed", arr)
        if arr.ndim == 1:
            return _per_step(arr, opt_name, arg_name)
        raise ValueError(
            f"For '{opt_name}', the dimension of '{arg_name}' should be 0 or 1, but got {arr.ndim} "
            f"(shape {arr.shape})."
        )
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
        return _per_step(arr, opt_name, arg_name)
    raise TypeError(
        f"For '{opt_name}', the '{arg_name}' must be int, float, a 0-d or 1-d array, a list/tuple or a "
        f"callable schedule, but got type '{type(learning_rate).__name__}' (value {learning_rate!r})."
    )


def _per_step(arr: np.ndarray, opt_name: str, arg_name: str) -> LearningRate:
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
        step = sign * state.learning_rate
        scale = lambda g: map_values(lambda x: (step * x).astype(x.dtype), g)  # RowSparse: its values
        updates = jax.tree.map(scale, updates, is_leaf=is_row_sparse)
        return updates, lr.advance(state)

    return optax.GradientTransformation(init_fn, update_fn)


def _is_lr_state(x: Any) -> bool:
    return isinstance(x, LearningRateState)


def _lr_states(state: Any) -> list[LearningRateState]:
    return [x for x in jax.tree.leaves(state, is_leaf=_is_lr_state) if _is_lr_state(x)]


def current_lr(state: Any) -> jax.Array | tuple[jax.Array, ...]:
    """The learning rate the next update will use.

    Returns one scalar, or a tuple with one scalar per parameter group (in group order) when the optimizer
    has several groups.

    Raises:
        ValueError: the state holds no learning rate.
    """
    found = _lr_states(state)
    if not found:
        raise ValueError("current_lr: this optimizer state holds no learning rate (no LearningRateState found).")
    if len(found) == 1:
        return found[0].learning_rate
    return tuple(s.learning_rate for s in found)


def set_lr(state: Any, learning_rate: float | jax.Array | Sequence[float]) -> Any:
    """A copy of ``state`` whose next update uses ``learning_rate`` (one value, or one per group).

    The value is data, not a compile-time constant, so a jitted step does not recompile. A fixed learning
    rate keeps the new value; a dynamic one (array or schedule) uses it for the next update only.
    """
    found = _lr_states(state)
    if not found:
        raise ValueError("set_lr: this optimizer state holds no learning rate (no LearningRateState found).")
    if isinstance(learning_rate, (list, tuple)):
        if len(learning_rate) != len(found):
            raise ValueError(
                f"set_lr: got {len(learning_rate)} learning rates for {len(found)} groups: {learning_rate!r}."
            )
        values = iter(learning_rate)
    else:
        values = iter([learning_rate] * len(found))

    def replace(x):
        if _is_lr_state(x):
            return x._replace(learning_rate=jnp.asarray(next(values), jnp.float32).reshape(()))
        return x

    return jax.tree.map(replace, state, is_leaf=_is_lr_state)
