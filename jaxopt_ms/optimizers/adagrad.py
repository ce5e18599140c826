"""Adagrad and ProximalAdagrad: MindSpore's ``nn.Adagrad`` and ``nn.ProximalAdagrad`` (reference §3.10, §3.11)."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import preprocess
from jaxopt_ms.transforms.adagrad import apply_adagrad
from jaxopt_ms.transforms.proximal_adagrad import apply_proximal_adagrad
from jaxopt_ms.validation import check_bool, check_loss_scale, check_non_negative_float

__all__ = ["adagrad", "proximal_adagrad"]


@optimizer_factory
def adagrad(accum=0.1, learning_rate=0.001, update_slots=True, loss_scale=1.0, weight_decay=0.0, *,
            param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's Adagrad (op ``ApplyAdagrad``): ``a += g²`` (if ``update_slots``), ``p -= lr * g / sqrt(a)``.

    The accumulator starts at ``accum`` (0.1) and there is no epsilon (MindSpore's class docstring, which shows
    one, is wrong). ``update_slots=False`` freezes the accumulator as the documented formula and the GPU kernel do
    (MindSpore's CPU kernel ignores it). Gradients first get MindSpore's weight decay, gradient centralization
    (groups) and loss-scale division. Reference: MindSpore 2.10 ``nn.Adagrad``.

    Example:
        >>> opt = jaxopt_ms.adagrad(accum=0.1, learning_rate=0.01, weight_decay=1e-4)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "Adagrad"
    accum = check_non_negative_float("accum", accum, name)
    check_bool("update_slots", update_slots, name)
    loss_scale = check_loss_scale(loss_scale, name)
    return with_param_groups(
        lambda cfg: optax.chain(*preprocess(cfg, loss_scale, opt_name=name),
                                apply_adagrad(cfg.learning_rate, accum, update_slots)),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )


@optimizer_factory
def proximal_adagrad(accum=0.1, learning_rate=0.001, l1=0.0, l2=0.0, use_locking=False, loss_scale=1.0,
                     weight_decay=0.0, *, param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's ProximalAdagrad (op ``ApplyProximalAdagrad``): Adagrad followed by a proximal step.

        a += g²;  eta = lr / sqrt(a);  v = p - eta g
        p  = sign(v) max(|v| - eta l1, 0) / (1 + eta l2)

    The accumulator starts at ``accum`` (0.1). Gradients first get MindSpore's weight decay, gradient
    centralization (groups) and loss-scale division; ``lr`` may be dynamic or per group. ``use_locking`` is
    validated and has no effect. Row-sparse gradients: see :mod:`jaxopt_ms.sparse`. Reference: MindSpore 2.10
    ``nn.ProximalAdagrad``.

    Example:
        >>> opt = jaxopt_ms.proximal_adagrad(learning_rate=0.1, l1=1e-3, l2=1e-3)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "ProximalAdagrad"
    accum = check_non_negative_float("accum", accum, name)
    l1 = check_non_negative_float("l1", l1, name)
    l2 = check_non_negative_float("l2", l2, name)
    check_bool("use_locking", use_locking, name)
    loss_scale = check_loss_scale(loss_scale, name)
    return with_param_groups(
        lambda cfg: optax.chain(*preprocess(cfg, loss_scale, opt_name=name, row_sparse=True),
                                apply_proximal_adagrad(cfg.learning_rate, accum, l1, l2)),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )
