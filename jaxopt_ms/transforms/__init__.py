"""Building blocks: gradient transformations, each usable alone inside ``optax.chain``."""

from jaxopt_ms.transforms.adam import ScaleByAdamState, scale_by_adam
from jaxopt_ms.transforms.adam_weight_decay import ScaleByAdamWeightDecayState, scale_by_adam_weight_decay
from jaxopt_ms.transforms.centralization import centralize_gradients, qualifies_for_centralization
from jaxopt_ms.transforms.ftrl import FtrlState, apply_ftrl, ftrl_update
from jaxopt_ms.transforms.learning_rate import (
    LearningRate,
    LearningRateState,
    current_lr,
    resolve_learning_rate,
    scale_by_learning_rate,
    set_lr,
)
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.transforms.proximal_adagrad import (
    ProximalAdagradState,
    apply_proximal_adagrad,
    proximal_adagrad_update,
    proximal_step,
)
from jaxopt_ms.transforms.sgd import ScaleBySgdState, scale_by_sgd
from jaxopt_ms.transforms.weight_decay import AddDecayedWeightsState, add_decayed_weights

__all__ = [
    "AddDecayedWeightsState",
    "FtrlState",
    "LearningRate",
    "LearningRateState",
    "ProximalAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamWeightDecayState",
    "ScaleBySgdState",
    "add_decayed_weights",
    "apply_ftrl",
    "apply_proximal_adagrad",
    "centralize_gradients",
    "current_lr",
    "ftrl_update",
    "proximal_adagrad_update",
    "proximal_step",
    "qualifies_for_centralization",
    "resolve_learning_rate",
    "scale_by_adam",
    "scale_by_adam_weight_decay",
    "scale_by_learning_rate",
    "scale_by_sgd",
    "set_lr",
    "unscale_gradients",
]
