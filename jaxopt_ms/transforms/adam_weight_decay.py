"""MindSpore's AdamWeightDecay direction (op ``AdamWeightDecay``), reference §3.4: no bias correction.

    m <- m + (g - m)(1 - b1);  v <- v + (g² - v)(1 - b2);  d = m / (sqrt(v) + eps)

``1 - b`` in float32 from the float32 beta, as MindSpore's CPU kernel (nnacl ``AdamWeightDecayFp32``).

Decoupled decay (``d + wd * w``) and the learning rate are later blocks: ``p -= lr * (d + wd * w)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from jaxopt_ms._hyper import safe_sqrt
from jaxopt_ms._tree import unzip
from jaxopt_ms.transforms.adam import adam_moments

__all__ = ["ScaleByAdamWeightDecayState", "scale_by_adam_weight_decay"]


class ScaleByAdamWeightDecayState(NamedTuple):
    """MindSpore's names: ``adam_m``, ``adam_v``."""

    adam_m: optax.Updates
    adam_v: optax.Updates


def scale_by_adam_weight_decay(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-6
                               ) -> optax.GradientTransformation:
    """``m / (sqrt(v) + eps)`` with uncorrected moments (see the module docstring)."""

    def init_fn(params):
        return ScaleByAdamWeightDecayState(optax.tree.zeros_like(params), optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        m, v = unzip(jax.tree.map(lambda g, m, v: adam_moments(g, m, v, beta1, beta2),
                                  updates, state.adam_m, state.adam_v), updates, 2)
        direction = jax.tree.map(lambda g, m_, v_: (m_ / (safe_sqrt(v_) + eps)).astype(g.dtype), updates, m, v)
        return direction, ScaleByAdamWeightDecayState(m, v)

    return optax.GradientTransformation(init_fn, update_fn)
