"""MindSpore's learning-rate schedules (``nn.LearningRateSchedule``) as jit-safe callables ``step -> lr``.

Each factory validates its arguments as MindSpore does (same exception types) and returns a function of the
step that computes MindSpore's formula in float32, operation for operation, quirks included (reference §4):

* ``natural_exp_decay`` decays per *step* (``lr * e**(-decay_rate * step)``); ``decay_steps`` only matters with
  ``is_stair``. MindSpore's docstring says ``step / decay_steps``; its code (reproduced here) does not.
* ``warmup`` starts at 0 (step 0 gives ``0``).
* ``polynomial_decay`` holds ``end_learning_rate`` after ``decay_steps`` unless ``update_decay_steps``, which
  restarts the decay over the next multiple of ``decay_steps``.
* ``cosine_decay`` holds ``min_lr`` after ``decay_steps``.

The step may be a Python int, a traced int32 (the optimizer's counter) or an array of steps (the result then
has its shape). A schedule is accepted wherever a learning rate is (``learning_rate=``, a group's ``'lr'``) and
composes with Optax's schedule utilities::

    lr = optax.join_schedules([jaxopt_ms.schedules.warmup(0.1, 100),
                               jaxopt_ms.schedules.cosine_decay(1e-4, 0.1, 900)], boundaries=[100])
    opt = jaxopt_ms.momentum(lr, 0.9)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms._float32 import rounded
from jaxopt_ms.validation import (
    check_bool,
    check_non_negative_float,
    check_positive_float,
    check_positive_int,
)

__all__ = [
    "cosine_decay",
    "exponential_decay",
    "inverse_decay",
    "natural_exp_decay",
    "polynomial_decay",
    "warmup",
]

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]

_F32 = np.float32


def _step(step: jax.typing.ArrayLike) -> jax.Array:
    # MindSpore casts its int32 global_step to float32 before any arithmetic.
    return jnp.asarray(step).astype(jnp.float32)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Veltkamp's split: hi + lo == x exactly, each half with at most 12 significant bits.
    c = rounded(x * _F32(4097.0))  # no fused multiply-add: the split needs the rounded product
    hi = c - (c - x)
    return hi, x - hi


def _residual(s: jax.Array, q: jax.Array, d: jax.Array) -> jax.Array:
    """``|s - q d|`` with the sign-correct exact residual of Dekker's product (``s`` within 2x of ``q d``)."""
    p = rounded(q * d)
    qh, ql = _split(q)
    dh, dl = _split(d)
    err = ((qh * dh - p) + qh * dl + ql * dh) + ql * dl  # q d == p + err exactly
    return jnp.abs((s - p) - err)


def _ratio(s: jax.Array, d: jax.Array | np.float32) -> jax.Array:
    """``s / d`` correctly rounded to float32 (as MindSpore's CPU division), for integer-valued ``0 <= s < 2**24``
    and ``1 <= d < 2**23``.

    XLA neither guarantees a correctly rounded float32 division (on CPU it divides approximately and rewrites a
    division by a constant as a product with its reciprocal) nor an exact ``s / s == 1``: ``1 - s / d`` could
    come out ``-6e-8`` and its fractional power NaN, ``floor(60 / 60)`` 0. The approximate quotient is within
    two ulp; of it and its neighbours (twice) the one with the smallest exact residual ``|s - q d|`` is the
    correctly rounded quotient (a tie is impossible for integers: the quotient would be representable).
    """
    d = jnp.asarray(d, jnp.float32)
    q = s / d
    zero, inf = _F32(0.0), _F32(np.inf)
    for _ in range(2):
        best, best_err = q, _residual(s, q, d)
        for cand in (jnp.nextafter(q, zero), jnp.nextafter(q, inf)):
            err = _residual(s, cand, d)
            take = err < best_err
            best, best_err = jnp.where(take, cand, best), jnp.where(take, err, best_err)
        q = best
    return q


def _check_decay_inputs(learning_rate, decay_rate, decay_steps, is_stair, cls_name: str) -> None:
    # MindSpore's order (learning_rate_schedule._check_inputs), so the first bad argument is the one reported.
    check_positive_int("decay_steps", decay_steps, cls_name)
    check_positive_float("learning_rate", learning_rate, cls_name)
    check_positive_float("decay_rate", decay_rate, cls_name)
    check_bool("is_stair", is_stair, cls_name)


def exponential_decay(learning_rate: float, decay_rate: float, decay_steps: int, is_stair: bool = False
                      ) -> Schedule:
    """MindSpore's ``ExponentialDecayLR``: ``lr * decay_rate ** p``, ``p = step / decay_steps``.

    With ``is_stair``, ``p = floor(step / decay_steps)``. Reference: MindSpore 2.10
    ``nn.ExponentialDecayLR`` (reference §4).

    Args:
        learning_rate: float ``> 0``.
        decay_rate: float ``> 0`` (no upper bound: ``> 1`` grows).
        decay_steps: int ``> 0``.
        is_stair: decay once every ``decay_steps`` steps.

    Raises:
        TypeError: ``learning_rate``/``decay_rate`` not a float, ``decay_steps`` not an int, ``is_stair`` not a
            bool.
        ValueError: a value out of range (or not finite).

    Example:
        >>> lr = jaxopt_ms.schedules.exponential_decay(0.1, 0.9, 4)
        >>> opt = jaxopt_ms.sgd(lr)
    """
    _check_decay_inputs(learning_rate, decay_rate, decay_steps, is_stair, "ExponentialDecayLR")
    lr, rate, steps = _F32(learning_rate), _F32(decay_rate), _F32(decay_steps)

    def schedule(step):
        s = _step(step)
        p = _ratio(s, steps)
        if is_stair:
            p = jnp.floor(p)
        return lr * jnp.power(rate, p)

    return schedule


def natural_exp_decay(learning_rate: float, decay_rate: float, decay_steps: int, is_stair: bool = False
                      ) -> Schedule:
    """MindSpore's ``NaturalExpDecayLR`` as its code computes it: ``lr * e ** (-decay_rate * s)``.

    ``s = step``, or with ``is_stair`` ``s = floor(step / decay_steps) * decay_steps``. The power is taken of
    float32 ``e`` (not ``exp``), as MindSpore does. Its docstring's ``s = step / decay_steps`` is not what it
    runs (reference §4, §9.17).

    Args and Raises: as :func:`exponential_decay`.

    Example:
        >>> lr = jaxopt_ms.schedules.natural_exp_decay(0.1, 0.02, 10, is_stair=True)
    """
    _check_decay_inputs(learning_rate, decay_rate, decay_steps, is_stair, "NaturalExpDecayLR")
    lr, neg_rate, steps, e = _F32(learning_rate), _F32(-decay_rate), _F32(decay_steps), _F32(math.e)

    def schedule(step):
        s = _step(step)
        if is_stair:
            s = jnp.floor(_ratio(s, steps)) * steps  # FloorDiv: floor of the rounded quotient
        return lr * jnp.power(e, neg_rate * s)

    return schedule


def inverse_decay(learning_rate: float, decay_rate: float, decay_steps: int, is_stair: bool = False) -> Schedule:
    """MindSpore's ``InverseDecayLR``: ``lr / (1 + decay_rate * p)``, ``p = step / decay_steps``.

    With ``is_stair``, ``p = floor(step / decay_steps)``. Reference: MindSpore 2.10 ``nn.InverseDecayLR``.

    Args and Raises: as :func:`exponential_decay`.

    Example:
        >>> lr = jaxopt_ms.schedules.inverse_decay(0.1, 0.5, 4)
    """
    _check_decay_inputs(learning_rate, decay_rate, decay_steps, is_stair, "InverseDecayLR")
    lr, rate, steps = _F32(learning_rate), _F32(decay_rate), _F32(decay_steps)

    def schedule(step):
        s = _step(step)
        p = _ratio(s, steps)
        if is_stair:
            p = jnp.floor(p)
        # MindSpore evaluates `python_float / tensor` as a product with the float32 reciprocal.
        return lr * (_F32(1.0) / (_F32(1.0) + rate * p))

    return schedule


def cosine_decay(min_lr: float, max_lr: float, decay_steps: int) -> Schedule:
    """MindSpore's ``CosineDecayLR``: ``min_lr + 0.5 (max_lr - min_lr) (1 + cos(pi p / decay_steps))``.

    ``p = min(step, decay_steps)``; computed as MindSpore does, with ``sin(pi (p / decay_steps + 0.5))`` in place
    of the cosine. Reference: MindSpore 2.10 ``nn.CosineDecayLR``.

    Args:
        min_lr: float ``>= 0``.
        max_lr: float ``> 0``, greater than ``min_lr``.
        decay_steps: int ``> 0``.

    Raises:
        TypeError: ``min_lr``/``max_lr`` not a float, ``decay_steps`` not an int.
        ValueError: a value out of range, or ``min_lr >= max_lr``.

    Example:
        >>> lr = jaxopt_ms.schedules.cosine_decay(0.01, 0.1, 10)
    """
    name = "CosineDecayLR"
    check_non_negative_float("min_lr", min_lr, name)
    check_positive_float("max_lr", max_lr, name)
    check_positive_int("decay_steps", decay_steps, name)
    if min_lr >= max_lr:
        raise ValueError(
            f"For '{name}', the 'max_lr' must be greater than the 'min_lr', but got 'max_lr' value: {max_lr!r}, "
            f"'min_lr' value: {min_lr!r}."
        )
    low, delta, steps, pi = _F32(min_lr), _F32(0.5 * (max_lr - min_lr)), _F32(decay_steps), _F32(math.pi)

    def schedule(step):
        p = jnp.minimum(_step(step), steps)
        return low + delta * (_F32(1.0) + jnp.sin(pi * (_ratio(p, steps) + _F32(0.5))))

    return schedule


def polynomial_decay(learning_rate: float, end_learning_rate: float, decay_steps: int, power: float,
                     update_decay_steps: bool = False) -> Schedule:
    """MindSpore's ``PolynomialDecayLR``: ``(lr - end) * (1 - s / D) ** power + end``.

    Default: ``s = min(step, decay_steps)``, ``D = decay_steps`` (holds ``end`` afterwards). With
    ``update_decay_steps``: ``s = step``, ``D = decay_steps * max(ceil(step / decay_steps), 1)`` (the decay
    restarts towards ``end`` over every next ``decay_steps``). ``end > lr`` is allowed (the rate grows).
    Reference: MindSpore 2.10 ``nn.PolynomialDecayLR``.

    Args:
        learning_rate: float ``> 0``.
        end_learning_rate: float ``>= 0``.
        decay_steps: int ``> 0``.
        power: float ``> 0``.
        update_decay_steps: see above.

    Raises:
        TypeError: a float argument that is not a float (an int too), ``decay_steps`` not an int,
            ``update_decay_steps`` not a bool.
        ValueError: a value out of range.

    Example:
        >>> lr = jaxopt_ms.schedules.polynomial_decay(0.1, 0.01, 100, 0.5)
    """
    name = "PolynomialDecayLR"
    check_positive_float("learning_rate", learning_rate, name)
    check_non_negative_float("end_learning_rate", end_learning_rate, name)
    check_positive_int("decay_steps", decay_steps, name)
    check_bool("update_decay_steps", update_decay_steps, name)
    check_positive_float("power", power, name)
    diff, end, steps, pw = _F32(learning_rate - end_learning_rate), _F32(end_learning_rate), _F32(decay_steps), \
        _F32(power)

    def schedule(step):
        s = _step(step)
        if update_decay_steps:
            horizon = steps * jnp.maximum(jnp.ceil(_ratio(s, steps)), _F32(1.0))
        else:
            s = jnp.minimum(s, steps)
            horizon = steps
        # s <= horizon, so the exact ratio is <= 1 and the base >= 0; the clamp keeps a fractional power of a
        # base that rounding could ever push below 0 from being NaN (MindSpore's base is never negative).
        base = jnp.maximum(_F32(1.0) - _ratio(s, horizon), _F32(0.0))
        return diff * jnp.power(base, pw) + end

    return schedule


def warmup(learning_rate: float, warmup_steps: int) -> Schedule:
    """MindSpore's ``WarmUpLR``: ``lr * min(step, warmup_steps) / warmup_steps`` (0 at step 0).

    Reference: MindSpore 2.10 ``nn.WarmUpLR``.

    Args:
        learning_rate: float ``>= 0``.
        warmup_steps: int ``> 0``.

    Raises:
        TypeError: ``learning_rate`` not a float, ``warmup_steps`` not an int.
        ValueError: a value out of range.

    Example:
        >>> lr = jaxopt_ms.schedules.warmup(0.1, 100)
    """
    name = "WarmUpLR"
    check_non_negative_float("learning_rate", learning_rate, name)
    check_positive_int("warmup_steps", warmup_steps, name)
    lr, steps = _F32(learning_rate), _F32(warmup_steps)

    def schedule(step):
        return lr * _ratio(jnp.minimum(_step(step), steps), steps)

    return schedule
