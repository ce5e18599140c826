"""Leaf names (pytree paths joined with '.') and the decay-filter presets, on dicts, lists, Flax and Equinox."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import jaxopt_ms


def test_nested_and_flat_dicts():
    params = {"conv1": {"weight": 0.0}, "bn1.gamma": 1.0}
    assert jaxopt_ms.param_names(params) == {"conv1": {"weight": "conv1.weight"}, "bn1.gamma": "bn1.gamma"}


def test_sequences_use_indices():
    params = {"layers": [{"w": 0.0}, (1.0, 2.0)]}
    assert jaxopt_ms.param_names(params) == {"layers": [{"w": "layers.0.w"}, ("layers.1.0", "layers.1.1")]}


def test_flax_linen_names_and_filter():
    model = linen.Sequential([linen.Dense(3), linen.LayerNorm()])
    variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 2)))
    names = jax.tree.leaves(jaxopt_ms.param_names(variables["params"]))
    assert sorted(names) == ["layers_0.bias", "layers_0.kernel", "layers_1.bias", "layers_1.scale"]
    decayed = sorted(n for n in names if jaxopt_ms.flax_decay_filter(n))
    assert decayed == ["layers_0.kernel"]
    # MindSpore's default rule matches nothing here (every name is decayed): the reason for the preset.
    assert all(jaxopt_ms.mindspore_decay_filter(n) for n in names)


def test_flax_nnx_names_and_filter():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    names = jax.tree.leaves(jaxopt_ms.param_names(nnx.state(model, nnx.Param)))
    assert {n.replace(".value", "") for n in names} == {"bias", "kernel"}
    assert sorted(n.replace(".value", "") for n in names if jaxopt_ms.flax_decay_filter(n)) == ["kernel"]


def test_equinox_names_and_filter():
    model = [eqx.nn.Linear(2, 3, key=jax.random.PRNGKey(0)), eqx.nn.LayerNorm(3)]
    params = eqx.filter(model, eqx.is_array)
    names_tree = jaxopt_ms.param_names(params)
    pairs = list(zip(jax.tree.leaves(names_tree), jax.tree.leaves(params)))
    assert sorted(n for n, _ in pairs) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    decayed = sorted(n for n, leaf in pairs if jaxopt_ms.equinox_decay_filter(n, leaf))
    assert decayed == ["0.weight"]   # the LayerNorm weight is rank 1


@pytest.mark.parametrize("name, ms_decay, lars", [
    ("conv1.weight", True, True), ("bn1.gamma", False, True), ("bn1.beta", False, True),
    ("encoder.LayerNorm.weight", True, False), ("fc.bias", True, False), ("alphabeta", False, True),
])
def test_mindspore_filters(name, ms_decay, lars):
    assert jaxopt_ms.mindspore_decay_filter(name) is ms_decay
    assert jaxopt_ms.mindspore_lars_filter(name) is lars
    assert jaxopt_ms.decay_all(name) is True


def test_decay_filter_argument_changes_which_leaves_decay():
    params = {"dense": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for decay_filter, decayed in [(None, {"dense.kernel", "dense.bias", "norm.scale"}),
                                  (jaxopt_ms.flax_decay_filter, {"dense.kernel"})]:
        opt = jaxopt_ms.sgd(1.0, weight_decay=0.5, decay_filter=decay_filter)
        updates, _ = opt.update(zeros, opt.init(params), params)
        flat = dict(zip(jax.tree.leaves(jaxopt_ms.param_names(params)), jax.tree.leaves(updates)))
        for name, u in flat.items():
            np.testing.assert_array_equal(u, -0.5 * np.ones(2) if name in decayed else np.zeros(2))
