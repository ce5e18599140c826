"""Every public optimizer with a discriminating configuration, for tests that must cover them all.

Entries are ``(name, factory, kwargs)``; ``factory(**kwargs)`` builds the optimizer. Add new optimizers here.
"""

from __future__ import annotations

import jaxopt_ms

ZOO = [
    ("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, loss_scale=4.0)),
    ("momentum", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01, use_nesterov=True)),
    ("adam", jaxopt_ms.adam, dict(learning_rate=0.01, beta2=0.9, eps=1e-3, weight_decay=0.01, loss_scale=8.0)),
    ("lazy_adam", jaxopt_ms.lazy_adam, dict(learning_rate=0.01, use_nesterov=True, weight_decay=0.01)),
    ("adam_weight_decay", jaxopt_ms.adam_weight_decay, dict(learning_rate=0.01, eps=1e-3, weight_decay=0.1)),
    # on_host=True: the host-memory path also on a CPU backend (the default offloads on accelerators only).
    ("adam_offload", jaxopt_ms.adam_offload, dict(learning_rate=0.01, beta2=0.9, eps=1e-3, weight_decay=0.01,
                                                  loss_scale=8.0, on_host=True)),
]

NAMES = [name for name, _, _ in ZOO]
