"""Building blocks: gradient transformations, each usable alone inside ``optax.chain``."""

from jaxopt_ms.transforms.adam import ScaleByAdamState, scale_by_adam
from jaxopt_ms.transforms.adam_weight_decay import ScaleByAdamWeightDecayState, scale_by_adam_weight_decay
from jaxopt_ms.transforms.centralization import centralize_gradients, qualifies_for_centralization
from jaxopt_ms.transforms.clip import clip_by_norm
from jaxopt_ms.transforms.learning_rate import (
    LearningRate,
    LearningRateState,
    current_lr,
    resolve_learning_rate,
    scale_by_learning_rate,
    set_lr,
)
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.transforms.sgd import ScaleBySgdState, scale_by_sgd
from jaxopt_ms.transforms.thor import ScaleByThorState, scale_by_thor, thor_refresh_due
from jaxopt_ms.transforms.weight_decay import AddDecayedWeightsState, add_decayed_weights

__all__ = [
    "AddDecayedWeightsState",
    "LearningRate",
    "LearningRateState",
    "ScaleByAdamState",
    "ScaleByAdamWeightDecayState",
    "ScaleBySgdState",
    "ScaleByThorState",
    "add_decayed_weights",
    "centralize_gradients",
    "clip_by_norm",
    "current_lr",
    "qualifies_for_centralization",
    "resolve_learning_rate",
    "scale_by_adam",
    "scale_by_adam_weight_decay",
    "scale_by_learning_rate",
    "scale_by_sgd",
    "scale_by_thor",
    "set_lr",
    "thor_refresh_due",
    "unscale_gradients",
]
