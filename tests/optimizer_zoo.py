"""Every public optimizer with a few discriminating settings: ``(name, factory, kwargs)``.

Tests that must hold for every optimizer (e.g. the fused path equals the per-leaf path) parametrize over
``OPTIMIZERS``; a new optimizer is covered by adding its rows here.
"""

from __future__ import annotations

import jaxopt_ms

OPTIMIZERS = [
    ("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1)),
    ("sgd_momentum", jaxopt_ms.sgd,
     dict(learning_rate=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, loss_scale=4.0)),
    ("sgd_nesterov", jaxopt_ms.sgd, dict(learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    ("momentum", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, loss_scale=8.0)),
    ("momentum_nesterov", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, use_nesterov=True)),
    ("adam", jaxopt_ms.adam, dict(learning_rate=0.01, eps=1e-3, beta2=0.9)),
    ("adam_nesterov_wd", jaxopt_ms.adam,
     dict(learning_rate=0.01, use_nesterov=True, weight_decay=0.05, loss_scale=16.0)),
    ("adam_amsgrad", jaxopt_ms.adam, dict(learning_rate=[0.01, 0.02, 0.005], beta2=0.5, use_amsgrad=True)),
    ("lazy_adam", jaxopt_ms.lazy_adam, dict(learning_rate=0.01, weight_decay=0.01, loss_scale=2.0)),
    ("adam_weight_decay", jaxopt_ms.adam_weight_decay, dict(learning_rate=0.01, eps=1e-3, weight_decay=0.1)),
]
