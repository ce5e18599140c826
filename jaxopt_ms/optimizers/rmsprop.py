"""RMSProp: MindSpore's ``nn.RMSProp`` (ops ``ApplyRMSProp`` / ``ApplyCenteredRMSProp``), reference §3.9."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms._float32 import f32_value
from jaxopt_ms._hyper import is_array
from jaxopt_ms.groups import GroupConfig, with_param_groups
from jaxopt_ms.optimizers._pipeline import preprocess
from jaxopt_ms.transforms.learning_rate import scale_by_learning_rate
from jaxopt_ms.validation import check_bool, check_loss_scale, check_non_negative_float, check_positive_float

__all__ = ["rmsprop"]


def _momentum(momentum) -> optax.GradientTransformation:
    """MindSpore's ``moment``: ``optax.trace`` for a momentum > 0. Always a ``TraceState`` (MindSpore allocates
    ``moment`` whatever the momentum), so that the state's structure does not depend on the momentum's value (that
    of ``optax.inject_hyperparams``, an array momentum, is the plain optimizer's). At momentum 0 the update passes
    through and the trace is left as it is (MindSpore rewrites ``moment`` there and never reads it: not worth a
    write per step); an array momentum takes the trace where it is > 0 and does the same where it is 0."""
    if not is_array(momentum) and momentum > 0.0:
        return optax.trace(decay=f32_value(momentum))
    decay = f32_value(momentum)

    def init_fn(params):
        return optax.TraceState(trace=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        if not is_array(momentum):
            return updates, state
        on = decay > 0.0
        new = jax.tree.map(lambda g, t: g + decay * t, updates, state.trace)
        out = jax.tree.map(lambda n, g: jnp.where(on, n, g), new, updates)
        return out, optax.TraceState(trace=jax.tree.map(lambda n, t: jnp.where(on, n, t), new, state.trace))

    return optax.GradientTransformation(init_fn, update_fn)


@optimizer_factory
def rmsprop(learning_rate=0.1, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False, centered=False,
            loss_scale=1.0, weight_decay=0.0, *, param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's RMSProp: the mean square starts at 1, eps is inside the root, lr is folded into the moment.

        ms  <- decay ms + (1 - decay) g²                               (ms starts at 1)
        mg  <- decay mg + (1 - decay) g;  den = sqrt(ms - mg² + eps)   (centered)
                                          den = sqrt(ms + eps)         (not centered)
        mom <- momentum mom + lr g / den;  p -= mom

    This is exactly ``optax.scale_by_rms`` / ``optax.scale_by_stddev`` (``initial_scale=1``, ``eps_in_sqrt``), then
    ``-lr(k)``, then ``optax.trace(momentum)``; their states hold MindSpore's ``mean_square`` (``nu``),
    ``mean_grad`` (``mu``) and ``moment`` (``trace``, with the opposite sign). MindSpore's non-centred CPU kernel
    puts eps outside the root in its vector path; the documented formula and the GPU kernel are followed.
    Gradients first get MindSpore's weight decay, gradient centralization (groups) and loss-scale division.
    ``use_locking`` is validated and has no effect (JAX updates are functional). Reference: MindSpore 2.10
    ``nn.RMSProp``.

    Example:
        >>> opt = jaxopt_ms.rmsprop(0.01, momentum=0.9, centered=True)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "RMSProp"
    decay = check_non_negative_float("decay", decay, name)
    momentum = check_non_negative_float("momentum", momentum, name)
    epsilon = check_positive_float("epsilon", epsilon, name)
    check_bool("use_locking", use_locking, name)
    check_bool("centered", centered, name)
    loss_scale = check_loss_scale(loss_scale, name)
    scale_by = optax.scale_by_stddev if centered else optax.scale_by_rms

    def build(cfg: GroupConfig) -> optax.GradientTransformation:
        blocks = preprocess(cfg, loss_scale, opt_name=name)
        # ApplyRMSProp / ApplyCenteredRMSProp take decay and epsilon as float32 numbers and compute 1 - decay in
        # float32: the float32 values make Optax's own `1 - decay` the same number.
        blocks.append(scale_by(decay=f32_value(decay), eps=f32_value(epsilon), initial_scale=1.0, eps_in_sqrt=True))
        blocks.append(scale_by_learning_rate(cfg.learning_rate))
        blocks.append(_momentum(momentum))
        return optax.chain(*blocks)

    return with_param_groups(build, learning_rate=learning_rate, weight_decay=weight_decay,
                             param_groups=param_groups, decay_filter=decay_filter, opt_name=name)
