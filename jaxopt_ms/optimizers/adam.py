"""Adam, LazyAdam and AdamWeightDecay: MindSpore's ``nn.Adam``, ``nn.LazyAdam``, ``nn.AdamWeightDecay``."""

from __future__ import annotations

import warnings

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import GroupConfig, with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain
from jaxopt_ms.sparse import reject_row_sparse
from jaxopt_ms.transforms.adam import scale_by_adam
from jaxopt_ms.transforms.adam_weight_decay import scale_by_adam_weight_decay
from jaxopt_ms.transforms.learning_rate import scale_by_learning_rate
from jaxopt_ms.transforms.weight_decay import add_decayed_weights
from jaxopt_ms.validation import check_bool, check_float, check_float_range, check_loss_scale, check_positive_float

__all__ = ["adam", "adam_weight_decay", "check_adam_args", "lazy_adam"]


def check_adam_args(name: str, beta1, beta2, eps, **flags) -> None:
    """MindSpore's Adam-family checks: betas strict floats in (0, 1), eps a float > 0, flags bools."""
    check_float_range("beta1", beta1, name, 0.0, 1.0, lower_inclusive=False, upper_inclusive=False)
    check_float_range("beta2", beta2, name, 0.0, 1.0, lower_inclusive=False, upper_inclusive=False)
    check_positive_float("eps", eps, name)
    for flag, value in flags.items():
        check_bool(flag, value, name)


def _adam_family(name, learning_rate, beta1, beta2, eps, use_nesterov, weight_decay, loss_scale, use_amsgrad,
                 param_groups, decay_filter, allow_dynamic_weight_decay=True, lazy=False):
    loss_scale = check_loss_scale(loss_scale, name)
    direction = lambda: scale_by_adam(beta1, beta2, eps, use_nesterov, use_amsgrad, lazy=lazy)
    return with_param_groups(
        lambda cfg: mindspore_chain(direction(), cfg, loss_scale, row_sparse=True, opt_name=name),
        learning_rate=learning_rate, weight_decay=weight_decay, param_groups=param_groups,
        decay_filter=decay_filter, opt_name=name, allow_dynamic_weight_decay=allow_dynamic_weight_decay,
    )


@optimizer_factory
def adam(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, use_locking=False, use_nesterov=False,
         weight_decay=0.0, loss_scale=1.0, use_amsgrad=False, *, param_groups=None, decay_filter=None,
         use_lazy=False, use_offload=False) -> optax.GradientTransformation:
    """MindSpore's Adam (op ``Adam``): TensorFlow's "epsilon hat" form with running float32 beta powers.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  b1p *= b1;  b2p *= b2
        p -= lr * sqrt(1 - b2p) / (1 - b1p) * num / (sqrt(v) + eps),   num = m  (or b1 m + (1 - b1) g)

    ``use_amsgrad`` replaces ``v`` in the denominator by its running maximum and ignores ``use_nesterov`` (as
    MindSpore does: its amsgrad kernel ``ApplyAdamWithAmsgradV2`` has no nesterov input). Gradients first get
    MindSpore's weight decay, gradient centralization (groups) and loss-scale division. ``use_locking`` is validated and
    has no effect (JAX updates are functional). ``use_lazy=True`` is :func:`lazy_adam`; ``use_offload=True`` is
    :func:`adam_offload`. Reference: MindSpore 2.10 ``nn.Adam``.

    A :class:`~jaxopt_ms.sparse.RowSparse` gradient leaf follows MindSpore's non-lazy sparse Adam: dense Adam on
    the densified gradient (every row's moments decay), without forming the dense gradient.

    Example:
        >>> opt = jaxopt_ms.adam(1e-3, eps=1e-6, weight_decay=1e-4, loss_scale=128.0)
        >>> params = {'w': jnp.ones((2, 3))}
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, opt.init(params), params)
    """
    name = "Adam"
    check_adam_args(name, beta1, beta2, eps, use_locking=use_locking, use_nesterov=use_nesterov,
                    use_amsgrad=use_amsgrad, use_lazy=use_lazy, use_offload=use_offload)
    if use_lazy and use_offload:
        raise ValueError(f"For '{name}', 'use_lazy' and 'use_offload' cannot both be True.")
    if use_amsgrad and (use_lazy or use_offload):
        raise ValueError(f"For '{name}', 'use_amsgrad' cannot be combined with 'use_lazy' or 'use_offload'.")
    if use_lazy:
        # nn.Adam(use_lazy=True) runs LazyAdam's rule with Adam's checks: a dynamic (or int) weight decay that
        # nn.LazyAdam rejects is accepted.
        return _adam_family(name, learning_rate, beta1, beta2, eps, use_nesterov, weight_decay, loss_scale, False,
                            param_groups, decay_filter, lazy=True)
    if use_offload:
        from jaxopt_ms.optimizers.adam_offload import adam_offload

        return adam_offload(learning_rate, beta1, beta2, eps, use_locking, use_nesterov, weight_decay, loss_scale,
                            param_groups=param_groups, decay_filter=decay_filter)
    return _adam_family(name, learning_rate, beta1, beta2, eps, use_nesterov, weight_decay, loss_scale,
                        use_amsgrad, param_groups, decay_filter)


@optimizer_factory
def lazy_adam(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, use_locking=False, use_nesterov=False,
              weight_decay=0.0, loss_scale=1.0, *, param_groups=None, decay_filter=None
              ) -> optax.GradientTransformation:
    """MindSpore's LazyAdam: exactly :func:`adam` on dense gradients; on row-sparse gradients only the touched
    rows of the parameter and of both moments change (see :mod:`jaxopt_ms.sparse`).

    Per touched row ``r`` (duplicates summed first; weight decay added per entry before that):
    ``m_r = b1 m_r + (1-b1) g_r``, ``v_r = b2 v_r + (1-b2) g_r²``,
    ``p_r -= lr sqrt(1-b2p)/(1-b1p) num_r / (sqrt(v_r) + eps)`` with the global beta powers, advanced every
    call; the update is a ``RowSparse`` that ``optax.apply_updates`` scatter-adds. Cost: the touched rows.

    ``weight_decay`` must be a float (MindSpore rejects an int and a dynamic weight decay). Reference:
    MindSpore 2.10 ``nn.LazyAdam``.

    Example:
        >>> opt = jaxopt_ms.lazy_adam(1e-3)
        >>> params = {'emb': jnp.ones((1000, 8))}
        >>> grads = {'emb': jaxopt_ms.sparse.RowSparse(jnp.array([3, 7, 3]), jnp.ones((3, 8)), (1000, 8))}
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> params = optax.apply_updates(params, updates)   # rows 3 and 7 change
    """
    name = "LazyAdam"
    check_adam_args(name, beta1, beta2, eps, use_locking=use_locking, use_nesterov=use_nesterov)
    if callable(weight_decay):
        raise TypeError(
            f"For '{name}', the type of 'weight_decay' should be 'float', but got type "
            f"'{type(weight_decay).__name__}' (value {weight_decay!r})."
        )
    check_float("weight_decay", weight_decay, name)  # strict (an int is a TypeError); the range comes next
    return _adam_family(name, learning_rate, beta1, beta2, eps, use_nesterov, weight_decay, loss_scale, False,
                        param_groups, decay_filter, allow_dynamic_weight_decay=False, lazy=True)


@optimizer_factory
def adam_weight_decay(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, *,
                      param_groups=None, decay_filter=None) -> optax.GradientTransformation:
    """MindSpore's AdamWeightDecay (op ``AdamWeightDecay``): Adam without bias correction, decoupled decay.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²
        p -= lr * (m / (sqrt(v) + eps) + wd * p)       (wd on the leaves the decay filter selects)

    No loss scale, no gradient centralization (a group's ``grad_centralization`` has no effect, as in
    MindSpore). ``wd`` may be dynamic (a callable of the step). Reference: MindSpore 2.10
    ``nn.AdamWeightDecay``.

    Example:
        >>> opt = jaxopt_ms.adam_weight_decay(1e-3, weight_decay=0.01)
    """
    name = "AdamWeightDecay"
    check_adam_args(name, beta1, beta2, eps)

    def build(cfg: GroupConfig) -> optax.GradientTransformation:
        if cfg.grad_centralization:
            warnings.warn("AdamWeightDecay ignores 'grad_centralization', as MindSpore does.", stacklevel=3)
        blocks = [reject_row_sparse(name), scale_by_adam_weight_decay(beta1, beta2, eps)]
        # always a block (the identity for wd = 0): the state's structure does not depend on wd's value
        blocks.append(add_decayed_weights(cfg.weight_decay, 1.0, cfg.decay_filter))
        blocks.append(scale_by_learning_rate(cfg.learning_rate))
        return optax.chain(*blocks)

    return with_param_groups(build, learning_rate=learning_rate, weight_decay=weight_decay,
                             param_groups=param_groups, decay_filter=decay_filter, opt_name=name)
