"""Constructor validation: every TypeError / ValueError (and KeyError / RuntimeError for groups) MindSpore 2.10
raises for each optimizer its CPU build constructs, for learning_rate, weight_decay, loss_scale, every
hyperparameter and parameter groups (reference §2.1-§2.3, §3), hand-written rows and seeded random ones.

The table (tests/fixtures/validation.json) was produced by running MindSpore on each row
(scripts/mindspore_fixtures/validation.py): the expected exception type is MindSpore's, except on the rows that
carry ``jax`` and ``why`` (deliberate, documented differences). jaxopt_ms must raise at construction, with a
message that names the argument and the offending value.
"""

import builtins
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_ms

with open(os.path.join(os.path.dirname(__file__), "fixtures", "validation.json")) as f:
    ROWS = json.load(f)


def decode(v):
    if v == "nan":
        return float("nan")
    if v == "inf":
        return float("inf")
    if isinstance(v, dict):
        if "$tuple" in v:
            return tuple(v["$tuple"])
        if "$tensor" in v:
            return np.asarray(v["$tensor"], np.float32)
        if "$np_float32" in v:
            return np.float32(v["$np_float32"])
        if "$cell" in v:  # nn.ExponentialDecayLR(0.1, 0.9, 4)
            return lambda step: 0.1 * jnp.power(0.9, jnp.asarray(step, jnp.float32) / 4)
        if "$object" in v:
            return object()
        return {k: (x if k in ("params", "order_params") else decode(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def construct(row):
    return getattr(jaxopt_ms, row["optimizer"])(**{k: decode(v) for k, v in row["args"].items()})


def test_table_covers_every_optimizer_and_both_outcomes():
    assert {r["optimizer"] for r in ROWS} == {"sgd", "momentum", "adam", "lazy_adam", "adam_weight_decay", "adafactor",
                                              "ftrl", "rmsprop", "adagrad", "proximal_adagrad", "adadelta", "adamax",
                                              "asgd", "rprop", "lamb"}
    kinds = {r["mindspore"] for r in ROWS}
    assert {None, "TypeError", "ValueError", "KeyError", "RuntimeError"} <= kinds


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_constructor_rule(row):
    expected = row["jax"] if "jax" in row else row["mindspore"]
    if expected is None:
        opt = construct(row)
        params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}
        updates, _ = opt.update(params, opt.init(params), params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
        return
    with pytest.raises(getattr(builtins, expected)) as info:
        construct(row)
    message = str(info.value)
    if row["arg"] is not None:
        assert row["arg"] in message, message
    value = row["value"]
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        assert repr(value) in message or str(value) in message, message


def _jax_decode(v):
    """``decode`` with every 0-d Tensor as a 0-d JAX array (MindSpore's 0-d Tensor has both spellings here)."""
    if isinstance(v, dict) and "$tensor" in v and np.ndim(v["$tensor"]) == 0:
        return jnp.asarray(v["$tensor"], jnp.float32)
    if isinstance(v, dict) and not any(k.startswith("$") for k in v):
        return {k: (x if k in ("params", "order_params") else _jax_decode(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [_jax_decode(x) for x in v]
    return decode(v)


JAX_ROWS = [r for r in ROWS if '"$tensor":' in r["id"] and any(
    isinstance(v, dict) and "$tensor" in v and np.ndim(v["$tensor"]) == 0 for v in r["args"].values())]


@pytest.mark.parametrize("row", JAX_ROWS, ids=[r["id"] for r in JAX_ROWS])
def test_constructor_rule_with_jax_arrays(row):
    """Type before value, 0-d JAX arrays: the rule of the row's NumPy 0-d array (accepted with a valid value where
    MindSpore takes a number; an invalid one is MindSpore's TypeError: ``ftrl(learning_rate=jnp.asarray(-0.1))``)."""
    expected = row["jax"] if "jax" in row else row["mindspore"]
    build = lambda: getattr(jaxopt_ms, row["optimizer"])(**{k: _jax_decode(v) for k, v in row["args"].items()})  # noqa: E731
    if expected is None:
        build()
        return
    with pytest.raises(getattr(builtins, expected), match=row["arg"] or ""):
        build()


def test_type_is_checked_before_value():
    # issue 27: MindSpore's FTRL takes a float only, so a negative 0-d array is its TypeError, not a ValueError
    for lr in (jnp.asarray(-0.1), np.float32(-0.1), np.asarray(-0.1, np.float32)):
        with pytest.raises(TypeError, match="learning_rate"):
            jaxopt_ms.ftrl(learning_rate=lr)
    with pytest.raises(ValueError, match="learning_rate"):
        jaxopt_ms.ftrl(learning_rate=-0.1)
    jaxopt_ms.ftrl(learning_rate=jnp.asarray(0.1))  # the JAX extension (optax.inject_hyperparams)
    with pytest.raises(TypeError, match="beta1"):
        jaxopt_ms.adam(beta1=jnp.asarray(1.5))
    with pytest.raises(ValueError, match="beta1"):
        jaxopt_ms.adam(beta1=1.5)
    # MindSpore takes a 0-d Tensor learning rate (unchecked; jaxopt_ms checks the value) but no NumPy scalar
    with pytest.raises(ValueError, match="learning_rate"):
        jaxopt_ms.sgd(jnp.asarray(-0.1))
    with pytest.raises(TypeError, match="learning_rate"):
        jaxopt_ms.sgd(np.float32(-0.1))


def test_deviations_are_explained():
    for row in ROWS:
        if "jax" in row:
            assert row["why"], row["id"]


def test_overlap_of_callable_selectors_is_reported_at_init():
    opt = jaxopt_ms.momentum(0.1, 0.9, param_groups=[{"params": lambda n, x: True}, {"params": "a"}])
    with pytest.raises(RuntimeError, match="'a'"):
        opt.init({"a": jnp.ones(2)})


def test_use_locking_is_accepted_and_has_no_effect():
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 0.5)}
    a, b = jaxopt_ms.adam(0.1, use_locking=True), jaxopt_ms.adam(0.1)
    np.testing.assert_array_equal(a.update(grads, a.init(params), params)[0]["w"],
                                  b.update(grads, b.init(params), params)[0]["w"])


def test_traced_learning_rate_is_an_injected_rate():
    # a traced (0-d JAX array) rate is read from the factory's argument: p - lr * g with the traced lr
    def step(lr):
        opt = jaxopt_ms.sgd(lr)
        params = {"w": jnp.ones(1)}
        updates, _ = opt.update({"w": jnp.full(1, 2.0)}, opt.init(params), params)
        return updates["w"]

    np.testing.assert_array_equal(jax.jit(step)(jnp.float32(0.25)), np.float32([-0.5]))
    assert isinstance(jaxopt_ms.sgd(0.1), optax.GradientTransformation)
