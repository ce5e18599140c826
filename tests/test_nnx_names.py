"""Flax nnx: ``nnx.Optimizer`` initialises the optimizer on the model's ``nnx.State`` (``Param`` objects, leaf
paths ending in ``.value``) and updates it with plain arrays. Parameter names, group selectors and decay filters
must see the same names at both, and ``loss_scale_value`` must give an array for ``nnx.Optimizer.opt_state``."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_ms
from jaxopt_ms._compat import nnx_pure

nnx = pytest.importorskip("flax.nnx")


class Net(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(3, 4, rngs=rngs)
        self.fc2 = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jnp.tanh(self.fc1(x)))


X = jnp.asarray(np.random.RandomState(0).randn(5, 3).astype(np.float32))
NAMES = ["fc1.bias", "fc1.kernel", "fc2.bias", "fc2.kernel"]


def loss(model):
    return jnp.sum(model(X) ** 2)


def seen_names(tx_factory):
    """The names a selector is called with at init and at update, under nnx.Optimizer."""
    calls: dict[str, list] = {"init": [], "update": []}
    phase = ["init"]

    def selector(name, leaf):
        calls[phase[0]].append(name)
        return name.endswith("bias")

    model = Net(nnx.Rngs(0))
    opt = nnx.Optimizer(model, tx_factory(selector), wrt=nnx.Param)
    phase[0] = "update"
    opt.update(model, nnx.grad(loss)(model))
    return sorted(set(calls["init"])), sorted(set(calls["update"]))


def test_param_names_of_nnx_state_and_of_its_arrays_agree():
    model = Net(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    assert jax.tree.leaves(jaxopt_ms.param_names(state)) == NAMES
    assert jax.tree.leaves(jaxopt_ms.param_names(nnx_pure(state))) == NAMES
    # a field that happens to be called 'value' outside an nnx Variable keeps its name
    assert jax.tree.leaves(jaxopt_ms.param_names({"a": {"value": 1.0}})) == ["a.value"]


@pytest.mark.parametrize("where", ["groups", "decay_filter"])
def test_selectors_see_one_name_at_init_and_update(where):
    if where == "groups":
        def make(sel):
            rest = lambda n, x: not sel(n, x)  # noqa: E731
            return jaxopt_ms.adam(1e-2, param_groups=[{"params": sel, "lr": 0.1}, {"params": rest}])
    else:
        def make(sel):
            return jaxopt_ms.adam(1e-2, weight_decay=0.1, decay_filter=sel)
    at_init, at_update = seen_names(make)
    assert at_init == at_update == NAMES


def run(tx, steps=3):
    """Parameters after ``steps`` nnx.Optimizer updates, and after the same steps on a plain dict of arrays."""
    model = Net(nnx.Rngs(0))
    params0 = jax.tree.map(jnp.array, nnx_pure(nnx.state(model, nnx.Param)))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for _ in range(steps):
        opt.update(model, nnx.grad(loss)(model))
    got = nnx_pure(nnx.state(model, nnx.Param))

    graphdef, _ = nnx.split(Net(nnx.Rngs(0)), nnx.Param)
    plain_loss = lambda p: loss(nnx.merge(graphdef, p))  # noqa: E731
    params, state = params0, tx.init(params0)
    for _ in range(steps):
        updates, state = tx.update(jax.grad(plain_loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return got, params


def test_bias_group_regex_trains_as_on_plain_arrays():
    """r'\\.bias$' selects the biases at init (nnx State) and at update (arrays): each group gets its own lr."""
    tx = jaxopt_ms.momentum(0.01, 0.9, param_groups=[{"params": r"\.bias$", "lr": 0.5}, {"params": r"\.kernel$"}])
    got, want = run(tx)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and the bias group really has lr 0.5: after one step (same gradient) the biases moved 50 times as far
    one, _ = run(tx, steps=1)
    plain, _ = run(jaxopt_ms.momentum(0.01, 0.9), steps=1)
    model0 = nnx_pure(nnx.state(Net(nnx.Rngs(0)), nnx.Param))
    moved = lambda p, k: float(jnp.max(jnp.abs(p["fc2"][k] - model0["fc2"][k])))  # noqa: E731
    assert moved(one, "bias") == pytest.approx(50 * moved(plain, "bias"), rel=1e-5)
    assert moved(one, "kernel") == pytest.approx(moved(plain, "kernel"), rel=1e-6)


def test_value_suffixed_selector_selects_nothing_and_shows_the_names():
    tx = jaxopt_ms.adam(1e-2, param_groups=[{"params": r"bias\.value$"}, {"params": r"kernel"}])
    with pytest.raises(ValueError, match=r"group 0 selects no parameter .*'fc1\.bias', 'fc1\.kernel'"):
        nnx.Optimizer(Net(nnx.Rngs(0)), tx, wrt=nnx.Param)


def test_decay_filter_same_at_init_and_update():
    tx = jaxopt_ms.adam_weight_decay(0.01, weight_decay=0.5, decay_filter=lambda n, x: not n.endswith(".bias"))
    got, want = run(tx)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_loss_scale_value_of_nnx_optimizer_state():
    model = Net(nnx.Rngs(0))
    tx = jaxopt_ms.loss_scale.dynamic_loss_scale(jaxopt_ms.adam(1e-3), init_loss_scale=2.0 ** 10, scale_window=1)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    scale = jaxopt_ms.loss_scale.loss_scale_value(opt.opt_state)
    assert isinstance(scale, jax.Array) and scale.dtype == jnp.float32 and float(scale) == 2.0 ** 10

    @nnx.jit
    def step(model, opt):
        s = jaxopt_ms.loss_scale.loss_scale_value(opt.opt_state)
        grads = nnx.grad(lambda m: loss(m) * s)(model)
        opt.update(model, grads)
        return s

    assert float(step(model, opt)) == 2.0 ** 10
    assert float(jaxopt_ms.loss_scale.loss_scale_value(opt.opt_state)) == 2.0 ** 11  # grown after one good step


def test_checkpoint_into_nnx_state_template():
    """An nnx.State (Param objects) as from_mindspore's template: its leaves and their optimizer state are found
    under MindSpore's names (no '.value'), and to_mindspore writes them back unchanged."""
    from jaxopt_ms import mindspore_checkpoint as msc

    class Dense(nnx.Module):
        def __init__(self, i, o):
            self.weight = nnx.Param(jnp.zeros((o, i)))
            self.bias = nnx.Param(jnp.zeros(o))

    class MindSporeNamed(nnx.Module):
        def __init__(self):
            self.fc1, self.fc2 = Dense(6, 8), Dense(8, 3)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "checkpoints", "momentum.ckpt")
    opt = jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.01)
    params, state = msc.from_mindspore(opt, path, nnx.state(MindSporeNamed(), nnx.Param))
    assert jax.tree.leaves(jaxopt_ms.param_names(params)) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    saved = msc.load(path)
    out = msc.to_mindspore(opt, params, state)
    assert sorted(out) == sorted(set(saved) - {"learning_rate", "momentum"})
    for name, value in out.items():
        np.testing.assert_array_equal(np.asarray(value).reshape(saved[name].shape), saved[name], err_msg=name)
