"""LARS: MindSpore's ``nn.LARS`` wrapper around any of our optimizers, reference §3.13."""

from __future__ import annotations

from typing import Any, NamedTuple

import optax

from jaxopt_ms._factory import Optimizer, optimizer_factory, rebuild
from jaxopt_ms.groups import with_param_groups
from jaxopt_ms.names import mindspore_decay_filter, mindspore_lars_filter
from jaxopt_ms.sparse import reject_row_sparse
from jaxopt_ms.transforms.lars import LEARNING_RATE_ARG, scale_by_lars
from jaxopt_ms.transforms.learning_rate import current_lr, resolve_learning_rate
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.validation import check_bool, check_callable, check_float

__all__ = ["LarsWrapperState", "lars"]


class LarsWrapperState(NamedTuple):
    """``lars``: the trust-ratio block's state (per group); ``inner``: the wrapped optimizer's state."""

    lars: Any
    inner: Any


def _is_dynamic(lr: Any) -> bool:
    return lr is not None and resolve_learning_rate(lr, "LARS").is_dynamic


@optimizer_factory
def lars(optimizer, epsilon=1e-05, coefficient=0.001, use_clip=False, lars_filter=None
         ) -> optax.GradientTransformation:
    """MindSpore's LARS: rescales each selected leaf's gradient by a trust ratio, then runs ``optimizer``.

        g = g * f32(1 / loss_scale)                                    (the wrapped optimizer's loss scale)
        trust = coefficient ||w|| / (||g|| + wd ||w|| + epsilon)       (leaves where lars_filter holds)
        trust = clip(trust / lr, 0, 1)                                 (use_clip; lr = the wrapped optimizer's
                                                                        learning rate of this update, per group)
        g = trust * (g + wd w)
        optimizer(g)                                                    (rebuilt with weight_decay=0, loss_scale=1)

    ``wd`` is the wrapped optimizer's weight decay on the leaves its decay filter selects (per group in group
    mode); leaves outside ``lars_filter`` (default ``None``: names with 'LayerNorm' or 'bias') get no weight decay
    at all, as in MindSpore. ``optimizer`` must be built by a jaxopt_ms factory (it is rebuilt from its recorded
    arguments). MindSpore cannot run LARS on the CPU. Reference: MindSpore 2.10 ``nn.LARS``.

    Example:
        >>> opt = jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.9, weight_decay=1e-4), coefficient=0.001)
        >>> params = {'fc.weight': jnp.ones((2, 3)), 'fc.bias': jnp.zeros(2)}
        >>> updates, state = opt.update(params, opt.init(params), params)
    """
    name = "LARS"
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"For '{name}', the 'optimizer' must be built by a jaxopt_ms factory (e.g. "
                        f"jaxopt_ms.momentum(...)), but got type '{type(optimizer).__name__}' (value {optimizer!r}).")
    epsilon = check_float("epsilon", epsilon, name)
    coefficient = check_float("coefficient", coefficient, name)
    check_bool("use_clip", use_clip, name)
    # None: MindSpore's rule (no 'LayerNorm', no 'bias'); a None default also keeps optax.inject_hyperparams from
    # taking the filter for a schedule (it treats every callable argument as one)
    lars_filter = mindspore_lars_filter if lars_filter is None else check_callable("lars_filter", lars_filter, name)

    args = optimizer.arguments
    groups = args.get("param_groups")
    learning_rate = args.get("learning_rate")
    weight_decay = args.get("weight_decay", 0.0)
    loss_scale = float(args.get("loss_scale", 1.0))
    group_lrs = [g["lr"] for g in groups or () if isinstance(g, dict) and "lr" in g]
    dynamic_lr = _is_dynamic(learning_rate) or any(_is_dynamic(lr) for lr in group_lrs)
    if use_clip and group_lrs and dynamic_lr:
        raise ValueError(f"For '{name}', if 'use_clip' is True, the dynamic learning rate and group learning rate "
                         f"cannot both be used, but got 'learning_rate' {learning_rate!r} and group lrs {group_lrs}.")

    overrides: dict[str, Any] = {}
    if "weight_decay" in args:
        overrides["weight_decay"] = 0.0
    if "loss_scale" in args:
        overrides["loss_scale"] = 1.0
    if groups is not None:
        overrides["param_groups"] = [{k: v for k, v in g.items() if k != "weight_decay"} if isinstance(g, dict)
                                     else g for g in groups]
    inner = rebuild(optimizer, **overrides)

    decay_filter = args.get("decay_filter")
    if groups is None and decay_filter is None:
        decay_filter = getattr(optimizer.factory, "default_decay_filter", mindspore_decay_filter)
    dynamic_wd = callable(weight_decay) or any(callable(g.get("weight_decay")) for g in groups or ()
                                               if isinstance(g, dict))
    # MindSpore's LARS advances the shared global_step once more per call in this case (a quirk, reproduced for
    # the weight-decay schedule it reads).
    steps_per_update = 2 if dynamic_wd and not dynamic_lr else 1
    trust = with_param_groups(
        lambda cfg: scale_by_lars(epsilon, coefficient, use_clip, cfg.weight_decay, cfg.decay_filter, lars_filter,
                                  loss_scale=loss_scale, group=cfg.index, steps_per_update=steps_per_update),
        learning_rate=0.0, weight_decay=weight_decay, param_groups=groups, decay_filter=decay_filter,
        opt_name=name,
    )
    unscale = unscale_gradients(loss_scale)
    reject = reject_row_sparse("LARS")

    def init_fn(params):
        return LarsWrapperState(trust.init(params), inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        reject.update(updates, reject.init(params))  # no sparse path in MindSpore (reference §2.8)
        updates, _ = unscale.update(updates, unscale.init(params), params)
        lr_arg = {LEARNING_RATE_ARG: current_lr(state.inner)} if use_clip else {}
        updates, lars_state = trust.update(updates, state.lars, params, **lr_arg)
        updates, inner_state = inner.update(updates, state.inner, params, **extra_args)
        return updates, LarsWrapperState(lars_state, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


lars.default_lars_filter = mindspore_lars_filter  # what lars_filter=None means (read by jaxopt_ms.fused)
