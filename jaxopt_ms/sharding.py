"""Optimizer state on a device mesh: each state leaf follows its parameter's sharding, or is sharded ZeRO-1 style.

JAX's SPMD model does the rest: under ``jax.jit`` every ``jnp`` reduction (Lamb/LARS norms, AdaFactor's RMS and
factored moments, loss-scale overflow checks, global-norm clipping) is over the whole global array, whatever its
sharding, so a sharded update gives the single-device numbers. These helpers only decide *where* the state lives:

* **Follow the parameters** (default). A state leaf that belongs to a parameter (found by its pytree path: the
  state path ends with the parameter's path, e.g. ``...moment1['conv']['weight']``) gets that parameter's
  sharding when it has the parameter's shape. A leaf of another shape keeps the parameter's partitioning of the
  dimensions it shares with it (AdaFactor's factored row/column moments: the parameter's shape with one
  dimension dropped or set to 1). Scalars (step counters, beta powers, loss scales) and leaves that belong to no
  parameter (e.g. the fused path's flat buffers) are replicated.
* **ZeRO-1** (``zero1_axis='data'``, or a tuple of mesh axis names). The state is additionally split over that
  data-parallel axis, so that each of its ``N`` devices holds ``1/N``: the leading dimension if its size is
  divisible by ``N`` times its current number of shards, else the largest such dimension, else the leaf keeps its
  parameter's sharding (replicated over the axis) (:func:`zero1_spec`). The rule is applied to each parameter's
  shape; its state leaves of that shape get the result, and leaves derived from it (factored moments) keep the
  split dimensions they share with it. Leaves that belong to no parameter (a flat buffer) are split by the same
  rule along their own axes. Parameters already split over that axis (FSDP-style) are left alone.

Host-memory state (:func:`jaxopt_ms.adam_offload`) keeps its memory kind.

Mesh axis types: with ``Auto`` axes (``Mesh(devices, names)``) the compiler places every intermediate, and a
jitted step whose ``out_shardings`` are :func:`state_shardings` needs nothing else. With ``Explicit`` axes (the
default of ``jax.make_mesh``) shardings are part of the array types and the update must run in the ZeRO-1 layout:
wrap the optimizer with :func:`with_zero1_layout` (harmless with ``Auto`` axes). Following the parameters needs
no wrapper in either mode.

Example (one process or several, after ``jax.distributed.initialize()``)::

    mesh = jax.make_mesh((2, 4), ('data', 'model'))                # Explicit axes
    params = jax.device_put(params, param_shardings)             # NamedSharding(mesh, P(...)) per leaf
    opt = jaxopt_ms.sharding.with_zero1_layout(jaxopt_ms.adam(1e-3), 'data')
    state_sh = jaxopt_ms.sharding.state_shardings(opt, params, zero1_axis='data')
    state = jaxopt_ms.sharding.sharded_init(opt, params, zero1_axis='data')

    @functools.partial(jax.jit, out_shardings=(param_shardings, state_sh))
    def step(params, state, batch):
        grads = jax.grad(loss)(params, batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec, Sharding

from jaxopt_ms import _compat
from jaxopt_ms.transforms.offload import HOST_MEMORY_KIND

__all__ = ["shard_state", "sharded_init", "state_shardings", "with_zero1_layout", "zero1_spec"]

AxisNames = str | Sequence[str]


def _axes_tuple(axes: AxisNames | None) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def _entry_axes(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _padded(spec: PartitionSpec, ndim: int) -> list:
    entries = list(spec)[:ndim]
    return entries + [None] * (ndim - len(entries))


def zero1_spec(shape: Sequence[int], spec: PartitionSpec, mesh: Mesh | AbstractMesh, zero1_axis: AxisNames
               ) -> PartitionSpec:
    """``spec`` with the ZeRO-1 axis added to one dimension of ``shape`` (the rule in the module docstring).

    Args:
        shape: the state leaf's shape.
        spec: its sharding before ZeRO-1 (its parameter's, or replicated).
        mesh: the device mesh.
        zero1_axis: a mesh axis name, or a tuple of names split over together.

    Returns:
        The new ``PartitionSpec`` (``spec`` itself when no dimension can be split evenly).
    """
    axes = _axes_tuple(zero1_axis)
    for a in axes:
        if a not in mesh.shape:
            raise ValueError(f"zero1_axis {a!r} is not an axis of the mesh, whose axes are {tuple(mesh.shape)}.")
    entries = _padded(spec, len(shape))
    used = {a for e in entries for a in _entry_axes(e)}
    if not shape or used.intersection(axes):
        return spec
    n = math.prod(mesh.shape[a] for a in axes)

    def shards(i: int) -> int:
        return math.prod(mesh.shape[a] for a in _entry_axes(entries[i]))

    fits = [i for i, size in enumerate(shape) if size % (shards(i) * n) == 0 and size > 0]
    if not fits:
        return spec
    dim = 0 if 0 in fits else max(fits, key=lambda i: (shape[i] // shards(i), -i))
    entries[dim] = _entry_axes(entries[dim]) + axes
    entries[dim] = entries[dim][0] if len(entries[dim]) == 1 else entries[dim]
    while entries and entries[-1] is None:
        entries.pop()
    return PartitionSpec(*entries)


def _sharding_of(leaf: Any) -> Sharding | None:
    sharding = getattr(leaf, "sharding", None)
    return sharding if isinstance(sharding, Sharding) else None


def _find_mesh(param_shardings: list[Sharding | None], mesh: Mesh | None) -> Mesh | None:
    if mesh is not None:
        return mesh
    for s in param_shardings:
        if isinstance(s, NamedSharding) and isinstance(s.mesh, Mesh):
            return s.mesh
    return None


def _derived_spec(leaf_shape: tuple, param_shape: tuple, spec: PartitionSpec) -> PartitionSpec:
    """The parameter's partitioning carried over to a state leaf of another shape (replicated if unrelated)."""
    entries = _padded(spec, len(param_shape))
    if len(leaf_shape) == len(param_shape):
        return PartitionSpec(*[e if a == b else None for e, a, b in zip(entries, leaf_shape, param_shape)])
    if len(leaf_shape) == len(param_shape) - 1:
        for drop in reversed(range(len(param_shape))):
            if param_shape[:drop] + param_shape[drop + 1:] == leaf_shape:
                return PartitionSpec(*(entries[:drop] + entries[drop + 1:]))
    return PartitionSpec()


def state_shardings(opt: optax.GradientTransformation, params: Any, *, mesh: Mesh | None = None,
                    zero1_axis: AxisNames | None = None) -> Any:
    """The sharding of every leaf of ``opt.init(params)``, computed without allocating the state.

    Args:
        opt: any optimizer (any ``optax.GradientTransformation``).
        params: the parameters as placed for training: arrays with ``NamedSharding`` (or
            ``jax.ShapeDtypeStruct`` with a ``sharding``). Leaves without a ``NamedSharding`` count as
            replicated on ``mesh``.
        mesh: the device mesh; default: the mesh of the parameters' shardings.
        zero1_axis: ``None`` (state follows the parameters) or the data-parallel mesh axis (or axes) to split
            the state over (ZeRO-1, see the module docstring).

    Returns:
        A pytree with the structure of ``opt.init(params)`` whose leaves are ``jax.sharding.Sharding``: pass it
        as ``out_shardings`` of a jitted step, or to :func:`shard_state`.

    Raises:
        ValueError: ``zero1_axis`` is given but there is no mesh, or it names no axis of the mesh.
    """
    path_leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    param_shardings = [_sharding_of(leaf) for _, leaf in path_leaves]
    mesh = _find_mesh(param_shardings, mesh)
    if zero1_axis is not None and mesh is None:
        raise ValueError("zero1_axis needs a device mesh: pass mesh= or parameters placed with a NamedSharding.")

    by_path: dict[tuple, tuple[tuple, Any]] = {}
    for (path, leaf), sharding in zip(path_leaves, param_shardings):
        by_path[tuple(path)] = (tuple(np.shape(leaf)), sharding)
    longest = max((len(p) for p in by_path), default=0)

    def replicated() -> Sharding | None:
        if mesh is not None:
            return NamedSharding(mesh, PartitionSpec())
        return next((s for s in param_shardings if s is not None and s.is_fully_replicated), None)

    def owner(path: tuple) -> tuple[tuple, Any] | None:
        for start in range(max(0, len(path) - longest), len(path)):
            hit = by_path.get(tuple(path[start:]))
            if hit is not None:
                return hit
        return None

    def place(path: tuple, aval: Any) -> Sharding | None:
        shape = tuple(aval.shape)
        sharding = None
        hit = owner(path) if shape else None
        if hit is not None:
            param_shape, param_sharding = hit
            named = isinstance(param_sharding, NamedSharding)
            if zero1_axis is None and shape == param_shape and (mesh is None or named):
                sharding = param_sharding
            elif mesh is not None:
                spec = param_sharding.spec if named else PartitionSpec()
                if zero1_axis is not None:
                    # Split as the parameter's own ZeRO-1 layout, then derive: a factored moment then has the
                    # layout that reducing the (ZeRO-1 laid out) gradient gives it.
                    spec = zero1_spec(param_shape, spec, mesh, zero1_axis)
                if shape != param_shape:
                    spec = _derived_spec(shape, param_shape, spec)
                sharding = NamedSharding(mesh, spec)
        elif shape and zero1_axis is not None:
            sharding = NamedSharding(mesh, zero1_spec(shape, PartitionSpec(), mesh, zero1_axis))
        if sharding is None:
            sharding = replicated()
        if sharding is not None and getattr(aval, "memory_space", None) == jax.memory.Space.Host:
            sharding = sharding.with_memory_kind(HOST_MEMORY_KIND)
        return sharding

    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x), sharding=_sharding_of(x)),
                            params)
    traced = jax.jit(opt.init).trace(abstract)
    flat, treedef = jax.tree_util.tree_flatten_with_path(traced.out_avals)
    placed = [place(tuple(path), aval) for path, aval in flat]
    return treedef.unflatten(placed)


def sharded_init(opt: optax.GradientTransformation, params: Any, *, mesh: Mesh | None = None,
                 zero1_axis: AxisNames | None = None) -> Any:
    """``opt.init(params)`` created directly with :func:`state_shardings` (never whole on one device)."""
    shardings = state_shardings(opt, params, mesh=mesh, zero1_axis=zero1_axis)
    return jax.jit(opt.init, out_shardings=shardings)(params)


def shard_state(state: Any, shardings: Any) -> Any:
    """``state`` placed with ``shardings`` (from :func:`state_shardings`), e.g. a state restored from a
    checkpoint. Inside ``jit`` it constrains the layout of the new state instead."""
    return _compat.device_put(state, shardings)


def _explicit_zero1_layout(x: jax.Array, zero1_axis: AxisNames) -> tuple[jax.Array, NamedSharding | None]:
    sharding = jax.typeof(x).sharding
    if x.ndim == 0 or not isinstance(sharding, NamedSharding) or sharding.mesh.empty:
        return x, None
    mesh = sharding.mesh
    axes = _axes_tuple(zero1_axis)
    if any(mesh.axis_types[mesh.axis_names.index(a)] != AxisType.Explicit for a in axes if a in mesh.axis_names):
        return x, None
    spec = zero1_spec(x.shape, sharding.spec, mesh, zero1_axis)
    return jax.sharding.reshard(x, NamedSharding(mesh, spec)), sharding


def with_zero1_layout(opt: optax.GradientTransformation, zero1_axis: AxisNames
                      ) -> optax.GradientTransformationExtraArgs:
    """``opt`` whose update runs in the ZeRO-1 layout on meshes with ``Explicit`` axes.

    Gradients and parameters are resharded to the layout :func:`state_shardings` gives the state of their shape
    (a reduce-scatter), the update runs on each device's slice, and the updates are resharded back to the
    parameters' layout (an all-gather). With ``Auto`` axes it changes nothing (the compiler does this).

    Args:
        opt: any optimizer.
        zero1_axis: the mesh axis (or axes) the state is split over, as given to :func:`state_shardings`.
    """
    opt = optax.with_extra_args_support(opt)

    def update_fn(updates, state, params=None, **extra_args):
        leaves, treedef = jax.tree.flatten(updates)
        moved = [_explicit_zero1_layout(g, zero1_axis) for g in leaves]
        grads = treedef.unflatten([g for g, _ in moved])
        if params is not None:
            params = jax.tree.map(lambda p: _explicit_zero1_layout(p, zero1_axis)[0], params)
        new_updates, state = opt.update(grads, state, params, **extra_args)
        back = [u if s is None else jax.sharding.reshard(u, s)
                for u, (_, s) in zip(treedef.flatten_up_to(new_updates), moved)]
        return treedef.unflatten(back), state

    return optax.GradientTransformationExtraArgs(opt.init, update_fn)
