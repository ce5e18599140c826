"""AdaFactor: MindSpore's ``nn.AdaFactor``, reference §3.12."""

from __future__ import annotations

import jax
import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms._hyper import is_array
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.sparse import reject_row_sparse
from jaxopt_ms.transforms.adafactor import apply_adafactor, factored, relative_step_learning_rate
from jaxopt_ms.validation import (
    check_bool,
    check_float_range,
    check_loss_scale,
    check_non_negative_float,
    check_number,
    concrete_value,
)

__all__ = ["adafactor"]


def _check_eps(eps, name: str) -> tuple[float, float]:
    if not isinstance(eps, (list, tuple)):
        raise TypeError(f"For '{name}', the type of 'eps' should be 'list' or 'tuple', but got type "
                        f"'{type(eps).__name__}' (value {eps!r}).")
    if len(eps) != 2:
        raise ValueError(f"For '{name}', 'eps' must have 2 values (eps1, eps2), but got {eps!r}.")
    return tuple(check_non_negative_float(f"eps{i}", e, name) for i, e in enumerate(eps))


@optimizer_factory
def adafactor(learning_rate=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=0.8, beta1=0.9,
              weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False, compression=False,
              loss_scale=1.0, *, param_groups=None) -> optax.GradientTransformation:
    """MindSpore's AdaFactor: factored second moments for leaves of rank >= 2, relative steps, update clipping.

        s = step after the update;  beta2t = 1 - s^(-decay_rate)
        lr = min(1e-6 s if warmup_init else 1e-2, 1/sqrt(s))  (relative_step)  else  learning_rate(s - 1)
        lr_t = lr * max(eps[1], rms(p))  (scale_parameter)
        d = g / sqrt(v̂)  (v̂ of g² + eps[0]: row/column factored over the last two axes when rank >= 2)
        d = d / max(rms(d) / clip_threshold, 1) * lr_t;  d = ema_beta1(d)  (beta1 > 0)
        p = p - p * weight_decay * lr_t - d

    ``beta1`` defaults to 0.9 because MindSpore 2.10's code does (its docs say None; None or 0 turn the first
    moment off). ``weight_decay`` is one float for all leaves (MindSpore ignores a group's weight decay and the
    decay filter). ``loss_scale`` is validated and ignored, as MindSpore does. ``compression`` keeps the
    un-factored second moments in float16, as MindSpore does (only those: MindSpore keeps ``exp_avg`` and the
    factored moments in the parameter's dtype). Parameter groups select leaves only: a group ``lr`` is ignored with
    ``relative_step=True`` (as in MindSpore) and an error otherwise (MindSpore would pass the tuple of rates
    unmapped to every leaf). Reference: MindSpore 2.10 ``nn.AdaFactor``.

    ``scale_parameter`` and the form of ``learning_rate``: MindSpore keeps it only for a Python number
    (``isinstance(lr, (float, int))``, ``adafactor.py`` 306-310 and 340-341). Here it stays on for ``None`` (relative
    steps), a Python ``float`` / ``int`` / ``bool`` (``np.float64``, a ``float``, too) and a 0-d JAX array; off for
    every other form: a NumPy scalar (``np.float32``) or 0-d NumPy array (MindSpore's 0-d ``Tensor(lr)``), a 1-d array,
    list or tuple, a schedule. The one exception to "arrays turn it off" is the 0-d JAX array, because that is how
    ``optax.inject_hyperparams`` passes a Python float: ``inject_hyperparams(adafactor)(learning_rate=0.01, ...)``
    must follow ``adafactor(0.01, ...)``. For the same reason, under ``inject_hyperparams`` (which turns every number,
    NumPy ones included, into a JAX array and evaluates a schedule into one) the rule sees a number: give
    ``scale_parameter=False`` there to follow MindSpore's 0-d Tensor or schedule, or keep a schedule out of the
    injected hyperparameters (``static_args=('learning_rate',)``).

    Example:
        >>> opt = jaxopt_ms.adafactor()                                   # relative steps: lr = 0.01 * rms(p)
        >>> opt = jaxopt_ms.adafactor(0.05, relative_step=False, scale_parameter=False, beta1=None)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "AdaFactor"
    if learning_rate is not None and relative_step:
        raise ValueError(f"For '{name}', cannot combine a manual 'learning_rate' ({learning_rate!r}) with "
                         f"'relative_step'=True; pass relative_step=False.")
    if warmup_init and not relative_step:
        raise ValueError(f"For '{name}', 'warmup_init'=True requires 'relative_step'=True.")
    if learning_rate is None and not relative_step:
        raise ValueError(f"For '{name}', 'learning_rate' is None and 'relative_step' is False: give one of them.")
    # MindSpore's rule, isinstance(lr, (float, int)), and a 0-d JAX array: optax.inject_hyperparams's Python float
    is_number = learning_rate is None or isinstance(learning_rate, (int, float)) or (
        isinstance(learning_rate, jax.Array) and learning_rate.ndim == 0)
    check_loss_scale(loss_scale, name)
    eps = _check_eps(eps, name)
    clip_threshold = check_non_negative_float("clip_threshold", clip_threshold, name)
    decay_rate = check_float_range("decay_rate", decay_rate, name, 0.0, 1.0, lower_inclusive=False,
                                   upper_inclusive=False)
    weight_decay = check_float_range("weight_decay", weight_decay, name, 0.0, 1.0, upper_inclusive=False)
    check_bool("scale_parameter", scale_parameter, name)
    check_bool("relative_step", relative_step, name)
    check_bool("compression", compression, name)
    beta1 = 0.0 if beta1 is None else check_number("beta1", beta1, name)
    check_non_negative_float("beta1", beta1, name)
    if is_array(beta1) and concrete_value(beta1) == 0.0:
        # MindSpore keeps no first moment for beta1 = 0 (nor the plain optimizer: its state mirrors MindSpore's);
        # an array beta1 (optax.inject_hyperparams) may become > 0 at any update, so it needs the moment: no one
        # state structure serves both
        raise ValueError(
            f"For '{name}', 'beta1' is an array (optax.inject_hyperparams) equal to 0: the optimizer built with "
            "beta1=0.0 keeps no first moment (as MindSpore), but an array beta1 may change at any update and needs "
            "one, so the two states cannot have the same structure. Pass beta1=None (no first moment), a beta1 > 0, "
            "or keep beta1 out of the injected hyperparameters (optax.inject_hyperparams(jaxopt_ms.adafactor, "
            "static_args=('beta1',)))."
        )
    if param_groups is not None and relative_step:
        # MindSpore replaces the rate by the relative step: a group 'lr' is accepted and ignored
        param_groups = [{k: v for k, v in g.items() if k != "lr"} if isinstance(g, dict) else g for g in param_groups]
    elif param_groups is not None:
        for i, group in enumerate(param_groups):
            if isinstance(group, dict) and "lr" in group:
                raise ValueError(f"For '{name}', a parameter group cannot set 'lr' with relative_step=False "
                                 f"(MindSpore's AdaFactor has one learning rate), but group {i} has 'lr' "
                                 f"{group['lr']!r}.")
    lr = relative_step_learning_rate(warmup_init) if learning_rate is None else learning_rate
    scale_parameter = scale_parameter and is_number
    return with_param_groups(
        lambda cfg: optax.chain(reject_row_sparse(name),  # no sparse path in MindSpore (reference §2.8)
                                apply_adafactor(cfg.learning_rate, eps, clip_threshold, decay_rate, beta1,
                                                weight_decay, scale_parameter, compression)),
        learning_rate=lr, weight_decay=0.0, param_groups=param_groups, decay_filter=None, opt_name=name,
    )


adafactor.fused_own_buffer = factored  # jaxopt_ms.fused: each factored leaf in a buffer of its own
