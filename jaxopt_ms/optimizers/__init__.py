"""Optimizers: one factory per MindSpore optimizer, each a short composition of the building blocks."""

from jaxopt_ms.optimizers.adam import adam, adam_weight_decay, lazy_adam
from jaxopt_ms.optimizers.adam_offload import adam_offload
from jaxopt_ms.optimizers.sgd import momentum, sgd

__all__ = ["adam", "adam_offload", "adam_weight_decay", "lazy_adam", "momentum", "sgd"]
