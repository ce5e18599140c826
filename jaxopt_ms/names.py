"""Parameter names (pytree paths) and the name filters MindSpore decides things by.

MindSpore selects the leaves that weight decay, LARS and gradient centralization touch by parameter *name*.
In JAX a leaf's name is its pytree path, keys joined with ``'.'``: dict keys as they are, sequence indices as
digits, attribute names as they are. ``{'conv1': {'weight': w}}`` has the leaf name ``conv1.weight``.

Every filter is a callable ``(name: str, leaf) -> bool``. MindSpore's name rules match nothing in Flax or
Equinox models, so presets for those are provided too::

    opt = jaxopt_ms.adam(1e-3, weight_decay=1e-4, decay_filter=jaxopt_ms.flax_decay_filter)
"""

from __future__ import annotations

from typing import Any

import jax

from jaxopt_ms.sparse import is_row_sparse

__all__ = [
    "decay_all",
    "equinox_decay_filter",
    "flax_decay_filter",
    "mindspore_decay_filter",
    "mindspore_lars_filter",
    "param_names",
]


def _key_str(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_name(path: tuple) -> str:
    """The dotted name of one pytree key path."""
    return ".".join(_key_str(k) for k in path)


def param_names(params: Any) -> Any:
    """A pytree of strings with the structure of ``params``: each leaf's dotted path name.

    A :class:`jaxopt_ms.sparse.RowSparse` gradient counts as one leaf.

    Example:
        >>> jaxopt_ms.param_names({'conv1': {'weight': 0.0}, 'bn1.gamma': 1.0})
        {'bn1.gamma': 'bn1.gamma', 'conv1': {'weight': 'conv1.weight'}}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: path_name(path), params, is_leaf=is_row_sparse)


def mindspore_decay_filter(name: str, leaf: Any = None) -> bool:
    """MindSpore's default weight-decay filter: names without ``'beta'`` and without ``'gamma'`` are decayed."""
    return "beta" not in name and "gamma" not in name


def mindspore_lars_filter(name: str, leaf: Any = None) -> bool:
    """MindSpore's default LARS filter: names without ``'LayerNorm'`` and without ``'bias'``."""
    return "LayerNorm" not in name and "bias" not in name


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def flax_decay_filter(name: str, leaf: Any = None) -> bool:
    """For Flax models: decay kernels/embeddings, skip every ``bias`` and norm ``scale``.

    Flax (linen and nnx) names norm parameters ``scale``/``bias`` and dense/conv ones ``kernel``/``bias``;
    nnx wraps values in ``.value``, which is ignored.
    """
    parts = [p for p in name.split(".") if p != "value"]
    last = parts[-1] if parts else name
    return last not in ("bias", "scale")


def equinox_decay_filter(name: str, leaf: Any = None) -> bool:
    """For Equinox models: decay ``weight`` leaves of rank >= 2, skip biases and norm weights (rank 1).

    Equinox names both linear/conv and LayerNorm parameters ``weight``/``bias``, so the rank decides.
    """
    if _last(name) == "bias":
        return False
    ndim = getattr(leaf, "ndim", None)
    return ndim is None or ndim >= 2


def decay_all(name: str, leaf: Any = None) -> bool:
    """Decays every leaf (MindSpore's rule for FTRL, THOR and group mode)."""
    return True
