"""The hyperparameters MindSpore saves in a checkpoint, checked against the jaxopt_ms optimizer that continues it.

MindSpore 2.10's ``save_checkpoint(train_cell)`` writes the optimizer's ``Parameter`` attributes. Among them, the
ones the optimizer is *built from* (``scripts/mindspore_fixtures/checkpoints.py`` lists them per optimizer in
``tests/fixtures/checkpoints/saved_hyperparameters.json``):

- ``learning_rate``: every optimizer with a fixed rate (a 0-d value) or a per-step list (1-d, read at
  ``global_step``); a ``LearningRateSchedule`` saves nothing;
- ``learning_rate_group_<i>``: a parameter group ``i`` with its own ``lr`` (groups without one use
  ``learning_rate``);
- ``momentum``: ``SGD``, ``Momentum`` and ``LARS`` around a Momentum (RMSProp keeps its momentum unsaved).

Every other hyperparameter (betas, eps, weight decay, the loss scale's factor and window, ...) is a plain
attribute or a constant ``Tensor`` that MindSpore does not save: those cannot be checked from a file. A value that
differs from the optimizer's is a ``ValueError`` naming the entry, both values and the fix; continuing silently
would train on with another rule (a Momentum run saved with ``momentum=0.9`` and continued with 0.5 diverges by
0.26 in 30 steps).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_ms.groups import ParamGroupsState
from jaxopt_ms.transforms.adafactor import AdaFactorState
from jaxopt_ms.transforms.sgd import ScaleBySgdState

__all__: list[str] = []

# MindSpore entries that are hyperparameters (checked here; the JAX optimizer carries its own) or bookkeeping
# (ModelCheckpoint's append_info; LARS's placeholders; AdaFactor's step, checked against global_step).
HYPERPARAMETER = re.compile(r"^(learning_rate(_group_\d+)?|momentum|fake_lr|fake_param|afactor_step|epoch_num|"
                            r"step_num)$")
# TrainOneStepWithLossScaleCell's scale and DynamicLossScaleUpdateCell's counters.
LOSS_SCALE_ENTRIES = ("scale_sense", "current_iterator_step", "last_overflow_iterator_step")


def _f32(x: np.ndarray) -> float:
    return float(np.float32(np.asarray(x).reshape(())))


def _saved_rate(ckpt: dict, name: str, step: int | None) -> tuple[float, str] | None:
    """The saved rate ``name`` for the next step (a per-step list read at ``global_step``) and where it is."""
    saved = ckpt.get(name)
    if saved is None or saved.ndim > 1 or saved.size == 0:
        return None
    if saved.ndim == 1:
        return _f32(saved.reshape(-1)[min(step or 0, saved.size - 1)]), f"{name!r}[{min(step or 0, saved.size - 1)}]"
    return _f32(saved), repr(name)


def _quantised(lr: float) -> float:
    """MindSpore's group rate when another rate is dynamic: ``f32(f32(lr + 1) - 1)`` (reference §2.3)."""
    return float(np.float32(np.float32(np.float32(lr) + np.float32(1.0)) - np.float32(1.0)))


def check_learning_rates(ckpt: dict, rates: Sequence[float], grouped: bool, step: int | None) -> None:
    """The next learning rate of each jaxopt_ms group (or of the optimizer, ``grouped=False``) against MindSpore's.

    Ungrouped, ``learning_rate`` is the optimizer's rate. Grouped, ``learning_rate_group_<i>`` is group ``i``'s
    rate (MindSpore numbers the groups by their place in the list; a group whose numbering cannot be matched, e.g.
    after an ``order_params`` dict placed first, is not checked); a group without its own entry may run on the
    default ``learning_rate`` or on a schedule (which saves nothing), so it is not checked. A fixed group rate
    mixed with dynamic ones runs quantised, which is accepted.
    """
    if not grouped:
        found = _saved_rate(ckpt, "learning_rate", step)
        if found is None or len(rates) != 1:
            return
        _compare_rate(found, float(np.float32(rates[0])), step, "learning_rate")
        return
    indices = [int(k[len("learning_rate_group_"):]) for k in ckpt if k.startswith("learning_rate_group_")]
    if not indices or max(indices) >= len(rates):
        return
    for i in indices:
        found = _saved_rate(ckpt, f"learning_rate_group_{i}", step)
        if found is not None and float(np.float32(rates[i])) == _quantised(found[0]):
            continue
        if found is not None:
            _compare_rate(found, float(np.float32(rates[i])), step, f"the 'lr' of parameter group {i}")


def _compare_rate(found: tuple[float, str], have: float, step: int | None, what: str) -> None:
    want, where = found
    if want != have:
        raise ValueError(f"The checkpoint's learning rate for the next step is {want:.7g} (entry {where} at "
                         f"global_step {step}), but the optimizer's is {have:.7g}: build the optimizer with "
                         f"MindSpore's {what} ({want:.7g}), or change it with jaxopt_ms.set_lr.")


def check_momentum(ckpt: dict, have: Sequence[float] | None, opt_name: str) -> None:
    """MindSpore's saved ``momentum`` against the momentum the optimizer applies (``have``: the distinct values
    found in its momentum buffers, ``None`` where it keeps none, i.e. momentum 0)."""
    saved = ckpt.get("momentum")
    if saved is None or saved.size != 1:
        return
    want = _f32(saved)
    values = [0.0] if have is None else sorted(set(have))
    if values == [want]:
        return
    got = ", ".join(f"{v:.7g}" for v in values)
    raise ValueError(f"Checkpoint entry 'momentum' is {want:.7g} (the momentum the MindSpore run was built with), but "
                     f"the optimizer applies momentum {got}: build it with MindSpore's value, e.g. "
                     f"{opt_name}(..., momentum={want:.7g}); continuing with another momentum follows another "
                     "trajectory from the first step.")


def loss_scale_error(ckpt: dict, left: Sequence[str]) -> str | None:
    """The error for loss-scale entries in a checkpoint whose optimizer has no loss-scale wrapper."""
    found = [k for k in LOSS_SCALE_ENTRIES if k in left]
    if not found:
        return None
    scale = _f32(ckpt["scale_sense"]) if "scale_sense" in ckpt and ckpt["scale_sense"].size == 1 else None
    shown = f" (scale_sense = {scale:.7g})" if scale is not None else ""
    if "current_iterator_step" in ckpt:
        fix = ("jaxopt_ms.loss_scale.dynamic_loss_scale(optimizer, init_loss_scale=..., scale_factor=..., "
               "scale_window=...) with the DynamicLossScaleUpdateCell's (or DynamicLossScaleManager's) arguments")
    else:
        fix = ("jaxopt_ms.loss_scale.fixed_loss_scale(optimizer, loss_scale=...) with the FixedLossScaleManager's "
               "arguments")
    return (f"The checkpoint holds MindSpore's loss-scale state {found}{shown}, saved by "
            "TrainOneStepWithLossScaleCell, but the optimizer has no loss-scale wrapper: wrap it as "
            f"{fix}, so that the scale and its counters continue from the file. (ignore={found!r} would drop them: "
            "the run would then continue without MindSpore's loss scale.)")


def check_against_optimizer(optimizer: Any, ckpt: dict, state: Any, params: Any, step: int | None,
                           rmsprop: bool) -> None:
    """Checks the hyperparameters MindSpore saved against the optimizer and its restored ``state``; every
    difference is reported in one ``ValueError``."""
    from jaxopt_ms.mindspore_checkpoint.optimizer_state import _contains, _walk  # (imports this module)

    problems = []
    if not _contains(state, (AdaFactorState,)):  # AdaFactor's saved rate is unused with relative_step
        groups = _find(state, ParamGroupsState)
        inner = groups.inner_states if groups is not None else (state,)
        rates = []
        for sub in inner:
            found: list = []
            _walk(sub, lambda f, v, w: found.append(v) if f.kind == "lr" else v, "", False)
            rates.append(found)
        if all(len(r) == 1 for r in rates):
            try:
                check_learning_rates(ckpt, [float(np.asarray(r[0])) for r in rates], groups is not None, step)
            except ValueError as e:
                problems.append(str(e))
    if "momentum" in ckpt:
        try:
            check_momentum(ckpt, _momentum_of(optimizer, state, params, rmsprop), _opt_name(state))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError(problems[0] if len(problems) == 1 else
                         "The optimizer differs from MindSpore's in several saved hyperparameters:\n- "
                         + "\n- ".join(problems))


def _opt_name(state: Any) -> str:
    from jaxopt_ms.mindspore_checkpoint.optimizer_state import _contains

    return "jaxopt_ms.sgd" if _contains(state, (ScaleBySgdState,)) else "jaxopt_ms.momentum"


def _momentum_of(optimizer: Any, state: Any, params: Any, rmsprop: bool) -> list[float] | None:
    """The momentum the optimizer applies, measured: one update with zero gradients and parameters from a state
    whose momentum buffers are 1 (and SGD's first-step flag cleared) leaves ``momentum * 1`` in the buffers.
    ``None`` where the optimizer keeps no momentum buffer, or carries it untouched and passes the (zero) gradient
    through (momentum 0; a momentum of 1 moves the parameters by the buffer)."""
    from jaxopt_ms.mindspore_checkpoint.optimizer_state import _Field, _jitted_update, _walk

    if not _walk_collect(state, rmsprop, lambda f: f.momentum):
        return None

    def prepare(field: _Field, value: Any, where: str) -> Any:
        if field.momentum:
            return jax.tree.map(jnp.ones_like, value)
        return jnp.zeros_like(value) if field.kind == "stat" else value

    probe = _walk(state, prepare, "", rmsprop)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, after = _jitted_update(optimizer)(zeros, probe, zeros)
    values = _walk_collect(after, rmsprop, lambda f: f.momentum)
    found = sorted({float(x) for v in values for leaf in jax.tree.leaves(v) for x in np.unique(np.asarray(leaf))})
    if found == [1.0] and not any(np.any(np.asarray(u)) for u in jax.tree.leaves(updates)):
        return None  # the buffers passed through untouched and the zero gradient with them: momentum 0 (SGD)
    return found


def _walk_collect(state: Any, rmsprop: bool, pick: Callable[[Any], bool]) -> list:
    from jaxopt_ms.mindspore_checkpoint.optimizer_state import _walk

    found: list = []

    def visit(field: Any, value: Any, where: str) -> Any:
        if pick(field):
            found.append(value)
        return value

    _walk(state, visit, "", rmsprop)
    return found


def _find(tree: Any, kind: type) -> Any:
    """The first node of type ``kind`` in a state (NamedTuples, tuples, lists, dicts), or ``None``."""
    if isinstance(tree, kind):
        return tree
    children = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()
    for child in children:
        found = _find(child, kind)
        if found is not None:
            return found
    return None
