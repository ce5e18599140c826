"""Reusable argument checkers with MindSpore's exception types and messages.

Every factory validates its arguments here, at construction time, so that a bad value fails early with the
error type MindSpore raises (``TypeError`` for a wrong type, ``ValueError`` for a wrong value) and a message
that names the optimizer, the argument and the value received, e.g.::

    For 'Adam', the type of 'beta2' should be 'float', but got type 'int' (value 1).

"Float" checks are strict as in MindSpore: ``int`` and ``bool`` are rejected; nan and inf are rejected. Lenient
number checks accept ``int`` and ``bool`` (MindSpore's ``isinstance(x, int)``).

JAX extension (``optax.inject_hyperparams`` passes hyperparameters as arrays): a NumPy floating scalar and a 0-d
floating JAX array are accepted wherever a float is; their range is checked whenever the value is concrete (a
traced value cannot be checked). A checker returns a Python float, or the JAX array itself (see
:mod:`jaxopt_ms._hyper` for how the building blocks take it).

Type before value: MindSpore checks an argument's type before its value, and rejects every array and NumPy scalar
(``np.float64``, a ``float``, aside) where it takes a number (a ``TypeError``, whatever the value). The extension
accepts such a value only when it is valid: an invalid one (out of range, nan) is MindSpore's ``TypeError``, not
the ``ValueError`` the Python float would get. So every input MindSpore rejects gets MindSpore's exception type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxopt_ms._hyper import is_array
from jaxopt_ms.sparse import RowSparse

__all__ = [
    "check_bool",
    "check_floating_gradients",
    "check_floating_leaves",
    "check_gradients_match",
    "check_callable",
    "check_float",
    "check_float_range",
    "check_gradient_transformation",
    "check_int",
    "check_loss_scale",
    "check_number",
    "concrete_value",
    "is_extension",
    "check_non_negative_float",
    "check_positive_float",
    "check_positive_int",
    "check_update_shapes",
    "check_weight_decay",
    "value_error",
]


def _type_error(opt_name: str, arg_name: str, expected: str, value: Any) -> TypeError:
    return TypeError(
        f"For '{opt_name}', the type of '{arg_name}' should be '{expected}', "
        f"but got type '{type(value).__name__}' (value {value!r})."
    )


def check_bool(arg_name: str, value: Any, opt_name: str) -> bool:
    """Returns ``value`` if it is a ``bool``; raises ``TypeError`` otherwise."""
    if not isinstance(value, bool):
        raise _type_error(opt_name, arg_name, "bool", value)
    return value


def _array_scalar(arg_name: str, value: Any, opt_name: str, expected: str, allow_int: bool) -> Any:
    """A NumPy floating scalar (→ Python float) or a 0-d JAX array (kept, traced or not): the JAX extension."""
    if is_array(value):
        dtype = value.dtype
    else:
        dtype = np.asarray(value).dtype
    ok_dtype = np.issubdtype(dtype, np.floating) or (allow_int and np.issubdtype(dtype, np.integer))
    if not ok_dtype or np.ndim(value) != 0:
        raise TypeError(
            f"For '{opt_name}', the type of '{arg_name}' should be '{expected}' (or a 0-d floating array), "
            f"but got type '{type(value).__name__}' with dtype '{dtype}' and shape {np.shape(value)} "
            f"(value {value!r})."
        )
    if is_array(value):
        return value if np.issubdtype(dtype, np.floating) else value.astype(np.float32)
    return float(value)


def is_extension(value: Any) -> bool:
    """A value MindSpore rejects by type where it takes a number but the JAX extension accepts: a NumPy scalar
    (``np.float64``, a Python ``float``, aside), a NumPy array or a JAX array."""
    return isinstance(value, (np.ndarray, jax.Array)) or (isinstance(value, np.generic) and
                                                         not isinstance(value, (float, int)))


def value_error(opt_name: str, arg_name: str, raw: Any, message: str, expected: str = "float") -> Exception:
    """``ValueError(message)``, or for an extension value (:func:`is_extension`) MindSpore's ``TypeError``: its type
    check comes first and rejects the type (the extension takes only valid values)."""
    if not is_extension(raw):
        return ValueError(message)
    return TypeError(
        f"For '{opt_name}', the type of '{arg_name}' should be '{expected}', but got type '{type(raw).__name__}' "
        f"(value {raw!r}). A NumPy scalar or 0-d array is accepted in its place (a JAX extension, e.g. "
        f"optax.inject_hyperparams) only with a valid value, and this one is not: {message}"
    )


def concrete_value(value: Any) -> float | None:
    """The Python float of a number or a concrete 0-d array; ``None`` for a traced value (checked later, never)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return float(value)


def _checked_number(arg_name: str, value: Any, opt_name: str, *, strict: bool) -> Any:
    """Type rules, then finiteness of the concrete value. Returns a Python float or a 0-d JAX array.

    MindSpore's types for Python values: strict → ``float`` only (``int``/``bool`` are a ``TypeError``); lenient
    → ``int`` (``bool`` included: MindSpore's ``isinstance(x, int)``) or ``float``. JAX extension: a NumPy
    floating scalar and a 0-d floating JAX array (integer too when lenient) are accepted, traced or not.
    """
    raw = value
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        value = _array_scalar(arg_name, value, opt_name, "float", allow_int=not strict)
    elif strict:
        if not isinstance(value, float):
            raise _type_error(opt_name, arg_name, "float", value)
    elif not isinstance(value, (int, float)):
        raise _type_error(opt_name, arg_name, "float", value)
    else:
        value = float(value)
    concrete = concrete_value(value)
    if concrete is not None and not math.isfinite(concrete):
        raise value_error(opt_name, arg_name, raw,
                          f"For '{opt_name}', the '{arg_name}' must be a finite number, but got {value!r}.")
    return value


def check_float(arg_name: str, value: Any, opt_name: str) -> Any:
    """Strict float: ``int``/``bool`` → ``TypeError``; nan/inf → ``ValueError`` (see :func:`_checked_number`)."""
    return _checked_number(arg_name, value, opt_name, strict=True)


def check_number(arg_name: str, value: Any, opt_name: str) -> Any:
    """Lenient number (``int``/``bool`` converted, as MindSpore's ``isinstance(x, int)`` allows), finite."""
    return _checked_number(arg_name, value, opt_name, strict=False)


def check_float_range(
    arg_name: str,
    value: Any,
    opt_name: str,
    lower: float | None = None,
    upper: float | None = None,
    *,
    lower_inclusive: bool = True,
    upper_inclusive: bool = True,
    strict: bool = True,
) -> Any:
    """Checks type (strict float, or any int/float with ``strict=False``) and a (half-)open range.

    Returns a Python float, or the 0-d JAX array itself (its range checked when it is concrete).
    """
    raw = value
    value = _checked_number(arg_name, value, opt_name, strict=strict)
    concrete = concrete_value(value)
    if concrete is None:
        return value
    ok = True
    if lower is not None:
        ok &= concrete >= lower if lower_inclusive else concrete > lower
    if upper is not None:
        ok &= concrete <= upper if upper_inclusive else concrete < upper
    if not ok:
        lo = "-inf" if lower is None else lower
        hi = "inf" if upper is None else upper
        lb = "[" if lower_inclusive and lower is not None else "("
        ub = "]" if upper_inclusive and upper is not None else ")"
        message = f"For '{opt_name}', the '{arg_name}' must be in range of {lb}{lo}, {hi}{ub}, but got {raw!r}."
        raise value_error(opt_name, arg_name, raw, message)
    return value


def check_positive_float(arg_name: str, value: Any, opt_name: str, *, strict: bool = True) -> float:
    """Float ``> 0``."""
    return check_float_range(arg_name, value, opt_name, 0.0, None, lower_inclusive=False, strict=strict)


def check_non_negative_float(arg_name: str, value: Any, opt_name: str, *, strict: bool = True) -> float:
    """Float ``>= 0``."""
    return check_float_range(arg_name, value, opt_name, 0.0, None, strict=strict)


def check_int(arg_name: str, value: Any, opt_name: str, lower: int | None = None) -> int:
    """Strict ``int`` (``bool`` rejected), optionally ``>= lower``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(opt_name, arg_name, "int", value)
    if lower is not None and value < lower:
        raise ValueError(f"For '{opt_name}', the '{arg_name}' must be >= {lower}, but got {value!r}.")
    return value


def check_positive_int(arg_name: str, value: Any, opt_name: str) -> int:
    """Strict ``int > 0``."""
    return check_int(arg_name, value, opt_name, lower=1)


def check_loss_scale(value: Any, opt_name: str) -> float:
    """MindSpore's base-class rule: int → float, non-number → TypeError, ``<= 0`` → ValueError."""
    return check_float_range("loss_scale", value, opt_name, 0.0, None, lower_inclusive=False, strict=False)


def check_weight_decay(value: Any, opt_name: str, *, allow_schedule: bool = True) -> float | Callable:
    """MindSpore's base-class rule: number ``>= 0`` (int → float) or, where allowed, a callable ``step -> wd``."""
    if callable(value):
        if not allow_schedule:
            raise TypeError(
                f"For '{opt_name}', the 'weight_decay' should be a float, a dynamic (callable) weight decay "
                f"is not supported, but got {value!r}."
            )
        return value
    return check_float_range("weight_decay", value, opt_name, 0.0, None, strict=False)


def check_callable(arg_name: str, value: Any, opt_name: str) -> Callable:
    """Callable (e.g. a name filter ``(name, leaf) -> bool``)."""
    if not callable(value):
        raise _type_error(opt_name, arg_name, "callable", value)
    return value


def _leaf_names(tree: Any) -> list[str]:
    from jaxopt_ms.names import path_name

    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def check_floating_leaves(params: Any, opt_name: str) -> None:
    """Every parameter leaf must be a real floating-point array (float16, bfloat16, float32, float64).

    Raises:
        TypeError: an integer, boolean or complex leaf, naming it and its dtype (MindSpore optimizes float
            Parameters only; keep such leaves out of the optimizer, e.g. with ``optax.partition``).
    """
    for name, leaf in zip(_leaf_names(params), jax.tree.leaves(params)):
        dtype = getattr(leaf, "dtype", None)
        dtype = np.asarray(leaf).dtype if dtype is None else dtype
        if not jax.numpy.issubdtype(dtype, jax.numpy.floating):
            raise TypeError(
                f"For '{opt_name}', every parameter must be a real floating-point array, but the leaf "
                f"'{name}' has dtype '{dtype}'. Keep integer, boolean and complex leaves out of the optimizer "
                f"(e.g. optax.partition with optax.set_to_zero)."
            )


def check_gradients_match(updates: Any, params: Any, opt_name: str) -> None:
    """The gradients must have the parameters' pytree structure and, leaf by leaf, their shape.

    A gradient leaf may itself be a pytree node where the parameter is one array: a row-sparse gradient
    (:class:`~jaxopt_ms.sparse.RowSparse`) is compared by its ``dense_shape``, other nodes are not compared.

    Raises:
        ValueError: a different structure (naming both) or a leaf whose shape differs (naming it).
    """
    treedef = jax.tree.structure(params)
    try:
        grads = treedef.flatten_up_to(updates)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"For '{opt_name}', the gradients must have the structure of the parameters, but got "
            f"{jax.tree.structure(updates)} for parameters {treedef}."
        ) from e
    for name, g, p in zip(_leaf_names(params), grads, jax.tree.leaves(params)):
        g_shape, p_shape = getattr(g, "shape", None), getattr(p, "shape", None)
        comparable = isinstance(g, (jax.Array, np.ndarray, RowSparse))
        if comparable and p_shape is not None and tuple(g_shape) != tuple(p_shape):
            raise ValueError(
                f"For '{opt_name}', the gradient of '{name}' has shape {tuple(g_shape)} but the parameter has "
                f"shape {tuple(p_shape)}."
            )


def _shape_of(x: Any) -> tuple | None:
    if isinstance(x, RowSparse):
        return tuple(x.dense_shape)
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(shape)


def check_floating_gradients(updates: Any, opt_name: str) -> None:
    """Every gradient leaf (a row-sparse gradient: its values) must be floating-point.

    Raises:
        TypeError: an integer or boolean gradient leaf, naming it and its dtype (integer arithmetic with a float
            learning rate would give silently wrong or zero updates).
    """
    from jaxopt_ms.sparse import is_row_sparse

    paths = jax.tree_util.tree_flatten_with_path(updates, is_leaf=is_row_sparse)[0]
    names = _leaf_names(jax.tree.map(lambda _: 0, updates, is_leaf=is_row_sparse))
    for name, (_, g) in zip(names, paths):
        values = g.values if isinstance(g, RowSparse) else g
        dtype = getattr(values, "dtype", None)
        if dtype is None and isinstance(values, (int, float, bool, complex)):
            dtype = np.asarray(values).dtype
        if dtype is not None and not jax.numpy.issubdtype(dtype, jax.numpy.floating):
            raise TypeError(
                f"For '{opt_name}', every gradient must be floating-point, but the gradient of '{name}' has dtype "
                f"'{dtype}'. Cast it to the parameter's dtype (e.g. jax.tree.map(lambda g, p: g.astype(p.dtype), "
                f"grads, params))."
            )


def check_update_shapes(grads: Any, updates: Any, old_state: Any, new_state: Any, opt_name: str) -> None:
    """Without ``params``: a gradient leaf of a wrong shape must not broadcast into the state or the update.

    Checks (shapes are static, so this is free under jit) that each update leaf has its gradient's shape and that
    every state leaf keeps its shape.

    Raises:
        ValueError: naming the leaf and both shapes.
    """
    from jaxopt_ms.sparse import is_row_sparse

    g_leaves = jax.tree.leaves(grads, is_leaf=is_row_sparse)
    u_leaves = jax.tree.leaves(updates, is_leaf=is_row_sparse)
    names = _leaf_names(jax.tree.map(lambda _: 0, grads, is_leaf=is_row_sparse))
    if len(g_leaves) == len(u_leaves):
        for name, g, u in zip(names, g_leaves, u_leaves):
            gs, us = _shape_of(g), _shape_of(u)
            if gs is not None and us is not None and gs != us:
                raise ValueError(
                    f"For '{opt_name}', the gradient of '{name}' has shape {gs} but the optimizer state expects "
                    f"shape {us} (the gradient would be broadcast). Pass gradients of the parameters' shapes."
                )
    old, new = jax.tree.leaves(old_state), jax.tree.leaves(new_state)
    if len(old) == len(new):
        for a, b in zip(old, new):
            if _shape_of(a) != _shape_of(b):
                raise ValueError(
                    f"For '{opt_name}', a gradient does not have the shape of the optimizer state: a state leaf of "
                    f"shape {_shape_of(a)} would become {_shape_of(b)} (broadcast). Pass gradients of the "
                    f"parameters' shapes."
                )


def check_gradient_transformation(arg_name: str, value: Any, opt_name: str) -> Any:
    """An ``optax.GradientTransformation`` (anything with callable ``init`` and ``update``)."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            f"For '{opt_name}', the '{arg_name}' should be an optax.GradientTransformation (with init and update), "
            f"but got type '{type(value).__name__}' (value {value!r})."
        )
    return value
