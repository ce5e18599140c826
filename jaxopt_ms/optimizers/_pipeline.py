"""MindSpore's common update pipeline as one chain (reference §1):

    decay_weight -> gradients_centralization -> scale_grad -> <the optimizer's direction> -> -lr(k)

The decay and loss-scale blocks are always in the chain, as ``optax.identity()`` where the hyperparameter makes them
one (``weight_decay == 0``, ``loss_scale == 1``): the state's tree structure then depends on the optimizer's flags
and groups only, never on the value of a numeric hyperparameter, so that ``optax.inject_hyperparams(factory)(...)``
(which passes every number as an array) has the plain optimizer's state structure. Row-sparse gradients
(:class:`~jaxopt_ms.sparse.RowSparse`) are rejected with a ``TypeError`` unless the direction has a sparse path
(``row_sparse=True``: Adam, LazyAdam, FTRL, ProximalAdagrad, as in MindSpore, reference §2.8).
"""

from __future__ import annotations

import optax

from jaxopt_ms.groups import GroupConfig
from jaxopt_ms.sparse import reject_row_sparse
from jaxopt_ms.transforms.centralization import centralize_gradients
from jaxopt_ms.transforms.learning_rate import scale_by_learning_rate
from jaxopt_ms.transforms.loss_scale import unscale_gradients
from jaxopt_ms.transforms.weight_decay import add_decayed_weights


def preprocess(cfg: GroupConfig, loss_scale: float = 1.0, *, opt_name: str = "this optimizer",
               row_sparse: bool = False) -> list[optax.GradientTransformation]:
    """Weight decay, gradient centralization and loss-scale division, in MindSpore's order.

    Args:
        opt_name: the MindSpore class name, for error messages.
        row_sparse: the optimizer has a sparse path; when False a :class:`~jaxopt_ms.sparse.RowSparse` gradient
            leaf raises a ``TypeError`` naming ``opt_name`` and the leaf (reference §2.8).
    """
    blocks = [] if row_sparse else [reject_row_sparse(opt_name)]
    # each always a block (the identity for wd = 0, loss_scale = 1): see the module docstring
    blocks.append(add_decayed_weights(cfg.weight_decay, loss_scale, cfg.decay_filter))
    if cfg.grad_centralization:
        blocks.append(centralize_gradients())
    blocks.append(unscale_gradients(loss_scale))
    return blocks


def mindspore_chain(direction: optax.GradientTransformation, cfg: GroupConfig, loss_scale: float = 1.0, *,
                    row_sparse: bool = False, opt_name: str = "this optimizer") -> optax.GradientTransformation:
    """``preprocess`` then ``direction`` then ``p -= lr(k) * d`` (``row_sparse``, ``opt_name``: see ``preprocess``)."""
    return optax.chain(*preprocess(cfg, loss_scale, opt_name=opt_name, row_sparse=row_sparse), direction,
                       scale_by_learning_rate(cfg.learning_rate))
