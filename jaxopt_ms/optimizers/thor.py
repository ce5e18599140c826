"""THOR: MindSpore's second-order optimizer ``nn.thor`` (GPU/CPU class ``ThorGpu``), reference §3.14."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.names import decay_all
from jaxopt_ms.thor_layers import LayerStatistics
from jaxopt_ms.transforms.clip import clip_by_norm
from jaxopt_ms.transforms.learning_rate import resolve_learning_rate, scale_by_learning_rate
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.transforms.thor import scale_by_thor
from jaxopt_ms.transforms.weight_decay import add_decayed_weights
from jaxopt_ms.validation import (
    check_bool,
    check_callable,
    check_float_range,
    check_int,
    check_loss_scale,
    check_positive_int,
    check_weight_decay,
)

__all__ = ["thor"]

_NAME = "THOR"


def _check_rate(arg_name: str, value: Any) -> Any:
    """MindSpore takes ``learning_rate`` and ``damping`` as Tensors (0-d or 1-d); a schedule is our extension."""
    if isinstance(value, (jax.Array, np.ndarray)) or callable(value):
        resolve_learning_rate(value, _NAME, arg_name)
        return value
    raise TypeError(
        f"For '{_NAME}', the type of '{arg_name}' should be an array (0-d: fixed, 1-d: one value per step) or a "
        f"callable schedule, but got type '{type(value).__name__}' (value {value!r})."
    )


@optimizer_factory
def thor(
    learning_rate: Any,
    damping: Any,
    momentum: float,
    weight_decay: float = 0.0,
    loss_scale: float = 1.0,
    batch_size: int = 32,
    use_nesterov: bool = False,
    decay_filter: Callable[[str, Any], bool] = decay_all,
    split_indices: list[int] | None = None,
    enable_clip_grad: bool = False,
    frequency: int = 100,
    *,
    layer_norm_filter: Callable[[str, Any], bool] | None = None,
    layers: Mapping[str, LayerStatistics] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """MindSpore's THOR (``ThorGpu``): K-FAC-like preconditioning of dense, conv and embedding layers, then Momentum.

        g = g * f32(1/loss_scale)
        g = Ginv @ g @ Ainv    (registered layers; inverses refreshed every ``frequency`` steps, see
                                :mod:`jaxopt_ms.transforms.thor`); LayerNorm leaves: g / (g²/batch + sqrt(lam))
        g = (Ainv[:, None] * g) @ Ginv      (embedding tables: Ainv from the row counts, Ginv = L⁻¹ @ L⁻¹)
        g = g + weight_decay * w            (``decay_filter`` leaves, raw wd, AFTER preconditioning)
        g = g * 1 / max(||g||, 1)           (per leaf, if ``enable_clip_grad``)
        v = momentum * v + g;  p -= lr(k) * v      (nesterov: p -= lr(k) * (g + momentum * v), GPU kernel)

    The statistics come from the model's tagged layers (:mod:`jaxopt_ms.thor_layers`) and are passed to every
    update: ``opt.update(grads, state, params, statistics=stats)``. ``damping(k)`` is indexed by THOR's own
    counter. ``split_indices`` only sets MindSpore's all-reduce fusion in distributed runs: accepted, no effect.

    Args:
        learning_rate: a 0-d array (fixed), a 1-d array (update ``k`` uses element ``k``; the last is held past
            the end) or a callable schedule. A Python float is rejected (``TypeError``), as in MindSpore.
        damping: same forms as ``learning_rate``.
        momentum: float ``>= 0``.
        weight_decay: float ``>= 0`` added after preconditioning. loss_scale: float ``> 0``.
        batch_size: the training batch size (rescales G). frequency: int ``>= 2``.
        decay_filter: ``(name, leaf) -> bool``; default: every leaf (MindSpore's THOR default).
        layer_norm_filter: ``(name, leaf) -> bool`` for LayerNorm parameters (default: none).
        layers: optional statistics shapes to allocate the inverses in ``init`` (see ``scale_by_thor``).

    Reference: MindSpore 2.10 ``nn.thor`` (class ``ThorGpu``; its CPU build lacks the ops, so the rule is
    checked against a NumPy transcription of it).

    Example:
        >>> from jaxopt_ms import register_dense, value_grad_and_statistics
        >>> params = {'fc': {'kernel': jnp.ones((3, 2)), 'bias': jnp.zeros(2)}}
        >>> loss_fn = lambda p, x: jnp.mean(register_dense(x, p['fc']['kernel'], p['fc']['bias']) ** 2)
        >>> opt = jaxopt_ms.thor(jnp.full(100, 0.05), jnp.full(100, 0.03), 0.9, batch_size=4, frequency=10)
        >>> loss, grads, stats = value_grad_and_statistics(loss_fn, params, jnp.ones((4, 3)))
        >>> updates, state = opt.update(grads, opt.init(params), params, statistics=stats)
    """
    momentum = check_float_range("momentum", momentum, _NAME, 0.0)
    frequency = check_int("frequency", frequency, _NAME, lower=2)
    learning_rate = _check_rate("learning_rate", learning_rate)
    damping = _check_rate("damping", damping)
    weight_decay = check_weight_decay(weight_decay, _NAME, allow_schedule=False)
    loss_scale = check_loss_scale(loss_scale, _NAME)
    batch_size = check_positive_int("batch_size", batch_size, _NAME)
    check_bool("use_nesterov", use_nesterov, _NAME)
    check_bool("enable_clip_grad", enable_clip_grad, _NAME)
    check_callable("decay_filter", decay_filter, _NAME)
    if split_indices is not None and not isinstance(split_indices, (list, tuple)):
        raise TypeError(f"For '{_NAME}', 'split_indices' should be a list of ints or None, but got "
                        f"{split_indices!r}.")

    blocks = [
        unscale_gradients(loss_scale),
        scale_by_thor(damping, loss_scale, batch_size, frequency, layer_norm_filter, layers),
    ]
    if weight_decay > 0.0:
        blocks.append(add_decayed_weights(weight_decay, 1.0, decay_filter))
    if enable_clip_grad:
        blocks.append(clip_by_norm(1.0))
    blocks.append(optax.trace(decay=momentum, nesterov=use_nesterov))
    blocks.append(scale_by_learning_rate(learning_rate))
    return optax.chain(*blocks)
