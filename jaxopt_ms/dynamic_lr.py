"""MindSpore's ``nn.dynamic_lr`` builders: per-step learning-rate lists (Python floats, float64).

Each returns a list of length ``total_step`` (``piecewise_constant_lr``: ``milestone[-1]``) whose element ``i``
is the learning rate of update ``i``; pass it as ``learning_rate=`` (or a group's ``'lr'``). The epoch of step
``i`` is ``e = floor(i / step_per_epoch)``; formulas, evaluation order and validation are MindSpore's, so the
lists are equal to MindSpore's element for element (reference §5).

Past the end of a list MindSpore raises (``RuntimeError`` from ``Gather``); a jitted update cannot raise, so
``jaxopt_ms`` holds the last element instead. Build the list for as many steps as you train.

Example:
    >>> lr = jaxopt_ms.dynamic_lr.cosine_decay_lr(0.0, 0.1, total_step=1000, step_per_epoch=100, decay_epoch=10)
    >>> opt = jaxopt_ms.momentum(lr, 0.9)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jaxopt_ms.validation import (
    check_bool,
    check_float,
    check_non_negative_float,
    check_positive_float,
    check_positive_int,
)

__all__ = [
    "cosine_decay_lr",
    "exponential_decay_lr",
    "inverse_decay_lr",
    "natural_exp_decay_lr",
    "piecewise_constant_lr",
    "polynomial_decay_lr",
    "warmup_lr",
]


def _check_steps(fn: str, **ints: int) -> None:
    for arg_name, value in ints.items():
        check_positive_int(arg_name, value, fn)


def _check_decay_inputs(fn, learning_rate, decay_rate, total_step, step_per_epoch, decay_epoch, is_stair) -> None:
    # MindSpore's order (dynamic_lr._check_inputs), so the first bad argument is the one reported.
    _check_steps(fn, total_step=total_step, step_per_epoch=step_per_epoch, decay_epoch=decay_epoch)
    check_positive_float("learning_rate", learning_rate, fn)
    check_positive_float("decay_rate", decay_rate, fn)
    check_bool("is_stair", is_stair, fn)


def _epochs(total_step: int, step_per_epoch: int) -> list[int]:
    return [i // step_per_epoch for i in range(total_step)]


def piecewise_constant_lr(milestone: Sequence[int], learning_rates: Sequence[float]) -> list[float]:
    """``learning_rates[j]`` for steps ``milestone[j-1] <= i < milestone[j]`` (``milestone[-1]`` steps in all).

    Equal consecutive milestones are allowed (an empty segment).

    Raises:
        TypeError: ``milestone``/``learning_rates`` not a list or tuple, a milestone not an int, a rate not a
            float.
        ValueError: different lengths, a milestone ``<= 0`` or smaller than the previous one.

    Example:
        >>> jaxopt_ms.dynamic_lr.piecewise_constant_lr([2, 5], [0.1, 0.05])
        [0.1, 0.1, 0.05, 0.05, 0.05]
    """
    fn = "piecewise_constant_lr"
    for arg_name, value in (("milestone", milestone), ("learning_rates", learning_rates)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"For '{fn}', the type of '{arg_name}' should be one of 'list', 'tuple', but got type "
                f"'{type(value).__name__}' (value {value!r})."
            )
    if len(milestone) != len(learning_rates):
        raise ValueError(
            f"For '{fn}', the size of 'milestone' must be same with the size of 'learning_rates', but got "
            f"'milestone' size: {len(milestone)}, 'learning_rates' size: {len(learning_rates)}."
        )
    out: list[float] = []
    last = 0
    for i, (stop, rate) in enumerate(zip(milestone, learning_rates)):
        check_positive_int(f"milestone[{i}]", stop, fn)
        check_float(f"learning_rates[{i}]", rate, fn)
        if stop < last:
            raise ValueError(
                f"For '{fn}', the value of milestone[{i}] must be greater than or equal to milestone[{i - 1}], "
                f"but got milestone[{i}]: {stop}, milestone[{i - 1}]: {last}."
            )
        out += [rate] * (stop - last)
        last = stop
    return out


def exponential_decay_lr(learning_rate: float, decay_rate: float, total_step: int, step_per_epoch: int,
                         decay_epoch: int, is_stair: bool = False) -> list[float]:
    """``lr * decay_rate ** (e / decay_epoch)``; with ``is_stair`` the exponent is ``floor(e / decay_epoch)``.

    Raises:
        TypeError: ``learning_rate``/``decay_rate`` not a float, a step count not an int, ``is_stair`` not a
            bool.
        ValueError: a value ``<= 0``.

    Example:
        >>> lr = jaxopt_ms.dynamic_lr.exponential_decay_lr(0.1, 0.9, 100, 10, 2)
    """
    _check_decay_inputs("exponential_decay_lr", learning_rate, decay_rate, total_step, step_per_epoch,
                        decay_epoch, is_stair)
    if is_stair:
        return [learning_rate * decay_rate ** (e // decay_epoch) for e in _epochs(total_step, step_per_epoch)]
    return [learning_rate * decay_rate ** (e / decay_epoch) for e in _epochs(total_step, step_per_epoch)]


def natural_exp_decay_lr(learning_rate: float, decay_rate: float, total_step: int, step_per_epoch: int,
                         decay_epoch: int, is_stair: bool = False) -> list[float]:
    """``lr * e ** (-decay_rate * s)`` with ``s = e`` (the epoch) or, with ``is_stair``,
    ``s = floor(e / decay_epoch) * decay_epoch``.

    As in MindSpore, without ``is_stair`` the decay is per epoch and ``decay_epoch`` is unused (its docstring's
    formula says otherwise; reference §5, §9.17).

    Raises: as :func:`exponential_decay_lr`.
    """
    _check_decay_inputs("natural_exp_decay_lr", learning_rate, decay_rate, total_step, step_per_epoch,
                        decay_epoch, is_stair)
    epochs = _epochs(total_step, step_per_epoch)
    if is_stair:
        epochs = [e // decay_epoch * decay_epoch for e in epochs]
    # `math.e ** x`, not `math.exp(x)`: the two differ in the last bit and MindSpore uses the former.
    return [learning_rate * math.e ** (-decay_rate * e) for e in epochs]


def inverse_decay_lr(learning_rate: float, decay_rate: float, total_step: int, step_per_epoch: int,
                     decay_epoch: int, is_stair: bool = False) -> list[float]:
    """``lr / (1 + decay_rate * e / decay_epoch)``; with ``is_stair`` ``lr / (1 + decay_rate * floor(e /
    decay_epoch))``.

    Raises: as :func:`exponential_decay_lr`.
    """
    _check_decay_inputs("inverse_decay_lr", learning_rate, decay_rate, total_step, step_per_epoch, decay_epoch,
                        is_stair)
    if is_stair:
        return [learning_rate / (1 + decay_rate * (e // decay_epoch)) for e in _epochs(total_step, step_per_epoch)]
    return [learning_rate / (1 + decay_rate * e / decay_epoch) for e in _epochs(total_step, step_per_epoch)]


def cosine_decay_lr(min_lr: float, max_lr: float, total_step: int, step_per_epoch: int, decay_epoch: int
                    ) -> list[float]:
    """``min_lr + 0.5 (max_lr - min_lr) (1 + cos(pi min(e, decay_epoch) / decay_epoch))``.

    Raises:
        TypeError: ``min_lr``/``max_lr`` not a float, a step count not an int.
        ValueError: ``min_lr < 0``, ``max_lr <= 0``, a step count ``<= 0``, or ``min_lr >= max_lr``.
    """
    fn = "cosine_decay_lr"
    check_non_negative_float("min_lr", min_lr, fn)
    check_positive_float("max_lr", max_lr, fn)
    _check_steps(fn, total_step=total_step, step_per_epoch=step_per_epoch, decay_epoch=decay_epoch)
    if min_lr >= max_lr:
        raise ValueError(
            f"For '{fn}', the 'max_lr' must be greater than the 'min_lr', but got 'max_lr' value: {max_lr!r}, "
            f"'min_lr' value: {min_lr!r}."
        )
    delta = 0.5 * (max_lr - min_lr)
    return [min_lr + delta * (1 + math.cos(math.pi * min(e, decay_epoch) / decay_epoch))
            for e in _epochs(total_step, step_per_epoch)]


def polynomial_decay_lr(learning_rate: float, end_learning_rate: float, total_step: int, step_per_epoch: int,
                        decay_epoch: int, power: float, update_decay_epoch: bool = False) -> list[float]:
    """``(lr - end) * (1 - t / D) ** power + end``.

    Default ``t = min(e, decay_epoch)``, ``D = decay_epoch``; with ``update_decay_epoch`` ``t = e``,
    ``D = decay_epoch * max(ceil(e / decay_epoch), 1)``.

    Raises:
        TypeError: ``learning_rate``/``end_learning_rate``/``power`` not a float, a step count not an int,
            ``update_decay_epoch`` not a bool.
        ValueError: ``learning_rate <= 0``, ``end_learning_rate < 0``, ``power <= 0``, a step count ``<= 0``.
    """
    fn = "polynomial_decay_lr"
    check_positive_float("learning_rate", learning_rate, fn)
    check_non_negative_float("end_learning_rate", end_learning_rate, fn)
    check_positive_float("power", power, fn)
    _check_steps(fn, total_step=total_step, step_per_epoch=step_per_epoch, decay_epoch=decay_epoch)
    check_bool("update_decay_epoch", update_decay_epoch, fn)
    delta = learning_rate - end_learning_rate
    out = []
    for e in _epochs(total_step, step_per_epoch):
        if update_decay_epoch:
            t, horizon = e, decay_epoch * max(-(-e // decay_epoch), 1)
        else:
            t, horizon = min(e, decay_epoch), decay_epoch
        out.append(delta * (1 - t / horizon) ** power + end_learning_rate)
    return out


def warmup_lr(learning_rate: float, total_step: int, step_per_epoch: int, warmup_epoch: int) -> list[float]:
    """``lr * min(e, warmup_epoch) / warmup_epoch`` (0 during the first epoch).

    Raises:
        TypeError: ``learning_rate`` not a float, a step count not an int.
        ValueError: ``learning_rate < 0``, a step count ``<= 0``.
    """
    fn = "warmup_lr"
    check_non_negative_float("learning_rate", learning_rate, fn)
    _check_steps(fn, warmup_epoch=warmup_epoch, total_step=total_step, step_per_epoch=step_per_epoch)
    return [learning_rate * min(e, warmup_epoch) / warmup_epoch for e in _epochs(total_step, step_per_epoch)]
