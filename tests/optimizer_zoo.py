"""Every public optimizer once, with non-default settings, for generic tests (reliability, properties, dtypes).

``ZOO`` is a list of ``(name, factory, kwargs)``; add a row when an optimizer is added.
"""

import jaxopt_ms

ZOO = [
    ("sgd", jaxopt_ms.sgd, dict(learning_rate=0.1, momentum=0.9)),
    ("momentum", jaxopt_ms.momentum, dict(learning_rate=0.1, momentum=0.9)),
    ("adam", jaxopt_ms.adam, dict(learning_rate=0.01)),
    ("lazy_adam", jaxopt_ms.lazy_adam, dict(learning_rate=0.01)),
    ("adam_weight_decay", jaxopt_ms.adam_weight_decay, dict(learning_rate=0.01, weight_decay=0.01)),
]
