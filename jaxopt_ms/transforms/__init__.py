"""Building blocks: gradient transformations, each usable alone inside ``optax.chain``."""

from jaxopt_ms.transforms.adadelta import ScaleByAdadeltaState, adadelta_update, scale_by_adadelta
from jaxopt_ms.transforms.adafactor import (
    AdaFactorState,
    ScaleByFactoredRmsState,
    adafactor_update,
    apply_adafactor,
    factored_rms_direction,
    init_factored_moments,
    relative_step_learning_rate,
    rms,
    scale_by_factored_rms,
)
from jaxopt_ms.transforms.adagrad import (
    AdagradState,
    ScaleByAdagradState,
    adagrad_update,
    apply_adagrad,
    scale_by_adagrad,
)
from jaxopt_ms.transforms.adam import ScaleByAdamState, scale_by_adam
from jaxopt_ms.transforms.adam_weight_decay import ScaleByAdamWeightDecayState, scale_by_adam_weight_decay
from jaxopt_ms.transforms.adamax import ScaleByAdamaxState, adamax_update, scale_by_adamax
from jaxopt_ms.transforms.asgd import ASGDState, apply_asgd, asgd_update
from jaxopt_ms.transforms.centralization import centralize_gradients, qualifies_for_centralization
from jaxopt_ms.transforms.clip import clip_by_norm
from jaxopt_ms.transforms.ftrl import FtrlState, apply_ftrl, ftrl_update
from jaxopt_ms.transforms.lamb import (
    ScaleByLambState,
    lamb_direction,
    lamb_ratio_of_norms,
    lamb_scale,
    lamb_trust_ratio,
    lamb_update,
    scale_by_lamb,
)
from jaxopt_ms.transforms.lars import LarsState, lars_gradient, lars_scale, lars_trust, scale_by_lars
from jaxopt_ms.transforms.learning_rate import (
    LearningRate,
    LearningRateState,
    current_lr,
    resolve_learning_rate,
    scale_by_learning_rate,
    set_lr,
)
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.transforms.offload import host_memory_kind, scale_by_adam_offload
from jaxopt_ms.transforms.proximal_adagrad import (
    ProximalAdagradState,
    apply_proximal_adagrad,
    proximal_adagrad_update,
    proximal_step,
)
from jaxopt_ms.transforms.rprop import RpropState, apply_rprop, rprop_update
from jaxopt_ms.transforms.sgd import ScaleBySgdState, scale_by_sgd
from jaxopt_ms.transforms.thor import ScaleByThorState, scale_by_thor, thor_refresh_due
from jaxopt_ms.transforms.weight_decay import AddDecayedWeightsState, add_decayed_weights

__all__ = [
    "ASGDState",
    "AdaFactorState",
    "AddDecayedWeightsState",
    "FtrlState",
    "LarsState",
    "LearningRate",
    "LearningRateState",
    "ProximalAdagradState",
    "RpropState",
    "ScaleByAdadeltaState",
    "AdagradState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamWeightDecayState",
    "ScaleByAdamaxState",
    "ScaleByFactoredRmsState",
    "ScaleByLambState",
    "ScaleBySgdState",
    "ScaleByThorState",
    "adadelta_update",
    "adafactor_update",
    "adagrad_update",
    "apply_adagrad",
    "adamax_update",
    "add_decayed_weights",
    "apply_adafactor",
    "apply_asgd",
    "apply_ftrl",
    "apply_proximal_adagrad",
    "apply_rprop",
    "asgd_update",
    "centralize_gradients",
    "clip_by_norm",
    "current_lr",
    "factored_rms_direction",
    "ftrl_update",
    "host_memory_kind",
    "init_factored_moments",
    "lamb_direction",
    "lamb_ratio_of_norms",
    "lamb_scale",
    "lamb_trust_ratio",
    "lamb_update",
    "lars_gradient",
    "lars_scale",
    "lars_trust",
    "proximal_adagrad_update",
    "proximal_step",
    "qualifies_for_centralization",
    "relative_step_learning_rate",
    "resolve_learning_rate",
    "rms",
    "rprop_update",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adam_offload",
    "scale_by_adam_weight_decay",
    "scale_by_adamax",
    "scale_by_factored_rms",
    "scale_by_lamb",
    "scale_by_lars",
    "scale_by_learning_rate",
    "scale_by_sgd",
    "scale_by_thor",
    "set_lr",
    "thor_refresh_due",
    "unscale_gradients",
]
