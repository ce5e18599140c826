"""jaxopt_ms optimizers inside the JAX ecosystem: Flax (nnx.Optimizer, TrainState), Equinox, and optax.chain with
optax's own transformations (clipping, masking)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_ms

flax = pytest.importorskip("flax")
eqx = pytest.importorskip("equinox")
from flax import nnx  # noqa: E402
from flax.training import train_state  # noqa: E402


def _regression_data(n: int = 64, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=(d, 1)) + 0.1 * np.tanh(x[:, :1])).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


class _NnxMlp(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(4, 16, rngs=rngs)
        self.norm = nnx.LayerNorm(16, rngs=rngs)
        self.fc2 = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.norm(jax.nn.relu(self.fc1(x))))


def test_flax_nnx_optimizer_trains_with_groups_and_a_flax_decay_filter():
    x, y = _regression_data()
    model = _NnxMlp(nnx.Rngs(0))
    tx = jaxopt_ms.adam(1e-2, weight_decay=1e-4, decay_filter=jaxopt_ms.flax_decay_filter, param_groups=[
        {"params": r"^fc1\.", "lr": 2e-2},
        {"params": lambda name, leaf: not name.startswith("fc1.")},
    ])
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer, x, y)) for _ in range(30)]
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_flax_decay_filter_skips_biases_and_norm_scales_under_nnx():
    # With zero gradients AdamWeightDecay only applies decoupled decay: p -= lr * wd * p on the decayed leaves.
    model = _NnxMlp(nnx.Rngs(0))
    before = jax.tree.map(np.array, nnx.state(model, nnx.Param))  # a copy: nnx updates variables in place
    tx = jaxopt_ms.adam_weight_decay(0.1, weight_decay=0.5, decay_filter=jaxopt_ms.flax_decay_filter)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    optimizer.update(model, jax.tree.map(jnp.zeros_like, before))
    after = nnx.state(model, nnx.Param)
    names = jax.tree.leaves(jaxopt_ms.param_names(before))
    for name, old, new in zip(names, jax.tree.leaves(before), jax.tree.leaves(after)):
        expected = old * (1 - 0.1 * 0.5) if name.split(".")[-1] == "kernel" else old
        np.testing.assert_allclose(new, expected, rtol=1e-6, err_msg=name)


def test_flax_train_state_with_momentum_and_current_lr():
    x, y = _regression_data()

    class Mlp(flax.linen.Module):
        @flax.linen.compact
        def __call__(self, x):
            return flax.linen.Dense(1)(jax.nn.relu(flax.linen.Dense(16)(x)))

    net = Mlp()
    params = net.init(jax.random.PRNGKey(0), x)
    lr = [0.05] * 20 + [0.01] * 20  # a MindSpore-style per-step learning rate
    state = train_state.TrainState.create(apply_fn=net.apply, params=params, tx=jaxopt_ms.momentum(lr, 0.9))

    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((state.apply_fn(p, x) - y) ** 2))(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(40):
        state, loss = train_step(state)
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0], losses[::10]
    assert float(jaxopt_ms.current_lr(state.opt_state)) == pytest.approx(0.01)


def test_equinox_training_step_with_equinox_decay_filter():
    x, y = _regression_data()
    model = eqx.nn.MLP(4, 1, 16, 2, key=jax.random.PRNGKey(0))
    tx = jaxopt_ms.sgd(0.05, momentum=0.9, weight_decay=1e-4, decay_filter=jaxopt_ms.equinox_decay_filter)
    opt_state = tx.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def train_step(model, opt_state):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2))(model)
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    losses = []
    for _ in range(30):
        model, opt_state, loss = train_step(model, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def _tree(seed: int):
    rng = np.random.default_rng(seed)
    return {"conv": {"weight": jnp.asarray(rng.normal(size=(4, 3, 3, 3)), jnp.float32)},
            "fc": {"weight": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
                   "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
            "bn": {"gamma": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}}


@pytest.mark.parametrize("make", [lambda: jaxopt_ms.adam(0.01, weight_decay=0.1, loss_scale=4.0),
                                  lambda: jaxopt_ms.momentum(0.1, 0.9, use_nesterov=True)])
def test_chain_with_optax_clip_equals_clipping_then_our_optimizer(make):
    chained = optax.chain(optax.clip_by_global_norm(1.0), make())
    ours, clip = make(), optax.clip_by_global_norm(1.0)
    params = _tree(0)
    p_chain, p_manual = params, params
    s_chain, s_ours, s_clip = chained.init(params), ours.init(params), clip.init(params)
    chain_update, ours_update, clip_update = jax.jit(chained.update), jax.jit(ours.update), jax.jit(clip.update)
    for k in range(6):
        grads = jax.tree.map(lambda g: 5.0 * g, _tree(k + 1))  # norm >> 1: clipping is active
        u_chain, s_chain = chain_update(grads, s_chain, p_chain)
        clipped, s_clip = clip_update(grads, s_clip, p_manual)
        u_manual, s_ours = ours_update(clipped, s_ours, p_manual)
        p_chain, p_manual = optax.apply_updates(p_chain, u_chain), optax.apply_updates(p_manual, u_manual)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), p_chain, p_manual)


def test_optax_masked_applies_our_optimizer_only_to_the_masked_leaves():
    params, grads = _tree(0), _tree(1)
    mask = {"conv": {"weight": True}, "fc": {"weight": True, "bias": False}, "bn": {"gamma": False}}
    masked = optax.chain(optax.masked(jaxopt_ms.sgd(0.1, momentum=0.9), mask),
                         optax.masked(optax.set_to_zero(), jax.tree.map(lambda m: not m, mask)))
    state = masked.init(params)
    sub = {"conv": params["conv"], "fc": {"weight": params["fc"]["weight"]}}
    sub_grads = {"conv": grads["conv"], "fc": {"weight": grads["fc"]["weight"]}}
    plain = jaxopt_ms.sgd(0.1, momentum=0.9)
    sub_state = plain.init(sub)
    masked_update = jax.jit(masked.update)
    for _ in range(3):
        updates, state = masked_update(grads, state, params)
        expected, sub_state = plain.update(sub_grads, sub_state, sub)
        np.testing.assert_allclose(updates["conv"]["weight"], expected["conv"]["weight"], rtol=1e-6)
        np.testing.assert_allclose(updates["fc"]["weight"], expected["fc"]["weight"], rtol=1e-6)
        assert not np.any(updates["fc"]["bias"]) and not np.any(updates["bn"]["gamma"])
