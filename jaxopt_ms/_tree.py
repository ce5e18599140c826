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
