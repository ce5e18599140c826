"""A user's script over jaxopt_ms's public API, type-checked by ``tests/test_packaging.py`` (mypy, with the
package's own annotations: it ships ``py.typed``). It is checked, not run."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_ms
from jaxopt_ms import dynamic_lr, fused, loss_scale, schedules, sparse
from jaxopt_ms.transforms import LearningRateState, add_decayed_weights, scale_by_learning_rate

params = {"fc": {"weight": jnp.zeros((4, 2)), "bias": jnp.zeros(2)}, "emb": jnp.zeros((10, 3))}
grads = jax.tree.map(jnp.ones_like, params)

opt = jaxopt_ms.adam(1e-3, weight_decay=1e-4)
as_optax: optax.GradientTransformation = opt
state: optax.OptState = opt.init(params)
updates, state = opt.update(grads, state, params)
params = optax.apply_updates(params, updates)

lr: jax.Array | tuple[jax.Array, ...] = jaxopt_ms.current_lr(state)
state = jaxopt_ms.set_lr(state, 5e-4)
chained = optax.chain(optax.clip_by_global_norm(1.0), jaxopt_ms.momentum(0.1, 0.9))

grouped = jaxopt_ms.sgd(0.1, param_groups=[{"params": r"^fc", "weight_decay": 1e-4}, {"params": ["emb"]}])
names = jaxopt_ms.param_names(params)
decays: bool = jaxopt_ms.flax_decay_filter("dense.kernel") and jaxopt_ms.mindspore_decay_filter("fc.weight")
custom_filter: Callable[[str, object], bool] = jaxopt_ms.equinox_decay_filter

cosine: Callable[[jax.Array], jax.Array] = schedules.cosine_decay(0.01, 0.1, 100)
per_step: list[float] = dynamic_lr.piecewise_constant_lr([10, 20], [0.1, 0.01])
on_list = jaxopt_ms.momentum(per_step, 0.9)
on_schedule = jaxopt_ms.adam_weight_decay(schedules.warmup(0.1, 10), weight_decay=0.01)

scaled = loss_scale.dynamic_loss_scale(jaxopt_ms.adam(1e-3), init_loss_scale=2.0 ** 16, scale_factor=2,
                                       scale_window=100)
scale: jax.Array = loss_scale.loss_scale_value(scaled.init(params))
finite: jax.Array = loss_scale.all_finite(grads)
mixed: optax.GradientTransformationExtraArgs = loss_scale.master_weights(jaxopt_ms.adam(1e-3))

row = sparse.RowSparse(jnp.array([1, 3]), jnp.ones((2, 3)), (10, 3))
looked_up = sparse.embedding_lookup(params["emb"], jnp.array([1, 3]))

fast: fused.FusedOptimizer = fused.fuse(jaxopt_ms.adam(1e-3))
flat = fast.flatten(params)
back = fused.unflatten(flat)

block: optax.GradientTransformation = add_decayed_weights(1e-4)
lr_block = scale_by_learning_rate(np.full(10, 0.1, np.float32))
lr_state: type[LearningRateState] = LearningRateState
steps: Sequence[float] = dynamic_lr.warmup_lr(0.1, 20, 5, 2)
