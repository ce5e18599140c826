"""MindSpore 2.10's optimizers beyond TinyMS's list: ``nn.Adadelta``, ``nn.AdaMax``, ``nn.ASGD``, ``nn.Rprop``
(reference §7)."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain, preprocess
from jaxopt_ms.optimizers.adam import check_adam_args
from jaxopt_ms.transforms.adadelta import scale_by_adadelta
from jaxopt_ms.transforms.adamax import scale_by_adamax
from jaxopt_ms.transforms.asgd import apply_asgd
from jaxopt_ms.transforms.rprop import apply_rprop
from jaxopt_ms.validation import check_float, check_float_range, check_loss_scale, check_non_negative_float

__all__ = ["adadelta", "adamax", "asgd", "rprop"]


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


@optimizer_factory
def asgd(learning_rate=0.1, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, *, param_groups=None,
         decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's ASGD (averaged SGD), with ``t`` the step count after the update and ``lr = lr(t - 1)``.

        eta = lr (first update);  p = p (1 - lambd eta) - eta g;  ax = ax + (p - ax) mu  (or p while mu == 1)
        eta = lr / (1 + lambd lr t)^alpha;  mu = 1 / max(1, t - t0)

    ``eta`` computed at one update is used by the next, so a dynamic ``lr`` acts one update late, as in MindSpore.
    No loss scale (MindSpore's ASGD has none). Gradients first get MindSpore's weight decay and gradient
    centralization (groups). The running average is ``state...ax``. Reference: MindSpore 2.10 ``nn.ASGD``.

    Example:
        >>> opt = jaxopt_ms.asgd(0.1, lambd=1e-4, t0=100.0)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "ASGD"
    lambd = check_float("lambd", lambd, name)
    alpha = check_float("alpha", alpha, name)
    t0 = check_float("t0", t0, name)
    return with_param_groups(
        lambda cfg: optax.chain(*preprocess(cfg), apply_asgd(cfg.learning_rate, lambd, alpha, t0)),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name,
    )


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
