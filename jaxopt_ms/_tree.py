"""Small pytree helpers shared by the building blocks."""

from __future__ import annotations

from typing import Any

import jax


def unzip(tree_of_tuples: Any, like: Any, n: int) -> tuple[Any, ...]:
    """Splits a tree whose leaves (at the positions of ``like``'s leaves) are ``n``-tuples into ``n`` trees."""
    treedef = jax.tree.structure(like)
    leaves = treedef.flatten_up_to(tree_of_tuples)
    return tuple(treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(n))


def require_params(params: Any, block: str) -> Any:
    """``params``, or a ``ValueError`` naming the block when ``update`` was called without them."""
    if params is None:
        raise ValueError(f"{block}: this transformation needs the parameters: call update(grads, state, params).")
    return params


def isolated(*values: Any) -> tuple[Any, ...]:
    """``values`` unchanged, behind an ``optimization_barrier``: for the inputs of a reduction (a norm) whose
    element-wise operands are also used by the element-wise pass of the same step.

    Without it XLA's CPU backend shares the common sub-expressions (even the broadcast of a scalar) between the
    reduction and the element-wise pass and writes each of them out as a full-size temporary (4 ms for 16 MB on
    a 2-core machine, most of it page faults), making a Lamb step 1.4x slower than it needs. Behind the barrier
    the reduction recomputes its operand from the buffers instead. Costs nothing where the values are buffers
    and scalars already.
    """
    return jax.lax.optimization_barrier(values)
