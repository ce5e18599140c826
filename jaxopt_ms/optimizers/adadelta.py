"""Adadelta: MindSpore's ``nn.Adadelta`` (op ``ApplyAdadelta``), reference §7."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain
from jaxopt_ms.transforms.adadelta import scale_by_adadelta
from jaxopt_ms.validation import check_float_range, check_loss_scale, check_non_negative_float

__all__ = ["adadelta"]


@optimizer_factory
def adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-6, loss_scale=1.0, weight_decay=0.0, *, param_groups=None,
             decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's Adadelta (op ``ApplyAdadelta``).

        a  <- rho a + (1 - rho) g²;   d = sqrt(au + eps) g / sqrt(a + eps)
        au <- rho au + (1 - rho) d²;  p -= lr d

    Gradients first get MindSpore's weight decay, gradient centralization (groups) and loss-scale division.
    Reference: MindSpore 2.10 ``nn.Adadelta``.

    Example:
        >>> opt = jaxopt_ms.adadelta(1.0, rho=0.95)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "Adadelta"
    loss_scale = check_loss_scale(loss_scale, name)
    rho = check_float_range("rho", rho, name, 0.0, 1.0)
    epsilon = check_non_negative_float("epsilon", epsilon, name)
    return with_param_groups(
        lambda cfg: mindspore_chain(scale_by_adadelta(rho, epsilon), cfg, loss_scale),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )
