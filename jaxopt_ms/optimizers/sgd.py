"""SGD and Momentum: MindSpore's ``nn.SGD`` and ``nn.Momentum`` (reference §3.1, §3.2)."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain
from jaxopt_ms.transforms.sgd import scale_by_sgd
from jaxopt_ms.validation import check_bool, check_float_range, check_loss_scale, concrete_value

__all__ = ["momentum", "sgd"]


@optimizer_factory
def sgd(learning_rate=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, loss_scale=1.0, *,
        param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's SGD: ``accum = g`` on the first step, then ``momentum * accum + (1 - dampening) * g``.

    ``p -= lr * (g + momentum * accum)`` (nesterov) or ``p -= lr * accum``; with ``momentum == 0``,
    ``p -= lr * g`` and dampening is ignored. Gradients first get MindSpore's weight decay and loss-scale
    division. Reference: MindSpore 2.10 ``nn.SGD``.

    Example:
        >>> opt = jaxopt_ms.sgd(0.1, momentum=0.9, weight_decay=1e-4)
        >>> state = opt.init({'w': jnp.ones(3)})
    """
    name = "SGD"
    momentum = check_float_range("momentum", momentum, name, 0.0, strict=False)
    dampening = check_float_range("dampening", dampening, name, 0.0, strict=False)
    check_bool("nesterov", nesterov, name)
    m_value, d_value = concrete_value(momentum), concrete_value(dampening)  # None when traced: not checkable
    if nesterov and ((m_value is not None and m_value <= 0.0) or (d_value is not None and d_value != 0.0)):
        raise ValueError(
            f"For '{name}', if 'nesterov' is true, 'momentum' must be > 0.0 and 'dampening' must equal 0.0, "
            f"but got 'momentum' {momentum!r} and 'dampening' {dampening!r}."
        )
    loss_scale = check_loss_scale(loss_scale, name)
    return with_param_groups(
        lambda cfg: mindspore_chain(scale_by_sgd(momentum, dampening, nesterov), cfg, loss_scale, opt_name=name),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name, allow_dynamic_weight_decay=False,
    )


@optimizer_factory
def momentum(learning_rate, momentum, weight_decay=0.0, loss_scale=1.0, use_nesterov=False, *,
             param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's Momentum (op ``ApplyMomentum``): ``v = momentum * v + g``.

    ``p -= lr * v``, or with ``use_nesterov`` ``p -= lr * g + lr * momentum * v`` (the documented formula and
    the GPU kernel; MindSpore's CPU kernel ignores ``use_nesterov``). The momentum buffer is
    ``optax.trace``, whose semantics are MindSpore's. Reference: MindSpore 2.10 ``nn.Momentum``.

    Example:
        >>> opt = jaxopt_ms.momentum(0.1, 0.9, use_nesterov=True)
    """
    name = "Momentum"
    momentum_value = check_float_range("momentum", momentum, name, 0.0)
    check_bool("use_nesterov", use_nesterov, name)
    loss_scale = check_loss_scale(loss_scale, name)
    return with_param_groups(
        lambda cfg: mindspore_chain(optax.trace(decay=momentum_value, nesterov=use_nesterov), cfg, loss_scale,
                                    opt_name=name),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )
