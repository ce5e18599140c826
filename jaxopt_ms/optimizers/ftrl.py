"""FTRL: MindSpore's ``nn.FTRL`` (op ``ApplyFtrl``), reference §3.8."""

from __future__ import annotations

import numpy as np
import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.names import decay_all
from jaxopt_ms.optimizers._pipeline import preprocess
from jaxopt_ms.transforms.ftrl import apply_ftrl
from jaxopt_ms.transforms.learning_rate import resolve_learning_rate
from jaxopt_ms.validation import (
    check_bool,
    check_float_range,
    check_loss_scale,
    check_non_negative_float,
    check_positive_float,
    is_extension,
)

__all__ = ["ftrl"]


def _is_dynamic(learning_rate) -> bool:
    return callable(learning_rate) or isinstance(learning_rate, (list, tuple)) or np.ndim(learning_rate) == 1


@optimizer_factory
def ftrl(initial_accum=0.1, learning_rate=0.001, lr_power=-0.5, l1=0.0, l2=0.0, use_locking=False, loss_scale=1.0,
         weight_decay=0.0, *, param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's FTRL-Proximal (op ``ApplyFtrl``), every element re-solved at every step (``P = -lr_power``).

        a1 = a + g²;  lin += g - (a1^P - a^P) / lr * p
        p  = (sign(lin) l1 - lin) / (a1^P / lr + 2 l2)  if |lin| > l1  else 0;   a = a1

    ``learning_rate`` is a fixed float (MindSpore rejects dynamic and per-group learning rates). Without groups,
    weight decay applies to *every* leaf (MindSpore's FTRL overrides the beta/gamma name rule); ``decay_filter``
    overrides that. The sign of ``lin`` is the documented formula's and the GPU kernel's (MindSpore's dense CPU
    kernel uses ``+l1``). ``use_locking`` is validated and has no effect. Row-sparse gradients: see
    :mod:`jaxopt_ms.sparse`. Reference: MindSpore 2.10 ``nn.FTRL``.

    Example:
        >>> opt = jaxopt_ms.ftrl(learning_rate=0.1, l1=1e-3, l2=1e-3)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "FTRL"
    if not (is_extension(learning_rate) and np.ndim(learning_rate) == 0):
        # MindSpore's base class parses the rate first ('abc': ValueError); a 0-d Tensor passes it unchecked and FTRL
        # then rejects its type: a 0-d array or NumPy scalar (the JAX extension) is checked below, type first
        resolve_learning_rate(learning_rate, name)
    group_lr = param_groups is not None and any(isinstance(g, dict) and "lr" in g for g in param_groups)
    if _is_dynamic(learning_rate) or group_lr:
        raise ValueError(
            f"For '{name}', dynamic learning rate and group learning rate are currently not supported, but got "
            f"'learning_rate' {learning_rate!r} and group learning rate {group_lr}."
        )
    initial_accum = check_non_negative_float("initial_accum", initial_accum, name)
    learning_rate = check_positive_float("learning_rate", learning_rate, name)
    lr_power = check_float_range("lr_power", lr_power, name, None, 0.0)
    l1 = check_non_negative_float("l1", l1, name)
    l2 = check_non_negative_float("l2", l2, name)
    check_bool("use_locking", use_locking, name)
    loss_scale = check_loss_scale(loss_scale, name)
    if param_groups is None and decay_filter is None:
        decay_filter = decay_all
    return with_param_groups(
        lambda cfg: optax.chain(*preprocess(cfg, loss_scale, opt_name=name, row_sparse=True),
                                apply_ftrl(cfg.learning_rate, initial_accum, lr_power, l1, l2)),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )


ftrl.default_decay_filter = decay_all
