"""Lamb: MindSpore's ``nn.Lamb`` (op ``Lamb``, GPU kernel), reference §3.7."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import GroupConfig, with_param_groups
from jaxopt_ms.optimizers.adam import check_adam_args
from jaxopt_ms.transforms.centralization import centralize_gradients
from jaxopt_ms.transforms.lamb import scale_by_lamb
from jaxopt_ms.transforms.learning_rate import scale_by_learning_rate

__all__ = ["lamb"]


@optimizer_factory
def lamb(learning_rate, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, *, param_groups=None,
         decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's Lamb with a per-leaf trust ratio, as MindSpore 2.10's GPU kernel computes it.

        m, v as Adam;  mh = m / (1 - b1^t);  vh = v / (1 - b2^t)     (t = step count after the update)
        r    = mh / (sqrt(vh) + eps) + wd p;   ghat = mh / sqrt(vh + eps) + wd p
        tr   = clip(||p|| / ||ghat||, 0, 10)   (1 if a norm is 0; nan -> 0)
        p   -= lr * tr * r

    ``wd`` applies to the leaves the decay filter selects (default: names without 'beta'/'gamma'; every leaf of a
    group with ``weight_decay > 0``) and may be dynamic. No loss scale, no coupled weight decay; gradient
    centralization (groups) applies to the raw gradient. MindSpore cannot run Lamb on the CPU. Reference:
    MindSpore 2.10 ``nn.Lamb``.

    Example:
        >>> opt = jaxopt_ms.lamb(1e-3, weight_decay=0.01)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "Lamb"
    check_adam_args(name, beta1, beta2, eps)

    def build(cfg: GroupConfig) -> optax.GradientTransformation:
        blocks = [centralize_gradients()] if cfg.grad_centralization else []
        blocks.append(scale_by_lamb(beta1, beta2, eps, cfg.weight_decay, cfg.decay_filter))
        blocks.append(scale_by_learning_rate(cfg.learning_rate))
        return optax.chain(*blocks)

    return with_param_groups(build, learning_rate=learning_rate, weight_decay=weight_decay,
                             param_groups=param_groups, decay_filter=decay_filter, opt_name=name)
