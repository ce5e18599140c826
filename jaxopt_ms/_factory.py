"""What every public factory returns: an Optax transformation that remembers how it was built.

Wrappers such as :func:`jaxopt_ms.lars` need to rebuild the optimizer they wrap with some arguments changed
(MindSpore's LARS switches off the inner optimizer's weight decay and loss scale); ``rebuild`` does that from the
recorded factory and arguments instead of reaching into closures.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import optax

from jaxopt_ms.validation import (
    check_floating_gradients,
    check_floating_leaves,
    check_gradients_match,
    check_update_shapes,
)

__all__ = ["Optimizer", "optimizer_factory", "rebuild"]


class Optimizer(optax.GradientTransformationExtraArgs):
    """An ``optax.GradientTransformationExtraArgs`` with ``factory`` and ``arguments`` attributes.

    Inputs MindSpore never sees (docs/behaviour.md): ``init`` raises ``TypeError`` for an integer, boolean or
    complex parameter leaf; ``update`` raises ``ValueError`` when the gradients' pytree structure or a leaf's
    shape differs from the parameters' (without ``params``: when a gradient would broadcast into the state or the
    update), and ``TypeError`` for an integer or boolean gradient. ``None`` leaves are skipped; an empty pytree is
    a no-op update (the step count advances). Non-finite gradients are not checked: NaN/Inf flow into the
    parameters and the per-element state, as in MindSpore without a loss-scale manager.
    """

    factory: Callable[..., Any]
    arguments: dict[str, Any]

    def __repr__(self) -> str:
        """``adam(learning_rate=0.001, beta1=0.9, ...)``: the factory and every argument it was built with."""
        factory = getattr(self, "factory", None)
        if factory is None:
            return super().__repr__()
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{factory.__name__}({args})"


def optimizer_factory(factory: Callable[..., optax.GradientTransformation]) -> Callable[..., Optimizer]:
    """Decorates a factory so that its result records ``factory`` and the bound ``arguments``."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def wrapper(*args: Any, **kwargs: Any) -> Optimizer:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        tx = optax.with_extra_args_support(factory(*args, **kwargs))
        name = factory.__name__

        # Checks at trace time (free under jit): a clear error instead of silent integer/complex arithmetic
        # or an opaque tree_map failure deep inside a block.
        def init(params: Any) -> Any:
            check_floating_leaves(params, name)
            return tx.init(params)

        def update(updates: Any, state: Any, params: Any = None, **extra_args: Any) -> Any:
            check_floating_gradients(updates, name)
            if params is not None:
                check_gradients_match(updates, params, name)
                return tx.update(updates, state, params, **extra_args)
            new_updates, new_state = tx.update(updates, state, params, **extra_args)
            check_update_shapes(updates, new_updates, state, new_state, name)
            return new_updates, new_state

        out = Optimizer(init, update)
        out.factory = wrapper
        out.arguments = dict(bound.arguments)
        return out

    return wrapper


def rebuild(optimizer: Any, **overrides: Any) -> Optimizer:
    """The same optimizer built again with some arguments replaced.

    Raises:
        TypeError: ``optimizer`` was not built by a jaxopt_ms factory.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"Expected an optimizer built by a jaxopt_ms factory (e.g. jaxopt_ms.momentum(...)), but got type "
            f"'{type(optimizer).__name__}' (value {optimizer!r})."
        )
    return optimizer.factory(**{**optimizer.arguments, **overrides})
