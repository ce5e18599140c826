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
