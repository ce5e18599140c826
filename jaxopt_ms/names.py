"""Parameter names (pytree paths) and the name filters MindSpore decides things by.

MindSpore selects the leaves that weight decay, LARS and gradient centralization touch by parameter *name*.
In JAX a leaf's name is its pytree path, keys joined with ``'.'``: dict keys as they are, sequence indices as
digits, attribute names as they are. ``{'conv1': {'weight': w}}`` has the leaf name ``conv1.weight``.

Every filter is a callable ``(name: str, leaf) -> bool``. MindSpore's name rules match nothing in Flax or
Equinox models, so presets for those are provided too::

    opt = jaxopt_ms.adam(1e-3, weight_decay=1e-4, decay_filter=jaxopt_ms.flax_decay_filter)
"""

from __future__ import annotations

import sys
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


def _variable_paths(params: Any) -> set[tuple]:
    """The key paths of Flax nnx ``Variable`` nodes in ``params`` (none where flax is not imported)."""
    nnx = sys.modules.get("flax.nnx")
    variable = getattr(nnx, "Variable", None)
    if variable is None:
        return set()
    found = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: isinstance(x, variable))[0]
    return {path for path, x in found if isinstance(x, variable)}


def _is_value_key(key: Any) -> bool:
    return isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value"


def param_names(params: Any) -> Any:
    """A pytree of strings with the structure of ``params``: each leaf's dotted path name.

    A :class:`jaxopt_ms.sparse.RowSparse` gradient counts as one leaf. A Flax nnx ``Variable`` (``nnx.Param``)
    is named by its place, not by its inner ``value`` field: an ``nnx.Optimizer`` initialises the optimizer on the
    model's ``nnx.State`` (``Param`` objects, whose leaf paths end in ``.value``) and updates it with plain arrays
    (paths without it); both are ``fc1.bias`` here, so a selector such as ``r'\\.bias$'`` sees one name at ``init``
    and at ``update``.

    Example:
        >>> jaxopt_ms.param_names({'conv1': {'weight': 0.0}, 'bn1.gamma': 1.0})
        {'bn1.gamma': 'bn1.gamma', 'conv1': {'weight': 'conv1.weight'}}
    """
    variables = _variable_paths(params)

    def name(path: tuple, _: Any) -> str:
        if variables and path and _is_value_key(path[-1]) and path[:-1] in variables:
            path = path[:-1]
        return path_name(path)

    return jax.tree_util.tree_map_with_path(name, params, is_leaf=is_row_sparse)


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


_EQUINOX_NORMS = ("LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm")


def equinox_decay_filter(name_or_model: Any, leaf: Any = None) -> Any:
    """For Equinox models: decay weights, skip biases and the parameters of normalisation layers.

    Two forms:

    - ``equinox_decay_filter(model)`` (recommended) returns a filter that decides by the *module*: leaves inside
      an ``eqx.nn.LayerNorm`` / ``GroupNorm`` / ``RMSNorm`` / ``BatchNorm`` of ``model`` and every ``bias``
      are not decayed, every other leaf is. Right for norms of any shape (``eqx.nn.LayerNorm((3, 4))``).
    - ``equinox_decay_filter(name, leaf)`` is itself a filter that decides by the name and the rank, as the
      tree of arrays alone allows: ``bias`` is skipped and a ``weight`` is decayed iff its rank is >= 2.
      Equinox names linear/conv and norm parameters alike (``weight``/``bias``), so a norm over several axes
      (rank-2 weight) *is* decayed by this form; build the filter from the model to avoid that.

    Example:
        >>> opt = jaxopt_ms.adamw(1e-3, weight_decay=1e-2, decay_filter=jaxopt_ms.equinox_decay_filter(model))
    """
    if isinstance(name_or_model, str):
        if _last(name_or_model) == "bias":
            return False
        ndim = getattr(leaf, "ndim", None)
        return ndim is None or ndim >= 2
    import equinox as eqx  # only for a model, which needs equinox anyway

    norms = tuple(getattr(eqx.nn, n) for n in _EQUINOX_NORMS if hasattr(eqx.nn, n))
    found = jax.tree_util.tree_flatten_with_path(name_or_model, is_leaf=lambda x: isinstance(x, norms))[0]
    prefixes = tuple(path_name(path) for path, x in found if isinstance(x, norms))

    def decay(name: str, leaf: Any = None) -> bool:
        if _last(name) == "bias":
            return False
        return not any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)

    decay.__qualname__ = decay.__name__ = "equinox_decay_filter(model)"
    return decay


def decay_all(name: str, leaf: Any = None) -> bool:
    """Decays every leaf (MindSpore's rule for FTRL, THOR and group mode)."""
    return True
