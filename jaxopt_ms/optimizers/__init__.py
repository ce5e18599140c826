"""Optimizers: one factory per MindSpore optimizer, each a short composition of the building blocks."""

from jaxopt_ms.optimizers.adam import adam, adam_weight_decay, lazy_adam
from jaxopt_ms.optimizers.sgd import momentum, sgd
from jaxopt_ms.optimizers.thor import thor

__all__ = ["adam", "adam_weight_decay", "lazy_adam", "momentum", "sgd", "thor"]
