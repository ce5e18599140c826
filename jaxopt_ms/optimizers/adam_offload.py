"""AdamOffload: MindSpore's ``nn.AdamOffload`` (= ``nn.Adam(use_offload=True)``), Adam with its state on the host."""

from __future__ import annotations

import dataclasses
import warnings

import optax

from jaxopt_ms._factory import optimizer_factory
from jaxopt_ms.groups import GroupConfig, with_param_groups
from jaxopt_ms.optimizers._pipeline import mindspore_chain
from jaxopt_ms.optimizers.adam import check_adam_args
from jaxopt_ms.transforms.offload import scale_by_adam_offload
from jaxopt_ms.validation import check_bool, check_loss_scale

__all__ = ["adam_offload"]


@optimizer_factory
def adam_offload(learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, use_locking=False, use_nesterov=False,
                 weight_decay=0.0, loss_scale=1.0, *, param_groups=None, decay_filter=None, on_host=None
                 ) -> optax.GradientTransformation:
    """MindSpore's AdamOffload (op ``AdamNoUpdateParam`` on the host): :func:`adam`'s numbers, state on the host.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g²;  b1p *= b1;  b2p *= b2       (host)
        p -= lr * sqrt(1 - b2p) / (1 - b1p) * num / (sqrt(v) + eps)                   (device)

    Both moments (8 bytes per float32 parameter) stay in host memory (JAX memory kind ``pinned_host``) and the
    moment update runs on the host, so a model whose parameters fit on the device but whose Adam state does not
    can still be trained; each step copies the gradients to the host and the direction back. ``on_host``:
    ``None`` offloads on accelerators with a ``pinned_host`` memory space (GPUs) and not on a CPU backend, where
    device memory already is host RAM (there it is :func:`adam`, numbers and speed); ``True`` offloads wherever
    the backend has host memory spaces (CPU included); ``False`` never. Gradients get MindSpore's weight
    decay and loss-scale division first; there is no gradient centralization (a group's ``grad_centralization``
    is ignored, as in MindSpore) and no sparse path. ``use_locking`` is validated and has no effect (JAX
    updates are functional). When a jitted step donates the state, give it
    ``out_shardings=jaxopt_ms.sharding.state_shardings(opt, params)`` for the state (or donate the parameters
    too): JAX 0.10 may otherwise reuse a donated host buffer for a device output. Reference: MindSpore 2.10
    ``nn.AdamOffload``, reference §3.6.

    Example:
        >>> opt = jaxopt_ms.adam_offload(1e-3, on_host=True)   # default: host memory on GPUs, not on a CPU
        >>> params = {'w': jnp.ones((2, 3))}
        >>> state = opt.init(params)
        >>> state[0].moment1['w'].sharding.memory_kind
        'pinned_host'
        >>> updates, state = opt.update({'w': jnp.ones((2, 3))}, state, params)
    """
    name = "AdamOffload"
    check_adam_args(name, beta1, beta2, eps, use_locking=use_locking, use_nesterov=use_nesterov)
    if on_host is not None:
        check_bool("on_host", on_host, name)
    loss_scale = check_loss_scale(loss_scale, name)

    def build(cfg: GroupConfig) -> optax.GradientTransformation:
        if cfg.grad_centralization:
            warnings.warn("AdamOffload ignores 'grad_centralization', as MindSpore does.", stacklevel=3)
            cfg = dataclasses.replace(cfg, grad_centralization=False)
        return mindspore_chain(scale_by_adam_offload(beta1, beta2, eps, use_nesterov, on_host), cfg, loss_scale,
                               opt_name=name)

    return with_param_groups(build, learning_rate=learning_rate, weight_decay=weight_decay,
                             param_groups=param_groups, decay_filter=decay_filter, opt_name=name)
