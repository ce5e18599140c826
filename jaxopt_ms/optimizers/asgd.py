"""ASGD: MindSpore's ``nn.ASGD`` (averaged SGD), reference §7."""

from __future__ import annotations

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.optimizers._pipeline import preprocess
from jaxopt_ms.transforms.asgd import apply_asgd
from jaxopt_ms.validation import check_float

__all__ = ["asgd"]


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
