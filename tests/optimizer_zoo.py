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
    ("rmsprop", jaxopt_ms.rmsprop, dict(learning_rate=0.01, momentum=0.5, epsilon=1e-3, weight_decay=0.01)),
    ("rmsprop_centered", jaxopt_ms.rmsprop, dict(learning_rate=0.01, momentum=0.5, epsilon=1e-3, centered=True)),
    ("adagrad", jaxopt_ms.adagrad, dict(accum=0.5, learning_rate=0.1, weight_decay=0.01)),
    ("proximal_adagrad", jaxopt_ms.proximal_adagrad, dict(learning_rate=0.1, l1=0.01, l2=0.02)),
    ("ftrl", jaxopt_ms.ftrl, dict(learning_rate=0.1, l1=0.01, l2=0.02, weight_decay=0.01)),
    ("lamb", jaxopt_ms.lamb, dict(learning_rate=0.01, weight_decay=0.01)),
    ("lars_momentum", jaxopt_ms.lars, dict(optimizer=jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.01),
                                           coefficient=0.01)),
    ("adafactor", jaxopt_ms.adafactor, dict(weight_decay=0.01)),
    ("adafactor_fixed_lr", jaxopt_ms.adafactor, dict(learning_rate=0.01, relative_step=False, beta1=None)),
    ("adadelta", jaxopt_ms.adadelta, dict(learning_rate=1.0, rho=0.9, epsilon=1e-4)),
    ("adamax", jaxopt_ms.adamax, dict(learning_rate=0.01, weight_decay=0.01)),
    ("asgd", jaxopt_ms.asgd, dict(learning_rate=0.1, lambd=1e-3, t0=2.0)),
    ("rprop", jaxopt_ms.rprop, dict(learning_rate=0.01)),
]

# Aliases used by the loss-scale and schedule tests.
OPTIMIZERS = ZOO
IDS = [name for name, _, _ in ZOO]
