"""README's Python examples run as written."""

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_ms

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_usage_example_trains_and_reads_the_learning_rate():
    namespace: dict = {}
    exec(BLOCKS[0], namespace)  # noqa: S102 - the README's own example
    assert float(namespace["loss"]) > 0
    assert float(jaxopt_ms.current_lr(namespace["state"])) == pytest.approx(5e-4)


def test_parameter_groups_example_builds_and_updates():
    namespace: dict = {"jaxopt_ms": jaxopt_ms}
    exec(BLOCKS[1], namespace)  # noqa: S102
    opt = namespace["opt"]
    params = {"conv1": {"weight": jnp.ones((16, 16, 3, 3))}, "fc": {"weight": jnp.ones((2, 16))}}
    updates, state = opt.update(params, opt.init(params), params)
    assert np.all(np.asarray(updates["conv1"]["weight"]) != 0) and np.all(np.asarray(updates["fc"]["weight"]) != 0)
    assert [round(float(v), 6) for v in jaxopt_ms.current_lr(state)] == [0.1, 0.01]


def test_fused_performance_example_trains_on_flat_buffers():
    import functools

    import jax
    import optax

    block = next(b for b in BLOCKS if "jaxopt_ms.fused.fuse" in b)
    params = {"fc": {"weight": jnp.ones((4, 2)), "bias": jnp.zeros(2)}}

    def loss_fn(p, batch):
        x, y = batch
        return jnp.mean((x @ p["fc"]["weight"] + p["fc"]["bias"] - y) ** 2)

    namespace = {"jax": jax, "optax": optax, "functools": functools, "jaxopt_ms": jaxopt_ms, "params": params,
                 "loss_fn": loss_fn}
    exec(block, namespace)  # noqa: S102
    flat, state = namespace["flat"], namespace["state"]
    batch = (jnp.ones((8, 4)), jnp.zeros((8, 2)))
    losses = []
    for _ in range(3):
        flat, state, loss = namespace["train_step"](flat, state, batch)
        losses.append(float(loss))
    assert losses[2] < losses[0]
    assert jax.tree.structure(jaxopt_ms.fused.unflatten(flat)) == jax.tree.structure(params)
