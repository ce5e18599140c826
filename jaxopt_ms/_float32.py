"""Hyperparameter arithmetic in float32, as MindSpore's kernels and cells do it.

MindSpore holds every hyperparameter as a float32 tensor (``Tensor(beta2, float32)``) and its kernels derive
the constants they need in float32: ``one - beta2`` with ``float beta2`` (``adam_fp32.c``,
``adam_weight_decay_cpu_kernel.cc``, ...). Computing ``1 - beta2`` from the Python float and rounding once gives
another number: for ``beta2 = 0.9999``, ``1e-4`` against MindSpore's ``1.00016594e-4`` (``f32(0.9999)`` is
``0.99989998``), a relative difference of 1.7e-4 in every second moment.

The helpers take a Python float, a NumPy scalar or a JAX array (traced too, e.g. under
``optax.inject_hyperparams``) alike and never branch on the value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["f32", "f32_value", "one_minus", "rounded"]


def f32(x: jax.typing.ArrayLike) -> jax.Array:
    """``x`` as MindSpore holds a hyperparameter: a float32 scalar (or array)."""
    return jnp.asarray(x, jnp.float32)


def one_minus(x: jax.typing.ArrayLike, dtype: jax.typing.DTypeLike = jnp.float32) -> jax.Array:
    """``f32(1) - f32(x)`` computed in float32 (MindSpore's ``one - beta``), then cast to ``dtype``.

    Cast to the leaf's dtype, as MindSpore's kernels cast their float32 inputs to the leaf type ``T``; a float64
    leaf (``jax.enable_x64``) keeps the float32 value exactly.
    """
    return (jnp.float32(1.0) - f32(x)).astype(dtype)


def f32_value(x):
    """``x`` rounded to float32 for a block that does its own arithmetic on it (e.g. an Optax transformation):
    a Python or NumPy number becomes the Python float of its float32 value (weakly typed, so leaves keep their
    dtype; ``1 - x`` in Python is then exact and rounds once, i.e. equals float32's ``1 - x``); an array is cast
    to float32."""
    if isinstance(x, (bool, int, float, np.number)):
        return float(np.float32(x))
    return f32(x)


def rounded(x: jax.Array) -> jax.Array:
    """``x`` (a float32 product) rounded as MindSpore stores it, before the next operation uses it.

    XLA contracts ``1 - a * b`` into one fused multiply-add, i.e. subtracts the *exact* product. Where the
    difference cancels (``1 - beta2_power`` with ``beta2 = 0.9999``: ``1 - 0.99979997``) that changes the result
    by 5e-5 relative, not one ulp. The select (``NaN`` for ``NaN``, so the identity) is opaque to that rewrite.
    """
    return jnp.where(jnp.isnan(x), jnp.float32(np.nan).astype(x.dtype), x)
