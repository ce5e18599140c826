"""The one place that knows where the JAX releases jaxopt_ms supports (``jax>=0.8.1``, pyproject.toml) differ.

``compute_on`` (``jax.experimental.compute_on``), used by :mod:`jaxopt_ms.transforms.offload`:

* jax 0.8.1 - 0.11.0: ``compute_on(compute_type)`` is a context manager; applied to a function as a decorator it
  traces that function with the compute type, and where the outputs live is left to the compiler, so they are placed
  in host memory after it.
* jax >= 0.11.1: ``compute_on(f, *, compute_type, out_memory_spaces)`` wraps ``f`` and names where each output
  lives (a pytree prefix of the outputs, of ``jax.memory.Space`` values).

:func:`compute_on_host` takes the form the installed JAX has (decided by its signature, not its version number).
Host memory on a CPU backend: every supported release lists a ``pinned_host`` memory space, but before jax/jaxlib
0.10.2 ``jit`` places every output of a CPU computation in device memory, so offloaded state comes back in device
memory after a jitted step, and a ``jit`` whose ``out_shardings`` name ``pinned_host`` fails to compile (no
``annotate_device_placement`` for the host). :func:`jit_keeps_host_memory` probes the backend once; offloading
(:func:`jaxopt_ms.transforms.host_memory_kind`) needs it.

Resharding host memory: jax 0.12's CPU client cannot split an array that lies in ``pinned_host`` memory over
several devices (``UNIMPLEMENTED: Unsupported layout used for PjRt CPU buffers: {0:S(5)}``), which earlier releases
do; :func:`device_put` takes such a (fully addressable) array through NumPy, which every release places.

Flax nnx (optional, imported only when asked): ``nnx.as_pure`` (an nnx tree with every ``Variable`` replaced by its
value) exists from flax 0.12.5; :func:`nnx_pure` is that function, or the same map on the floor's flax 0.12.1.

Everything else the library uses (``jax.memory.Space``, ``jax.sharding.AbstractMesh``/``AxisType``,
``jax.sharding.reshard``, ``jax.typeof``, ``Traced.out_avals``) is spelled the same in every supported release.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental.compute_on import compute_on as _compute_on

__all__ = ["compute_on_host", "device_put", "jit_keeps_host_memory", "nnx_pure"]

# jax >= 0.11.1: compute_on(f, *, compute_type, out_memory_spaces); before: compute_on(compute_type), a context manager.
_HAS_OUT_MEMORY_SPACES = "out_memory_spaces" in inspect.signature(_compute_on).parameters


def compute_on_host(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` computed on the host (XLA compute type ``device_host``), every output in host memory."""
    if _HAS_OUT_MEMORY_SPACES:
        return _compute_on(f, compute_type="device_host", out_memory_spaces=jax.memory.Space.Host)
    on_host = _compute_on("device_host")(f)
    return lambda *args: jax.device_put(on_host(*args), jax.memory.Space.Host)


@functools.cache
def jit_keeps_host_memory(device: jax.Device | None = None) -> bool:
    """Whether ``jit`` on ``device`` (default: the first local device) keeps an output in ``pinned_host`` memory."""
    device = device or jax.local_devices()[0]
    try:
        if "pinned_host" not in {memory.kind for memory in device.addressable_memories()}:
            return False
    except (AttributeError, NotImplementedError, RuntimeError):  # a backend without memory spaces
        return False
    put = jax.jit(lambda x: jax.device_put(x, jax.memory.Space.Host))
    with jax.ensure_compile_time_eval():  # run now, also when first asked while a function is being traced
        return put(jax.device_put(np.zeros(1, np.float32), device)).sharding.memory_kind == "pinned_host"


def device_put(tree: Any, shardings: Any) -> Any:
    """``jax.device_put(tree, shardings)``, with fully addressable arrays in host memory placed from NumPy (the
    same values; see the module docstring). Inside ``jit`` (tracers) it is ``jax.device_put`` itself."""

    def from_host(x):
        if (isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and x.is_fully_addressable
                and x.sharding.memory_kind == "pinned_host"):
            return np.asarray(x)
        return x

    return jax.device_put(jax.tree.map(from_host, tree), shardings)


def nnx_pure(tree: Any) -> Any:
    """``flax.nnx.as_pure(tree)``: every nnx ``Variable`` in ``tree`` replaced by its value (flax >= 0.12.5), or
    the same map where that function is missing."""
    from flax import nnx

    if hasattr(nnx, "as_pure"):
        return nnx.as_pure(tree)
    is_variable = lambda x: isinstance(x, nnx.Variable)
    return jax.tree.map(lambda x: nnx_pure(x.value) if is_variable(x) else x, tree, is_leaf=is_variable)
