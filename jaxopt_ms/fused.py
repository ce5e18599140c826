"""The fused fast path: parameters, gradients and optimizer state held as a few flat buffers across steps.

Optax updates a pytree leaf by leaf: one kernel (and on GPU one launch) per leaf and per operation, and a jitted
step that takes thousands of arrays. Here the training state holds one 1-D buffer per dtype (and per set of
per-leaf facts the optimizer needs, e.g. parameter group or weight-decay filter); the model sees its leaves as
views of those buffers, the gradient arrives as flat buffers (the view's VJP is one concatenate per buffer), and
the optimizer updates the buffers with a handful of fused element-wise kernels. Flattening per step instead
(concatenate the gradient, split the update) costs more than it saves, so the switch is explicit::

    opt = jaxopt_ms.fused.fuse(jaxopt_ms.adam(1e-3, weight_decay=1e-4))
    flat = opt.flatten(params)                    # once; params now live in flat buffers
    state = opt.init(flat)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(flat, state, batch):
        loss, grads = jax.value_and_grad(lambda f: loss_fn(jaxopt_ms.fused.view(f), batch))(flat)
        updates, state = opt.update(grads, state, flat)
        return optax.apply_updates(flat, updates), state, loss

    params = jaxopt_ms.fused.unflatten(flat)      # for export / evaluation

The fused optimizer is the *same* optimizer (same factory, same blocks, same per-array formulas) run on the
buffers; its trajectory equals the per-leaf one. Per-leaf facts are carried by the partition: each buffer is
homogeneous in them, and the optimizer is rebuilt (``jaxopt_ms._factory.rebuild``) with its name filters and
group selectors answering per buffer. ``current_lr`` / ``set_lr`` work on the fused state as on the per-leaf one.

Writing blocks that work here: an element-wise block (any ``jax.tree.map`` of a per-array formula) works on
flat buffers unchanged. A block whose formula depends on a leaf's shape or reduces over a leaf (gradient
centralization, Lamb / LARS trust ratios, AdaFactor's RMS and factored moments) uses one of the hooks, which are
``jax.tree.map`` / ``jnp.sum`` / the identity on ordinary pytrees, so both paths run the same function:
:func:`map_leaves` (per-leaf function, buffers re-assembled by one concatenate), :func:`leaf_sums` /
:func:`leaf_means` (per-leaf sums or means broadcast over the leaf), :func:`buffer_tree` (a buffer holding one
leaf seen in that leaf's shape; a per-leaf fact of the factory gives such leaves a buffer of their own) or
:func:`leaf_tree` / :func:`restore` (the leaf views, and back). Blocks never test for FlatParams themselves.

What the blocks of each family use (the per-array formula stays one function, called by both paths):

- element-wise rules (SGD, Momentum, Adam, AdamWeightDecay, RMSProp, Adagrad, ProximalAdagrad, FTRL, Adamax,
  Adadelta, ASGD, Rprop): ``jax.tree.map`` as usual; nothing to do;
- gradient centralization: :func:`map_leaves` with ``where=qualifies_for_centralization``;
- Lamb / LARS trust ratios: only the norms are per leaf, :func:`leaf_sums` (one pass over each buffer seen as
  ``(rows, row)``, its leaves being aligned to rows, then a few small per-leaf sums); the rest of the step is
  element-wise over whole buffers, the norms broadcast over each leaf's elements (``lamb_update`` /
  ``lamb_ratio_of_norms``, ``lars_trust`` / ``lars_scale``). :func:`map_leaves` over a whole step would slice
  it into one program piece per leaf: slow to compile and to run on trees of many leaves;
- AdaFactor: its RMS values via :func:`leaf_means`; its factored second moments (rank >= 2 leaves, each in a
  buffer of its own: ``adafactor.fused_own_buffer``) on :func:`buffer_tree`, so a factored leaf keeps its row
  and column statistics while all the small unfactored leaves share one buffer and one element-wise update.

Optimizers merged later are covered by ``tests/test_fused.py`` once they are listed in ``tests/optimizer_zoo.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np
import optax

from jaxopt_ms._factory import Optimizer
from jaxopt_ms._flat import (
    FlatParams,
    Layout,
    LeafSlot,
    buffer_tree,
    flatten,
    from_buffer_tree,
    is_flat,
    leaf_means,
    leaf_norms,
    leaf_sums,
    leaf_tree,
    make_layout,
    map_leaves,
    restore,
    unflatten,
    view,
)
from jaxopt_ms.groups import GroupOverlapError, _parse_groups, _selector, check_selection
from jaxopt_ms.names import decay_all, mindspore_decay_filter
from jaxopt_ms.transforms.centralization import qualifies_for_centralization

__all__ = [
    "FlatParams",
    "FusedOptimizer",
    "Layout",
    "LeafSlot",
    "buffer_tree",
    "flatten",
    "from_buffer_tree",
    "fuse",
    "is_flat",
    "leaf_means",
    "leaf_norms",
    "leaf_sums",
    "leaf_tree",
    "make_layout",
    "map_leaves",
    "restore",
    "unflatten",
    "view",
]

Facts = tuple[tuple[str, Hashable], ...]


def _default_filter(arg: str, optimizer: Optimizer) -> Callable | None:
    """What a factory uses for a ``*_filter`` argument left at ``None`` (a factory whose default differs from
    MindSpore's name rule says so in its ``default_<arg>`` attribute, e.g. ``ftrl.default_decay_filter``)."""
    if arg == "decay_filter" and optimizer.arguments.get("param_groups") is not None:
        return decay_all
    default = mindspore_decay_filter if arg == "decay_filter" else None
    return getattr(optimizer.factory, f"default_{arg}", default)


def _decays(arguments: dict) -> bool:
    """Whether any leaf may get weight decay (the decay filter matters)."""
    active = lambda wd: callable(wd) or isinstance(wd, jax.Array) or (wd is not None and wd > 0.0)  # array: inject
    wd = arguments.get("weight_decay", 0.0)
    groups = arguments.get("param_groups")
    if groups is None:
        return active(wd)
    return any(active(g.get("weight_decay", wd)) for g in groups if "params" in g)


@dataclasses.dataclass
class _FactSource:
    """The per-leaf facts one optimizer (and the optimizers it wraps) decides by, and how to rebuild it."""

    optimizer: Optimizer
    prefix: str

    def __post_init__(self):
        args = self.optimizer.arguments
        self.filters = {}
        for arg, value in args.items():
            if arg == "decay_filter" and not _decays(args):
                continue  # no weight decay anywhere: the filter decides nothing, so it splits no buffer
            if arg.endswith("_filter"):
                f = value if value is not None else _default_filter(arg, self.optimizer)
                if callable(f):
                    self.filters[arg] = f
        self.groups = None
        self.name = getattr(self.optimizer.factory, "__name__", "opt")
        if args.get("param_groups") is not None:
            self.groups = _parse_groups(args["param_groups"], self.name)
            self.selectors = [_selector(g["params"], g["_index"], self.name) for g in self.groups]
        self.inner = {arg: _FactSource(v, f"{self.prefix}{arg}.") for arg, v in args.items()
                      if isinstance(v, Optimizer)}

    def facts(self, name: str, leaf: Any) -> Facts:
        out: list[tuple[str, Hashable]] = []
        centralize = False
        if self.groups is not None:
            hits = [i for i, sel in enumerate(self.selectors) if sel(name, leaf)]
            if len(hits) > 1:
                raise GroupOverlapError(
                    f"For '{self.prefix or 'optimizer'}', the parameter '{name}' is selected by groups {hits}; "
                    "parameter groups must not overlap."
                )
            group = hits[0] if hits else None
            out.append((self.prefix + "group", group))
            centralize = group is not None and bool(self.groups[group].get("grad_centralization", False))
        for arg, f in self.filters.items():
            out.append((self.prefix + arg, bool(f(name, leaf))))
        if centralize:
            out.append((self.prefix + "centralize", qualifies_for_centralization(tuple(np.shape(leaf)))))
        own_buffer = getattr(self.optimizer.factory, "fused_own_buffer", None)
        if own_buffer is not None and own_buffer(tuple(np.shape(leaf))):
            out.append((self.prefix + "own_buffer", name))  # see jaxopt_ms.fused.buffer_tree
        for src in self.inner.values():
            out.extend(src.facts(name, leaf))
        return tuple(out)

    def check_selection(self, layout: Layout) -> None:
        """The per-leaf optimizer's selector errors (unknown names, empty groups), on the leaves of ``layout``."""
        if self.groups is not None:
            names = [s.name for s in layout.leaves]
            hits = [False] * len(self.groups)
            for b in layout.buffers:
                g = dict(b.key).get(self.prefix + "group")
                if g is not None:
                    hits[g] = True
            check_selection([g["params"] for g in self.groups], [g["_index"] for g in self.groups], hits, names,
                            self.name)
        for src in self.inner.values():
            src.check_selection(layout)

    def rebuild_for(self, layout: Layout) -> Optimizer:
        """This optimizer rebuilt so that filters and group selectors answer per buffer of ``layout``."""
        keys = {b.name: dict(b.key) for b in layout.buffers}
        overrides: dict[str, Any] = {}
        for arg in self.filters:
            fact = self.prefix + arg
            overrides[arg] = lambda name, leaf, _fact=fact: keys[name][_fact]
        if self.groups is not None:
            groups, g = [], 0
            for spec in self.optimizer.arguments["param_groups"]:
                if "order_params" in spec:
                    groups.append(spec)
                    continue
                members = [b for b, k in keys.items() if k[self.prefix + "group"] == g]
                groups.append({**spec, "params": members})  # not empty: see check_selection
                g += 1
            overrides["param_groups"] = groups
        for arg, src in self.inner.items():
            overrides[arg] = src.rebuild_for(layout)
        return self.optimizer.factory(**{**self.optimizer.arguments, **overrides})  # as _factory.rebuild


CPU_OWN_BUFFER_FROM = 2**12  # fuse(own_buffer_from="auto") on the CPU backend

# Factories whose rule is per layer in a way a flat buffer cannot carry.
_NOT_FUSABLE = {"thor": "THOR preconditions each layer's gradient matrix with that layer's own statistics"}


def _check_fusable(optimizer: Optimizer) -> None:
    name = getattr(optimizer.factory, "__name__", "")
    if name in _NOT_FUSABLE:
        raise ValueError(f"fuse: jaxopt_ms.{name} cannot run on flat buffers ({_NOT_FUSABLE[name]}); use it per leaf.")
    for value in optimizer.arguments.values():
        if isinstance(value, Optimizer):
            _check_fusable(value)


class FusedOptimizer(optax.GradientTransformationExtraArgs):
    """An optimizer whose ``init`` / ``update`` take and return :class:`FlatParams` (see the module docstring).

    Attributes:
        optimizer: the per-leaf optimizer it runs.
        partition: ``(name, leaf) -> facts``, the key :meth:`flatten` packs leaves by.
    """

    optimizer: Optimizer
    partition: Callable[[str, Any], Facts]

    def flatten(self, params: Any) -> FlatParams:
        """``params`` packed into buffers homogeneous in this optimizer's per-leaf facts."""
        return flatten(params, self.partition)


def fuse(optimizer: Optimizer, *, own_buffer_from: int | None | str = "auto") -> FusedOptimizer:
    """The fused (flat-buffer) version of a jaxopt_ms optimizer.

    Args:
        optimizer: built by a jaxopt_ms factory (``jaxopt_ms.adam(...)``, groups and wrappers included).
        own_buffer_from: leaves of at least this many elements get a buffer of their own (``None``: none do;
            ``'auto'``: ``2**12`` on the CPU backend, ``None`` elsewhere). A leaf with a buffer of its own is
            viewed by a reshape, not a slice. XLA's CPU backend copies a slice out of its buffer before a matrix
            product, so there this saves a copy of the large weights and the concatenate of their gradients per
            training step (measured in ``benchmarks/run.py``), while the many small leaves still share buffers.
            On GPU, slices fuse into their consumers and fewer buffers are best. The layout (and so a fused
            checkpoint's structure) depends on this value: give it explicitly to share checkpoints across backends.
    Returns:
        A :class:`FusedOptimizer`: ``flatten(params)`` packs parameters once; ``init(flat)`` and
        ``update(flat_grads, state, flat)`` work on :class:`FlatParams` and follow the per-leaf trajectory.

    Raises:
        TypeError: ``optimizer`` was not built by a jaxopt_ms factory.
        ValueError: ``own_buffer_from`` is not a positive int, ``None`` or ``'auto'``; or the optimizer is THOR,
            whose per-layer preconditioning has no flat-buffer form.
        ValueError: (at ``init``/``update``) the buffers were packed without this optimizer's partition.

    Example:
        >>> opt = jaxopt_ms.fused.fuse(jaxopt_ms.adam(1e-3))
        >>> flat = opt.flatten({'w': jnp.ones((2, 3)), 'b': jnp.zeros(3)})
        >>> updates, state = opt.update(flat, opt.init(flat), flat)
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            "fuse: expected an optimizer built by a jaxopt_ms factory (e.g. jaxopt_ms.adam(1e-3)), but got type "
            f"'{type(optimizer).__name__}'. An optax transformation that is element-wise can be applied to "
            "jaxopt_ms.fused.flatten(params) directly."
        )
    if isinstance(own_buffer_from, str) and own_buffer_from == "auto":
        own_buffer_from = CPU_OWN_BUFFER_FROM if jax.default_backend() == "cpu" else None
    if own_buffer_from is not None and (isinstance(own_buffer_from, bool) or not isinstance(own_buffer_from, int)
                                        or own_buffer_from < 1):
        raise ValueError(f"fuse: 'own_buffer_from' must be a positive int, None or 'auto', but got "
                         f"{own_buffer_from!r}.")
    _check_fusable(optimizer)
    source = _FactSource(optimizer, "")

    def partition(name: str, leaf: Any) -> Facts:
        facts = source.facts(name, leaf)
        if own_buffer_from is not None and int(np.prod(np.shape(leaf), dtype=np.int64)) >= own_buffer_from:
            facts += (("own_buffer", name),)
        return facts
    built: dict[Layout, Optimizer] = {}

    def inner(flat: Any) -> Optimizer:
        if not isinstance(flat, FlatParams):
            raise TypeError(
                "A fused optimizer takes FlatParams (from opt.flatten(params)), but got type "
                f"'{type(flat).__name__}'."
            )
        layout = flat.layout
        if layout not in built:
            for spec in layout.buffers:
                slots = [layout.leaves[i] for i in spec.leaves]
                found = {partition(s.name, jax.ShapeDtypeStruct(s.shape, s.dtype)) for s in slots}
                if found != {spec.key}:
                    raise ValueError(
                        f"Buffer '{spec.name}' holds leaves the optimizer treats differently "
                        f"({sorted(map(str, found))}); pack the parameters with opt.flatten(params) (or "
                        "jaxopt_ms.fused.flatten(params, opt.partition))."
                    )
            source.check_selection(layout)
            # Kept across calls, so built outside any trace: `init` / `update` may run under jax.jit, and a JAX
            # operation a factory runs on a concrete hyperparameter (a 0-d array rate, weight decay, loss scale)
            # would otherwise give a tracer of that one trace to every later call (UnexpectedTracerError).
            with jax.ensure_compile_time_eval():
                built[layout] = source.rebuild_for(layout)
        return built[layout]

    def init_fn(flat):
        return inner(flat).init(flat)

    def update_fn(updates, state, params=None, **extra_args):
        return inner(updates).update(updates, state, params, **extra_args)

    out = FusedOptimizer(init_fn, update_fn)
    out.optimizer = optimizer
    out.partition = partition
    return out
