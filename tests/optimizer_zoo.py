"""Every optimizer factory with a small discriminating configuration, for tests that must cover them all
(low-precision parameters, loss-scale wrappers, ...). Add one line per new optimizer."""

from __future__ import annotations

import jaxopt_ms

# (name, factory, kwargs)
OPTIMIZERS = [
    ("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01)),
    ("momentum", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, use_nesterov=True)),
    ("adam", jaxopt_ms.adam, dict(learning_rate=0.01, weight_decay=0.01)),
    ("adam_weight_decay", jaxopt_ms.adam_weight_decay, dict(learning_rate=0.01, weight_decay=0.01)),
    ("lazy_adam", jaxopt_ms.lazy_adam, dict(learning_rate=0.01, use_nesterov=True)),
]

IDS = [name for name, _, _ in OPTIMIZERS]
