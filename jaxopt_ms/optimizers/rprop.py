"""Rprop: MindSpore's ``nn.Rprop`` (resilient backpropagation), reference §7."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import preprocess
from jaxopt_ms.transforms.rprop import apply_rprop
from jaxopt_ms.validation import check_float, check_float_range

__all__ = ["rprop"]


def _check_pair(arg_name: str, value, name: str) -> None:
    if not isinstance(value, tuple):
        raise TypeError(f"For '{name}', '{arg_name}' must be a tuple, but got type '{type(value).__name__}' "
                        f"(value {value!r}).")
    if len(value) != 2:
        raise ValueError(f"For '{name}', '{arg_name}' must be a tuple of size 2, but got {value!r}.")


@optimizer_factory
def rprop(learning_rate=0.1, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), weight_decay=0.0, *, param_groups=None,
          decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's Rprop (resilient backpropagation), with ``step = lr(0)`` on the first update.

        s = etaplus if g prev > 0, etaminus if g prev < 0, else 1;  step = clip(step s, *step_sizes)
        g' = 0 where s == etaminus else g;  p -= sign(g') step;  prev = g'

    No loss scale (MindSpore's Rprop has none). Gradients first get MindSpore's weight decay and gradient
    centralization (groups). ``etas`` and ``step_sizes`` must be tuples, as in MindSpore. Reference: MindSpore
    2.10 ``nn.Rprop``.

    Example:
        >>> opt = jaxopt_ms.rprop(0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 1.0))
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "Rprop"
    _check_pair("etas", etas, name)
    _check_pair("step_sizes", step_sizes, name)
    if step_sizes[0] > step_sizes[1]:
        raise ValueError(f"For '{name}', the maximal step size must not be less than the minimal one, but got "
                         f"'step_sizes' {step_sizes!r}.")
    etaminus = check_float_range("etaminus", etas[0], name, 0.0, 1.0, lower_inclusive=False, upper_inclusive=False)
    etaplus = check_float("etaplus", etas[1], name)
    if etaplus <= 1.0:
        raise ValueError(f"For '{name}', 'etaplus' must be greater than 1.0, but got {etaplus!r}.")
    step_min = check_float("min_step_sizes", step_sizes[0], name)
    step_max = check_float("max_step_sizes", step_sizes[1], name)
    return with_param_groups(
        lambda cfg: optax.chain(*preprocess(cfg), apply_rprop(cfg.learning_rate, (etaminus, etaplus),
                                                              (step_min, step_max))),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )
