"""AdaMax: MindSpore's ``nn.AdaMax`` (op ``ApplyAdaMax``), reference §7."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain
from jaxopt_ms.optimizers.adam import check_adam_args
from jaxopt_ms.transforms.adamax import scale_by_adamax
from jaxopt_ms.validation import check_loss_scale

__all__ = ["adamax"]


@optimizer_factory
def adamax(learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, loss_scale=1.0, *,
           param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's AdaMax (op ``ApplyAdaMax``).

        b1p *= b1;  m <- b1 m + (1 - b1) g;  v <- max(b2 v, |g|);  p -= lr / (1 - b1p) * m / (v + eps)

    Gradients first get MindSpore's weight decay, gradient centralization (groups) and loss-scale division.
    Reference: MindSpore 2.10 ``nn.AdaMax``.

    Example:
        >>> opt = jaxopt_ms.adamax(2e-3)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "AdaMax"
    loss_scale = check_loss_scale(loss_scale, name)
    check_adam_args(name, beta1, beta2, eps)
    return with_param_groups(
        lambda cfg: mindspore_chain(scale_by_adamax(beta1, beta2, eps), cfg, loss_scale),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )
