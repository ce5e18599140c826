"""jaxopt_ms: MindSpore / TinyMS optimizers, numerically exact, as Optax gradient transformations.

Every optimizer is an ``optax.GradientTransformation``::

    opt = jaxopt_ms.adam(1e-3, weight_decay=1e-4)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
"""

from jaxopt_ms import (
    dynamic_lr,
    fused,
    loss_scale,
    mindspore_checkpoint,
    schedules,
    sharding,
    sparse,
    thor_layers,
    transforms,
)
from jaxopt_ms.groups import GroupOverlapError
from jaxopt_ms.names import (
    decay_all,
    equinox_decay_filter,
    flax_decay_filter,
    mindspore_decay_filter,
    mindspore_lars_filter,
    param_names,
)
from jaxopt_ms.optimizers import (
    adadelta,
    adafactor,
    adagrad,
    adam,
    adam_weight_decay,
    adamax,
    asgd,
    ftrl,
    lamb,
    lars,
    lazy_adam,
    momentum,
    proximal_adagrad,
    rmsprop,
    rprop,
    sgd,
    thor,
)
from jaxopt_ms.optimizers.adam_offload import adam_offload
from jaxopt_ms.thor_layers import (
    LayerStatistics,
    register_conv2d,
    register_dense,
    register_embedding,
    value_grad_and_statistics,
)
from jaxopt_ms.transforms.learning_rate import current_lr, set_lr
from jaxopt_ms.transforms.thor import thor_refresh_due

__version__ = "0.1.0"

__all__ = [
    "GroupOverlapError",
    "LayerStatistics",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_offload",
    "adam_weight_decay",
    "adamax",
    "asgd",
    "current_lr",
    "decay_all",
    "dynamic_lr",
    "equinox_decay_filter",
    "flax_decay_filter",
    "ftrl",
    "fused",
    "lamb",
    "lars",
    "lazy_adam",
    "loss_scale",
    "mindspore_checkpoint",
    "mindspore_decay_filter",
    "mindspore_lars_filter",
    "momentum",
    "param_names",
    "proximal_adagrad",
    "register_conv2d",
    "register_dense",
    "register_embedding",
    "rmsprop",
    "rprop",
    "schedules",
    "set_lr",
    "sgd",
    "sharding",
    "sparse",
    "thor",
    "thor_layers",
    "thor_refresh_due",
    "transforms",
    "value_grad_and_statistics",
]
