"""Optimizers: one factory per MindSpore optimizer, each a short composition of the building blocks."""

from jaxopt_ms.optimizers.adadelta import adadelta
from jaxopt_ms.optimizers.adafactor import adafactor
from jaxopt_ms.optimizers.adagrad import adagrad, proximal_adagrad
from jaxopt_ms.optimizers.adam import adam, adam_weight_decay, lazy_adam
from jaxopt_ms.optimizers.adamax import adamax
from jaxopt_ms.optimizers.asgd import asgd
from jaxopt_ms.optimizers.ftrl import ftrl
from jaxopt_ms.optimizers.lamb import lamb
from jaxopt_ms.optimizers.lars import lars
from jaxopt_ms.optimizers.rmsprop import rmsprop
from jaxopt_ms.optimizers.rprop import rprop
from jaxopt_ms.optimizers.sgd import momentum, sgd

__all__ = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_weight_decay",
    "adamax",
    "asgd",
    "ftrl",
    "lamb",
    "lars",
    "lazy_adam",
    "momentum",
    "proximal_adagrad",
    "rmsprop",
    "rprop",
    "sgd",
]
