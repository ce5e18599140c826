"""Optimizer state in host memory: MindSpore's AdamOffload direction (op ``AdamNoUpdateParam``), reference §3.6.

The moments live in the host memory space of the parameters' devices (JAX memory kind ``pinned_host``) and the
moment update and the Adam direction are computed there (XLA compute-on-host); only the direction travels to
the device, where the learning rate is applied and the parameter updated. The arithmetic is
:func:`jaxopt_ms.transforms.adam.adam_moments` and :func:`~jaxopt_ms.transforms.adam.adam_direction`, so the
numbers are Adam's.

Where the state goes (``on_host``): by default (``None``) to host memory on accelerators that have a
``pinned_host`` memory space (GPUs); on a CPU backend, whose "device" memory already is host RAM, offloading saves
nothing and only adds copies, so the state stays put and the update is :func:`scale_by_adam`'s. ``True`` offloads
wherever the backend has a ``pinned_host`` space (CPU included: how the tests exercise the host path without a
GPU); ``False`` never offloads. A backend without host memory spaces (or whose ``jit`` does not keep arrays in
them: CPU before jax 0.10.2) never offloads; the numbers are the same in every case.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_ms._compat import compute_on_host, jit_keeps_host_memory
from jaxopt_ms._float32 import f32, rounded
from jaxopt_ms._tree import unzip
from jaxopt_ms.transforms.adam import ScaleByAdamState, adam_direction, adam_moments

__all__ = [
    "HOST_MEMORY_KIND",
    "host_memory_kind",
    "host_zeros_like",
    "offloads",
    "scale_by_adam_offload",
    "to_device",
    "to_host",
]

HOST_MEMORY_KIND = "pinned_host"


def host_memory_kind(device: jax.Device | None = None) -> str | None:
    """``'pinned_host'`` if ``device`` (default: the first local device) has that memory space and ``jit`` keeps
    arrays in it, else ``None`` (CPU backends before jax 0.10.2 list the space but ``jit`` ignores it:
    :func:`jaxopt_ms._compat.jit_keeps_host_memory`)."""
    return HOST_MEMORY_KIND if jit_keeps_host_memory(device or jax.local_devices()[0]) else None


def to_host(tree: Any) -> Any:
    """``tree`` moved to host memory, sharding otherwise unchanged (works inside and outside ``jit``)."""
    return jax.device_put(tree, jax.memory.Space.Host)


def to_device(tree: Any) -> Any:
    """``tree`` moved to device memory, sharding otherwise unchanged (works inside and outside ``jit``)."""
    return jax.device_put(tree, jax.memory.Space.Device)


def offloads(on_host: bool | None = None) -> bool:
    """Whether the state goes to host memory for this ``on_host`` setting on this backend (module docstring)."""
    if on_host is False or host_memory_kind() is None:
        return False
    return bool(on_host) or jax.local_devices()[0].platform != "cpu"


def host_zeros_like(tree: Any) -> Any:
    """Zeros shaped like ``tree`` in host memory, made on the host when the leaves are placed arrays (so that
    the device never holds them, even for a moment), else made and then moved (under ``jit``)."""

    def zeros(leaf):
        sharding = getattr(leaf, "sharding", None)
        if (isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer)
                and isinstance(sharding, jax.sharding.Sharding) and sharding.is_fully_addressable):
            return jax.device_put(np.zeros(leaf.shape, leaf.dtype), sharding.with_memory_kind(HOST_MEMORY_KIND))
        return to_host(jnp.zeros_like(leaf))

    return jax.tree.map(zeros, tree)


def _moments_and_direction(grads, moment1, moment2, beta1_power, beta2_power, *, beta1, beta2, eps, use_nesterov):
    # The same ops, in the same order, as scale_by_adam's update, so that the numbers are Adam's.
    correction = jnp.sqrt(1.0 - beta2_power) / (1.0 - beta1_power)
    moments = jax.tree.map(lambda g, m, v: adam_moments(g, m, v, beta1, beta2), grads, moment1, moment2)
    m, v = unzip(moments, grads, 2)
    direction = jax.tree.map(lambda g, m_, v_: adam_direction(g, m_, v_, correction, beta1, eps, use_nesterov),
                             grads, m, v)
    return direction, m, v


def scale_by_adam_offload(beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, use_nesterov: bool = False,
                          on_host: bool | None = None) -> optax.GradientTransformation:
    """MindSpore Adam's direction with the moments in host memory, computed on the host.

        b1p <- f32(b1p * b1);  b2p <- f32(b2p * b2)                         (device, scalars)
        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g²                    (host)
        d  = sqrt(1 - b2p) / (1 - b1p) * num / (sqrt(v) + eps)             (host, then copied to the device)

    Args:
        beta1, beta2, eps, use_nesterov: as :func:`jaxopt_ms.transforms.scale_by_adam`.
        on_host: ``None`` (host memory on accelerators), ``True`` (wherever there is a ``pinned_host`` memory
            space, CPU included) or ``False`` (never); see the module docstring.

    Returns:
        An ``optax.GradientTransformation`` with state :class:`~jaxopt_ms.transforms.ScaleByAdamState`
        (``vhat`` is ``None``) whose ``moment1``/``moment2`` have memory kind ``pinned_host`` when offloaded.
    """
    rule = functools.partial(_moments_and_direction, beta1=beta1, beta2=beta2, eps=eps, use_nesterov=use_nesterov)
    host_rule = compute_on_host(jax.jit(rule))

    def offload() -> bool:
        # Decided when init/update run (not when the optimizer is built) so that building one never starts a
        # backend; the answer depends on the backend only, so init and update always agree.
        return offloads(on_host)

    def zeros(params):
        return host_zeros_like(params) if offload() else optax.tree.zeros_like(params)

    def init_fn(params):
        return ScaleByAdamState(
            beta1_power=jnp.ones([], jnp.float32),
            beta2_power=jnp.ones([], jnp.float32),
            moment1=zeros(params),
            moment2=zeros(params),
            vhat=None,
        )

    def update_fn(updates, state, params=None):
        del params
        b1p = rounded(state.beta1_power * f32(beta1))
        b2p = rounded(state.beta2_power * f32(beta2))
        if not offload():
            direction, m, v = rule(updates, state.moment1, state.moment2, b1p, b2p)
            return direction, ScaleByAdamState(b1p, b2p, m, v, None)
        direction, m, v = host_rule(to_host(updates), to_host(state.moment1), to_host(state.moment2),
                                    to_host(b1p), to_host(b2p))
        return to_device(direction), ScaleByAdamState(b1p, b2p, m, v, None)

    return optax.GradientTransformation(init_fn, update_fn)
