"""Hyperparameters that may be Python numbers or JAX arrays (``optax.inject_hyperparams``), and zero-safe math.

``optax.inject_hyperparams(jaxopt_ms.adam)(learning_rate=...)`` calls the factory again inside every ``update``
with the numeric hyperparameters as (traced) arrays. A building block therefore

* converts a hyperparameter with :func:`jaxopt_ms._float32.f32` (``np.float32(tracer)`` would fail);
* decides its *structure* (leave a block out, allocate a buffer) only on values known when it is built:
  :func:`is_static` is ``False`` for an array, whose value may change between updates, so an array takes the
  general path, with the same state structure at ``init`` and at ``update``.

:func:`safe_sqrt` is ``jnp.sqrt`` with a finite derivative at 0 (the double-``where`` pattern inside its JVP), so
that ``jax.grad`` through an update (meta-gradients) stays finite at zero moments and zero norms; its forward
value is ``jnp.sqrt``'s, bit for bit.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["is_array", "is_static", "safe_div", "safe_sqrt", "static_equals"]


def is_array(x: Any) -> bool:
    """A JAX array or tracer (a value that may differ between updates), as opposed to a Python/NumPy number."""
    return isinstance(x, jax.Array)


def is_static(x: Any) -> bool:
    """A value known when the block is built (Python or NumPy number), so that structure may depend on it."""
    return not is_array(x)


def static_equals(x: Any, value: float) -> bool:
    """``x == value`` for a static ``x``; ``False`` for an array (which takes the general path)."""
    return is_static(x) and float(x) == value


@jax.custom_jvp
def safe_sqrt(x: jax.Array) -> jax.Array:
    """``jnp.sqrt(x)`` whose derivative is 0 where ``x <= 0`` (instead of inf, which times 0 is NaN)."""
    return jnp.sqrt(x)


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = jnp.sqrt(x)
    positive = x > 0
    # double where: the unused branch is evaluated at a harmless point, so neither it nor its transpose is inf/NaN
    coef = jnp.where(positive, 0.5 / jnp.sqrt(jnp.where(positive, x, jnp.ones_like(x))), jnp.zeros_like(x))
    return y, t * coef


def safe_div(num: jax.Array, den: jax.Array, where: jax.Array, otherwise: Any) -> jax.Array:
    """``where ? num / den : otherwise`` without a NaN gradient from the unselected ``num / 0``."""
    return jnp.where(where, num / jnp.where(where, den, jnp.ones_like(den)), otherwise)
