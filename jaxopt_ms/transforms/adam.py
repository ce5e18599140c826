"""MindSpore's Adam direction (op ``Adam`` / ``ApplyAdamWithAmsgradV2``), reference §3.3.

    b1p <- f32(b1p * b1);  b2p <- f32(b2p * b2)           running float32 products, stored
    m <- m + (g - m)(1 - b1);  v <- v + (g² - v)(1 - b2)    1 - b in float32, from the float32 beta
    d  = sqrt(1 - b2p) / (1 - b1p) * num / (sqrt(v̂) + eps)
    num = b1 m + (1 - b1) g  (use_nesterov)  else  m;   v̂ = max(v̂, v) (use_amsgrad) else v

``eps`` is added to the square root of the *uncorrected* second moment (TensorFlow's "epsilon hat"), unlike
``optax.scale_by_adam``. The learning rate is applied by a later block (``p -= lr * d``).

Row-sparse gradients (:class:`~jaxopt_ms.sparse.RowSparse`, deduplicated first, reference §2.8, §3.3, §3.5):

* ``lazy=False`` (MindSpore's Adam): dense Adam on the densified gradient. Every row's moments decay
  (``m <- b1 m``, ``v <- b2 v``); the touched rows get the full formula; the direction is dense. The step is
  table-sized by definition; the dense gradient is formed by one scatter (the fastest form measured).
* ``lazy=True`` (LazyAdam): only the touched rows of ``m``, ``v`` change; the direction is a ``RowSparse`` of the
  touched rows (so the parameter changes only there); ``b1p``, ``b2p`` advance every call. Cost: the touched rows.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_ms._float32 import f32, one_minus, rounded
from jaxopt_ms._hyper import safe_sqrt
from jaxopt_ms._tree import unzip
from jaxopt_ms.sparse import RowSparse, coalesce, densify, gather_rows, is_row_sparse, set_rows

__all__ = ["ScaleByAdamState", "adam_direction", "adam_moments", "scale_by_adam"]


class ScaleByAdamState(NamedTuple):
    """MindSpore's names: ``beta1_power``, ``beta2_power`` (float32 scalars), ``moment1``, ``moment2``, ``vhat``."""

    beta1_power: jax.Array
    beta2_power: jax.Array
    moment1: optax.Updates
    moment2: optax.Updates
    vhat: optax.Updates | None


def adam_moments(g, m, v, beta1: float, beta2: float):
    """``m <- m + (g - m)(1 - b1)``, ``v <- v + (g² - v)(1 - b2)`` (in the moments' dtype).

    MindSpore's CPU kernels' form (``AdamFp32`` in nnacl ``adam_fp32.c``, ``ApplyAdamWithAmsgradV2`` and
    ``AdamWeightDecayFp32`` likewise), ``1 - b`` computed in float32 from the float32 beta.
    """
    m = (m + (g - m) * one_minus(beta1, m.dtype)).astype(m.dtype)
    v = (v + (g * g - v) * one_minus(beta2, v.dtype)).astype(v.dtype)
    return m, v


def adam_direction(g, m, v, correction, beta1: float, eps: float, use_nesterov: bool):
    """``correction * num / (sqrt(v) + eps)`` with ``num = b1 m + (1 - b1) g`` under nesterov, else ``m``.

    Low-precision leaves are computed in float32 (cast back to ``g.dtype``): in float16 ``eps = 1e-8`` rounds to 0
    and a zero gradient would give ``0 / 0``. Float32 leaves are unaffected.
    """
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    g_, m, v = g.astype(dtype), m.astype(dtype), v.astype(dtype)
    # nnacl AdamFp32 (nesterov): m * b1 + (1 - b1) * g, in float32
    num = m * f32(beta1).astype(dtype) + one_minus(beta1, dtype) * g_ if use_nesterov else m
    return (correction.astype(dtype) * num / (safe_sqrt(v) + eps)).astype(g.dtype)


def sparse_adam_leaf(g: RowSparse, m, v, correction, beta1: float, beta2: float, eps: float, use_nesterov: bool,
                     lazy: bool):
    """One row-sparse Adam leaf: ``(direction, m, v)``; see the module docstring for ``lazy``."""
    if not lazy:
        # MindSpore's sparse Adam is dense Adam on the densified gradient: every row's moments decay, so the
        # step is table-sized anyway; one scatter into zeros then the fused dense formula is the fastest form
        # measured on CPU (benchmarks/sparse_embedding.py) and the same arithmetic as the dense path.
        g_dense = densify(g)
        m, v = adam_moments(g_dense, m, v, beta1, beta2)
        return adam_direction(g_dense, m, v, correction, beta1, eps, use_nesterov), m, v
    g = coalesce(g)
    rows, g_rows = g.indices, g.values
    m_rows, v_rows = adam_moments(g_rows, gather_rows(m, rows), gather_rows(v, rows), beta1, beta2)
    d_rows = adam_direction(g_rows, m_rows, v_rows, correction, beta1, eps, use_nesterov)
    return RowSparse(rows, d_rows, g.dense_shape), set_rows(m, rows, m_rows), set_rows(v, rows, v_rows)


def scale_by_adam(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, use_nesterov: bool = False,
                  use_amsgrad: bool = False, *, lazy: bool = False) -> optax.GradientTransformation:
    """MindSpore Adam's direction ``d`` (see the module docstring); state ``ScaleByAdamState``.

    ``lazy`` only matters for :class:`~jaxopt_ms.sparse.RowSparse` gradient leaves (LazyAdam's sparse path);
    ``use_amsgrad`` has no sparse path (``TypeError``, as in MindSpore). With ``use_amsgrad``, ``use_nesterov``
    is ignored: MindSpore's amsgrad kernel (``ApplyAdamWithAmsgradV2``) has no nesterov input, so ``num = m``.
    """
    # MindSpore 2.10 nn.Adam: use_amsgrad selects ApplyAdamWithAmsgradV2(use_locking) and drops use_nesterov.
    use_nesterov = use_nesterov and not use_amsgrad

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return ScaleByAdamState(
            beta1_power=jnp.ones([], jnp.float32),
            beta2_power=jnp.ones([], jnp.float32),
            moment1=zeros,
            moment2=optax.tree.zeros_like(params),
            vhat=optax.tree.zeros_like(params) if use_amsgrad else None,
        )

    def update_fn(updates, state, params=None):
        del params
        # Stored products, as MindSpore's Adam cell assigns them before the kernel reads them.
        b1p = rounded(state.beta1_power * f32(beta1))
        b2p = rounded(state.beta2_power * f32(beta2))
        correction = jnp.sqrt(1.0 - b2p) / (1.0 - b1p)
        if any(is_row_sparse(x) for x in jax.tree.leaves(updates, is_leaf=is_row_sparse)):
            if use_amsgrad:
                raise TypeError("For 'Adam', 'use_amsgrad=True' has no sparse path (as in MindSpore): got a "
                                "RowSparse gradient; densify it with jaxopt_ms.sparse.densify or turn amsgrad off.")

            def leaf(g, m, v):
                if isinstance(g, RowSparse):
                    return sparse_adam_leaf(g, m, v, correction, beta1, beta2, eps, use_nesterov, lazy)
                m, v = adam_moments(g, m, v, beta1, beta2)
                return adam_direction(g, m, v, correction, beta1, eps, use_nesterov), m, v

            out = jax.tree.map(leaf, updates, state.moment1, state.moment2, is_leaf=is_row_sparse)
            treedef = jax.tree.structure(updates, is_leaf=is_row_sparse)
            direction, m, v = (treedef.unflatten(x) for x in zip(*treedef.flatten_up_to(out)))
            return direction, ScaleByAdamState(b1p, b2p, m, v, None)
        moments = jax.tree.map(lambda g, m, v: adam_moments(g, m, v, beta1, beta2),
                               updates, state.moment1, state.moment2)
        m, v = unzip(moments, updates, 2)
        vhat = None
        den_v = v
        if use_amsgrad:
            vhat = jax.tree.map(jnp.maximum, state.vhat, v)
            den_v = vhat
        direction = jax.tree.map(lambda g, m_, v_: adam_direction(g, m_, v_, correction, beta1, eps, use_nesterov),
                                 updates, m, den_v)
        return direction, ScaleByAdamState(b1p, b2p, m, v, vhat)

    return optax.GradientTransformation(init_fn, update_fn)
