"""Porting MindSpore-trained networks into Flax nnx, Flax linen, Equinox and plain JAX, and back
(jaxopt_ms.mindspore_checkpoint), against MindSpore itself.

Fixtures (scripts/mindspore_fixtures/porting.py): MindSpore 2.10 trains LeNet5 (model zoo), a small ResNet with
BatchNorm and an embedding-bag text classifier for K steps, saves the training cell, trains K more steps and records
the losses and every parameter (moving statistics included). Here each checkpoint is ported into a JAX model written
in each framework's own names and layouts, the run continues K steps with the model's own gradients, and the losses
and parameters (ported back with ``port_to_mindspore``) must be MindSpore's: ``|d| <= 1e-6 + 1e-5 |want|``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import mindspore_python

import jaxopt_ms
from jaxopt_ms import mindspore_checkpoint as msc
from jaxopt_ms._compat import nnx_pure
from jaxopt_ms.mindspore_checkpoint import mindspore_filter, mindspore_names, port_from_mindspore, port_to_mindspore

pytest.importorskip("google.protobuf")
nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")
eqx = pytest.importorskip("equinox")

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "porting")
BATCH = 8


# ---------------------------------------------------------------------------------------------- the fixtures
def batch(net: str, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``k`` of a MindSpore run (scripts/mindspore_fixtures/porting.py: ``batch``)."""
    rng = np.random.RandomState(seed * 1000 + k)
    if net == "textbag":
        tokens = rng.randint(0, 50, (BATCH, 6)).astype(np.int32)
        return tokens, (tokens[:, 0] % 4).astype(np.int32)
    x = rng.randn(BATCH, *((1, 32, 32) if net == "lenet5" else (3, 8, 8))).astype(np.float32)
    teacher = np.random.RandomState(99).randn(x[0].size, 10).astype(np.float32)
    return x, (x.reshape(BATCH, -1) @ teacher).argmax(-1).astype(np.int32)


def fixture(case: str):
    data = np.load(os.path.join(FOLDER, f"{case}.npz"))
    config = json.loads(str(data["config"]))
    want = {k[3:]: data[k] for k in data.files if k.startswith("p__")}
    return config, data["loss"], want, msc.load(os.path.join(FOLDER, f"{case}.ckpt"))


def close(got, want, label: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{label}: shape {got.shape} != {want.shape}"
    bad = np.abs(got - want) > 1e-6 + 1e-5 * np.abs(want)
    assert not bad.any(), f"{label}: max |d| = {np.max(np.abs(got - want))} at {np.argwhere(bad)[:3].tolist()}"


DECAYED = {"flax": r"(kernel|embedding)$", "equinox": None, "plain": r"(weight|embedding_table)$"}


def build(config: dict, framework: str, decayed=None, target=None):
    """The jaxopt_ms optimizer MindSpore's was (groups select by the target's names; weight decay by MindSpore's
    names, through ``mindspore_filter``)."""
    kwargs = dict(config["kwargs"])
    if target is not None and "groups" not in config:
        kwargs["decay_filter"] = mindspore_filter(target)
    if "schedule" in config:
        name, args = config["schedule"]
        kwargs["learning_rate"] = getattr(jaxopt_ms.schedules, name)(*args)
    if "groups" in config:
        decay = decayed if decayed is not None else DECAYED[framework]
        select = (lambda n, leaf: n in decay) if isinstance(decay, (set, list)) else \
            (lambda n, leaf: re.search(decay, n) is not None)
        kwargs["param_groups"] = [{"params": select, "weight_decay": 0.01},
                                  {"params": lambda n, leaf: not select(n, leaf), "weight_decay": 0.0}]
    opt = getattr(jaxopt_ms, config["optimizer"])(**kwargs)
    if "dynamic_loss_scale" in config:
        opt = jaxopt_ms.loss_scale.dynamic_loss_scale(opt, **config["dynamic_loss_scale"])
    return opt


def cross_entropy(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def max_pool(x):  # NHWC
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


# ------------------------------------------------------------------------------------------- the JAX models
class NnxLeNet5(nnx.Module):
    """Flax nnx LeNet5: NHWC, flattens the NHWC map (so fc1 needs flatten={'fc1': (16, 5, 5)})."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 6, (5, 5), padding="VALID", use_bias=False, rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, (5, 5), padding="VALID", use_bias=False, rngs=rngs)
        self.fc1 = nnx.Linear(400, 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.fc3 = nnx.Linear(84, 10, rngs=rngs)

    def __call__(self, x):  # x: MindSpore's NCHW batch
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = max_pool(jax.nn.relu(self.conv1(x)))
        x = max_pool(jax.nn.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        return self.fc3(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x)))))


class LinenLeNet5(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = max_pool(jax.nn.relu(linen.Conv(6, (5, 5), padding="VALID", use_bias=False, name="conv1")(x)))
        x = max_pool(jax.nn.relu(linen.Conv(16, (5, 5), padding="VALID", use_bias=False, name="conv2")(x)))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(linen.Dense(120, name="fc1")(x))
        x = jax.nn.relu(linen.Dense(84, name="fc2")(x))
        return linen.Dense(10, name="fc3")(x)


class EqxLeNet5(eqx.Module):
    """Equinox LeNet5: channel-first like MindSpore (no flatten permutation)."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    fc3: eqx.nn.Linear

    def __init__(self, key):
        k = jax.random.split(key, 5)
        self.conv1 = eqx.nn.Conv2d(1, 6, 5, use_bias=False, key=k[0])
        self.conv2 = eqx.nn.Conv2d(6, 16, 5, use_bias=False, key=k[1])
        self.fc1, self.fc2, self.fc3 = (eqx.nn.Linear(400, 120, key=k[2]), eqx.nn.Linear(120, 84, key=k[3]),
                                        eqx.nn.Linear(84, 10, key=k[4]))

    def one(self, x):  # (1, 32, 32)
        pool = eqx.nn.MaxPool2d(2, 2)
        x = pool(jax.nn.relu(self.conv1(x)))
        x = pool(jax.nn.relu(self.conv2(x)))
        x = x.reshape(-1)
        return self.fc3(jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x)))))

    def __call__(self, x):
        return jax.vmap(self.one)(x)


def plain_conv(x, w, stride=1, padding="VALID"):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NCHW", "OIHW", "NCHW"))


def plain_lenet5(p, x):
    """MindSpore's names and layouts: NCHW, OIHW, dense (out, in)."""
    pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")  # noqa
    x = pool(jax.nn.relu(plain_conv(x, p["conv1"]["weight"])))
    x = pool(jax.nn.relu(plain_conv(x, p["conv2"]["weight"])))
    x = x.reshape(x.shape[0], -1)
    for name in ("fc1", "fc2"):
        x = jax.nn.relu(x @ p[name]["weight"].T + p[name]["bias"])
    return x @ p["fc3"]["weight"].T + p["fc3"]["bias"]


class NnxBlock(nnx.Module):
    def __init__(self, cin, cout, stride, rngs):
        bn = lambda c: nnx.BatchNorm(c, momentum=0.9, epsilon=1e-5, use_running_average=False, use_fast_variance=False,
                                    rngs=rngs)  # noqa
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn1 = bn(cout)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn2 = bn(cout)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down = nnx.Conv(cin, cout, (1, 1), strides=stride, padding="VALID", use_bias=False, rngs=rngs)
            self.down_bn = bn(cout)

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return jax.nn.relu(y + (self.down_bn(self.down(x)) if self.project else x))


class NnxResNet(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(8, momentum=0.9, epsilon=1e-5, use_running_average=False, use_fast_variance=False,
                                 rngs=rngs)
        self.layer1 = NnxBlock(8, 8, 1, rngs)
        self.layer2 = NnxBlock(8, 16, 2, rngs)
        self.fc = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        return self.fc(self.layer2(self.layer1(x)).mean(axis=(1, 2)))


class LinenBlock(linen.Module):
    cout: int
    stride: int = 1

    @linen.compact
    def __call__(self, x):
        bn = lambda name: linen.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,  # noqa
                                          use_fast_variance=False, name=name)
        pad = ((1, 1), (1, 1))
        y = jax.nn.relu(bn("bn1")(linen.Conv(self.cout, (3, 3), self.stride, pad, use_bias=False, name="conv1")(x)))
        y = bn("bn2")(linen.Conv(self.cout, (3, 3), 1, pad, use_bias=False, name="conv2")(y))
        if self.stride != 1 or x.shape[-1] != self.cout:
            x = bn("down_bn")(linen.Conv(self.cout, (1, 1), self.stride, "VALID", use_bias=False, name="down")(x))
        return jax.nn.relu(y + x)


class LinenResNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = jnp.transpose(x, (0, 2, 3, 1))
        x = linen.Conv(8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="conv1")(x)
        x = jax.nn.relu(linen.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, use_fast_variance=False,
                                       name="bn1")(x))
        x = LinenBlock(16, 2, name="layer2")(LinenBlock(8, name="layer1")(x))
        return linen.Dense(10, name="fc")(x.mean(axis=(1, 2)))


class EqxBlock(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    down: eqx.nn.Conv2d | None
    down_bn: eqx.nn.BatchNorm | None

    def __init__(self, cin, cout, stride, key):
        k = jax.random.split(key, 3)
        bn = lambda c: eqx.nn.BatchNorm(c, "batch", eps=1e-5, momentum=0.9, mode="batch")  # noqa: E731
        self.conv1 = eqx.nn.Conv2d(cin, cout, 3, stride, padding=1, use_bias=False, key=k[0])
        self.bn1, self.bn2 = bn(cout), bn(cout)
        self.conv2 = eqx.nn.Conv2d(cout, cout, 3, padding=1, use_bias=False, key=k[1])
        project = stride != 1 or cin != cout
        self.down = eqx.nn.Conv2d(cin, cout, 1, stride, use_bias=False, key=k[2]) if project else None
        self.down_bn = bn(cout) if project else None

    def __call__(self, x, state):
        y, state = self.bn1(self.conv1(x), state)
        y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)
        if self.down is not None:
            x, state = self.down_bn(self.down(x), state)
        return jax.nn.relu(y + x), state


class EqxResNet(eqx.Module):
    """Equinox, channel-first; BatchNorm(mode='batch') normalises training batches with their statistics, as
    MindSpore."""

    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    layer1: EqxBlock
    layer2: EqxBlock
    fc: eqx.nn.Linear

    def __init__(self, key):
        k = jax.random.split(key, 4)
        self.conv1 = eqx.nn.Conv2d(3, 8, 3, padding=1, use_bias=False, key=k[0])
        self.bn1 = eqx.nn.BatchNorm(8, "batch", eps=1e-5, momentum=0.9, mode="batch")
        self.layer1, self.layer2 = EqxBlock(8, 8, 1, k[1]), EqxBlock(8, 16, 2, k[2])
        self.fc = eqx.nn.Linear(16, 10, key=k[3])

    def one(self, x, state):
        x, state = self.bn1(self.conv1(x), state)
        x, state = self.layer1(jax.nn.relu(x), state)
        x, state = self.layer2(x, state)
        return self.fc(x.mean(axis=(1, 2))), state

    def __call__(self, x, state):
        return jax.vmap(self.one, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)


def plain_bn(p, stats, name, x):
    """MindSpore's BatchNorm2d in training mode: batch statistics (biased variance) normalise; the moving variance
    averages the unbiased one (moving = 0.9 moving + 0.1 batch)."""
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    n = x.size // x.shape[1]
    new = {"moving_mean": 0.9 * stats[name]["moving_mean"] + 0.1 * mean,
           "moving_variance": 0.9 * stats[name]["moving_variance"] + 0.1 * var * (n / (n - 1))}
    y = (x - mean[:, None, None]) * jax.lax.rsqrt(var[:, None, None] + 1e-5)
    return y * p[name]["gamma"][:, None, None] + p[name]["beta"][:, None, None], new


def plain_resnet(p, stats, x):
    """Returns ``(logits, new moving statistics)``; MindSpore's names and layouts."""
    new = {}

    def sub(tree, prefix):
        for part in prefix.split("."):
            tree = tree[part]
        return tree

    def cbr(x, prefix, conv, bn, stride=1, pad=1, relu=True):
        scope_p, scope_s = sub(p, prefix) if prefix else p, sub(stats, prefix) if prefix else stats
        y = plain_conv(x, scope_p[conv]["weight"], stride, ((pad, pad), (pad, pad)))
        y, new[f"{prefix}.{bn}" if prefix else bn] = plain_bn(scope_p, scope_s, bn, y)
        return jax.nn.relu(y) if relu else y

    x = cbr(x, "", "conv1", "bn1")
    for name, stride in (("layer1", 1), ("layer2", 2)):
        y = cbr(x, name, "conv1", "bn1", stride)
        y = cbr(y, name, "conv2", "bn2", relu=False)
        if "down" in p[name]:
            x = cbr(x, name, "down", "down_bn", stride, 0, relu=False)
        x = jax.nn.relu(y + x)
    logits = x.mean(axis=(2, 3)) @ p["fc"]["weight"].T + p["fc"]["bias"]
    nested: dict = {}
    for name, value in new.items():
        node = nested
        for part in name.split("."):
            node = node.setdefault(part, {})
        node.update(value)
    return logits, nested


class NnxTextBag(nnx.Module):
    def __init__(self, rngs):
        self.embedding = nnx.Embed(50, 8, rngs=rngs)
        self.norm = nnx.LayerNorm(8, epsilon=1e-7, rngs=rngs)  # MindSpore's LayerNorm epsilon
        self.fc = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, tokens):
        return self.fc(self.norm(self.embedding(tokens).mean(axis=1)))


class LinenTextBag(linen.Module):
    @linen.compact
    def __call__(self, tokens):
        h = linen.Embed(50, 8, name="embedding")(tokens).mean(axis=1)
        return linen.Dense(4, name="fc")(linen.LayerNorm(epsilon=1e-7, name="norm")(h))


class EqxTextBag(eqx.Module):
    embedding: eqx.nn.Embedding
    norm: eqx.nn.LayerNorm
    fc: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.embedding = eqx.nn.Embedding(50, 8, key=k1)
        self.norm = eqx.nn.LayerNorm(8, eps=1e-7)
        self.fc = eqx.nn.Linear(8, 4, key=k2)

    def __call__(self, tokens):
        return jax.vmap(lambda t: self.fc(self.norm(jax.vmap(self.embedding)(t).mean(axis=0))))(tokens)


def plain_textbag(p, tokens):
    h = p["embedding"]["embedding_table"][tokens].mean(axis=1)
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) * jax.lax.rsqrt(var + 1e-7) * p["norm"]["gamma"] + p["norm"]["beta"]
    return h @ p["fc"]["weight"].T + p["fc"]["bias"]


FLATTEN = {"lenet5": {"fc1": (16, 5, 5)}, "resnet": {}, "textbag": {}}


# ----------------------------------------------------------------------------------------- continuing the runs
def overflowed(grads, first: str, config: dict, k: int):
    if k not in config["overflow_at"]:
        return grads
    names = jax.tree.leaves(jaxopt_ms.param_names(grads))
    return jax.tree.map(lambda n, g: g * jnp.inf if n == first else g, jaxopt_ms.param_names(grads), grads) \
        if first in names else pytest.fail(f"{first} not in {names}")


def scale_of(opt_state):
    return jaxopt_ms.loss_scale.loss_scale_value(opt_state) if isinstance(
        opt_state, jaxopt_ms.loss_scale.DynamicLossScaleState) else 1.0


def continue_run(step, carry: tuple, net: str, seed: int, config: dict, steps: int, last: int) -> tuple:
    """MindSpore's continuation batches through ``step(*carry, x, y, overflow) -> (*carry, loss)``: the final
    carry and the losses."""
    got = []
    for k in range(steps, 2 * steps - last):
        x, y = batch(net, seed, k)
        *carry, loss = step(*carry, x, y, k in config["overflow_at"])
        got.append(float(loss))
    return tuple(carry), got


def run_nnx(case: str, last: int = 0):
    config, losses, want, ckpt = fixture(case)
    net, seed, steps = config["net"], config["seed"], config["steps"]
    model = {"lenet5": NnxLeNet5, "resnet": NnxResNet, "textbag": NnxTextBag}[net](nnx.Rngs(0))
    tx = build(config, "flax", target=model)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    port_from_mindspore(ckpt, model, optimizer, flatten=FLATTEN[net])
    assert int(optimizer.step[...]) == steps

    @nnx.jit
    def train_step(model, optimizer, x, y, overflow):
        scale = scale_of(nnx_pure(optimizer.opt_state))
        loss, grads = nnx.value_and_grad(lambda m: scale * cross_entropy(m(x), y))(model)
        if "conv1" in grads:  # an overflowed step: MindSpore's run made conv1's gradient infinite
            grads["conv1"]["kernel"][...] = grads["conv1"]["kernel"][...] * jnp.where(overflow, jnp.inf, 1.0)
        optimizer.update(model, grads)
        return loss / scale

    step = lambda model, optimizer, *batch_and_flag: (model, optimizer, train_step(model, optimizer, *batch_and_flag))
    _, got = continue_run(step, (model, optimizer), net, seed, config, steps, last)
    back = port_to_mindspore(model, optimizer, flatten=FLATTEN[net], like=ckpt)
    return config, losses, want, got, back


SLOW = pytest.mark.slow


@pytest.mark.parametrize("case", [pytest.param("lenet5_momentum", marks=SLOW), "lenet5_adamw_groups",
                                  pytest.param("resnet_momentum", marks=SLOW), "resnet_dynamic_loss_scale",
                                  "textbag_adam_exp_decay"])
def test_nnx_continues_mindspore_run(case):
    config, losses, want, got, back = run_nnx(case)
    steps = config["steps"]
    close(got, losses[steps:], f"{case} losses")
    for name, value in want.items():
        if name.endswith("moving_variance"):
            continue  # Flax's BatchNorm averages the biased batch variance (test_flax_batchnorm_moving_variance)
        close(back[name], value, f"{case} {name}")
    assert set(want) <= set(back)


def run_linen(case: str, last: int = 0):
    config, losses, want, ckpt = fixture(case)
    net, seed, steps = config["net"], config["seed"], config["steps"]
    model = {"lenet5": LinenLeNet5, "resnet": LinenResNet, "textbag": LinenTextBag}[net]()
    x0, _ = batch(net, seed, 0)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x0)
    tx = build(config, "flax", target=variables)
    params, stats, opt_state = port_from_mindspore(ckpt, variables, tx, flatten=FLATTEN[net])

    @jax.jit
    def step(params, stats, opt_state, x, y, overflow):
        scale = scale_of(opt_state)

        def loss_fn(params):
            logits, new = model.apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
            return scale * cross_entropy(logits, y), new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        if "conv1" in grads:
            grads["conv1"]["kernel"] = grads["conv1"]["kernel"] * jnp.where(overflow, jnp.inf, 1.0)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss / scale

    (params, stats, opt_state), got = continue_run(step, (params, stats, opt_state), net, seed, config, steps, last)
    back = port_to_mindspore({"params": params, "batch_stats": stats}, tx, opt_state, flatten=FLATTEN[net],
                             like=ckpt)
    return config, losses, want, got, back


@pytest.mark.parametrize("case", ["lenet5_adam_exp_decay", "resnet_dynamic_loss_scale", "textbag_adamw_groups"])
def test_linen_continues_mindspore_run(case):
    config, losses, want, got, back = run_linen(case)
    close(got, losses[config["steps"]:], f"{case} losses")
    for name, value in want.items():
        if not name.endswith("moving_variance"):
            close(back[name], value, f"{case} {name}")


def run_equinox(case: str, last: int = 0):
    config, losses, want, ckpt = fixture(case)
    net, seed, steps = config["net"], config["seed"], config["steps"]
    if net == "resnet":
        model, state = eqx.nn.make_with_state(EqxResNet)(jax.random.PRNGKey(0))
    else:
        model, state = {"lenet5": EqxLeNet5, "textbag": EqxTextBag}[net](jax.random.PRNGKey(0)), None
    decayed = {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight", "fc.weight",
               "embedding.weight"}
    tx = build(config, "equinox", decayed, target=model)
    model, state, opt_state = port_from_mindspore(ckpt, model, tx, state=state)

    @eqx.filter_jit
    def step(model, state, opt_state, x, y, overflow):
        scale = scale_of(opt_state)

        def loss_fn(model):
            logits, new = model(x, state) if state is not None else (model(x), None)
            return scale * cross_entropy(logits, y), new

        (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)
        if net == "resnet":
            grads = eqx.tree_at(lambda g: g.conv1.weight, grads, grads.conv1.weight * jnp.where(overflow, jnp.inf, 1.0))
        updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, opt_state, loss / scale

    (model, state, opt_state), got = continue_run(step, (model, state, opt_state), net, seed, config, steps, last)
    back = port_to_mindspore(model, tx, opt_state, batch_stats=state, like=ckpt)
    return config, losses, want, got, back


@pytest.mark.parametrize("case", [pytest.param("lenet5_adamw_groups", marks=SLOW),
                                  pytest.param("resnet_dynamic_loss_scale", marks=SLOW), "resnet_momentum",
                                  "textbag_adam_exp_decay"])
def test_equinox_continues_mindspore_run(case):
    config, losses, want, got, back = run_equinox(case)
    close(got, losses[config["steps"]:], f"{case} losses")
    for name, value in want.items():
        if not name.endswith("moving_variance"):  # Equinox averages the biased batch variance
            close(back[name], value, f"{case} {name}")


def run_plain(case: str, last: int = 0):
    config, losses, want, ckpt = fixture(case)
    net, seed, steps = config["net"], config["seed"], config["steps"]
    tx = build(config, "plain")
    params, stats, opt_state = port_from_mindspore(ckpt, None, tx)   # template-free: shapes from the checkpoint

    def forward(params, stats, x):
        if net == "resnet":
            return plain_resnet(params, stats, x)
        return (plain_lenet5 if net == "lenet5" else plain_textbag)(params, x), stats

    @jax.jit
    def step(params, stats, opt_state, x, y, overflow):
        scale = scale_of(opt_state)
        (loss, stats), grads = jax.value_and_grad(
            lambda p: (lambda out: (scale * cross_entropy(out[0], y), out[1]))(forward(p, stats, x)),
            has_aux=True)(params)
        if net == "resnet":
            grads["conv1"]["weight"] = grads["conv1"]["weight"] * jnp.where(overflow, jnp.inf, 1.0)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss / scale

    (params, stats, opt_state), got = continue_run(step, (params, stats, opt_state), net, seed, config, steps, last)
    back = port_to_mindspore(params, tx, opt_state, batch_stats=stats, preset="plain")
    return config, losses, want, got, back, ckpt


@pytest.mark.parametrize("case", [pytest.param("lenet5_adam_exp_decay", marks=SLOW), "resnet_momentum",
                                  pytest.param("resnet_dynamic_loss_scale", marks=SLOW), "textbag_adamw_groups"])
def test_plain_continues_mindspore_run(case):
    """MindSpore's names and layouts, no template: every leaf, moving variance included, is MindSpore's."""
    config, losses, want, got, back, ckpt = run_plain(case)
    close(got, losses[config["steps"]:], f"{case} losses")
    for name, value in want.items():
        close(back[name], value, f"{case} {name}")
    assert set(back) == set(ckpt) - {"learning_rate", "momentum"} or set(ckpt) - set(back) <= {
        "learning_rate", "momentum"}


# ------------------------------------------------------------------------------------------- one layer each
def layers_fixture():
    data = np.load(os.path.join(FOLDER, "layers.npz"))
    return msc.load(os.path.join(FOLDER, "layers.ckpt")), data


class NnxLayers(nnx.Module):
    def __init__(self, rngs):
        self.conv1d = nnx.Conv(4, 6, (3,), padding="VALID", feature_group_count=2, rngs=rngs)
        self.conv2d = nnx.Conv(4, 6, (3, 2), padding="VALID", feature_group_count=2, rngs=rngs)
        self.conv3d = nnx.Conv(2, 3, (2, 3, 2), padding="VALID", rngs=rngs)
        self.deconv2d = nnx.ConvTranspose(3, 5, (3, 2), strides=(2, 2), padding="VALID", rngs=rngs)
        self.deconv1d = nnx.ConvTranspose(3, 4, (3,), strides=(2,), padding="VALID", transpose_kernel=True, rngs=rngs)
        self.dense = nnx.Linear(5, 3, rngs=rngs)
        self.embedding = nnx.Embed(7, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=True, epsilon=1e-5, rngs=rngs)
        self.norm = nnx.LayerNorm(5, epsilon=1e-7, rngs=rngs)


def channels_last(f, x):
    """Applies a channel-last layer to MindSpore's channel-first ``x``; returns channel-first."""
    nd = x.ndim
    y = f(jnp.moveaxis(x, 1, -1))
    return jnp.moveaxis(y, -1, 1) if nd > 2 else y


def test_every_layer_kind_nnx():
    """Conv1d/2d/3d (grouped), Conv2dTranspose, Conv1dTranspose (transpose_kernel=True), Dense, Embedding,
    BatchNorm (inference, MindSpore's moving statistics), LayerNorm: Flax nnx's outputs are MindSpore's."""
    ckpt, data = layers_fixture()
    model = NnxLayers(nnx.Rngs(0))
    port_from_mindspore(ckpt, model)
    x = {k[3:]: data[k] for k in data.files if k.startswith("x__")}

    @nnx.jit
    def outputs(model, x):
        out = {n: channels_last(getattr(model, n), x[n]) for n in ("conv1d", "conv2d", "conv3d", "deconv2d",
                                                                   "deconv1d", "bn")}
        return dict(out, **{n: getattr(model, n)(x[n]) for n in ("dense", "embedding", "norm")})

    for name, value in outputs(model, x).items():
        close(value, data[f"y__{name}"], name)
    back = port_to_mindspore(model)   # no reference: names and shapes by the preset's rules
    assert sorted(back) == sorted(ckpt)
    for name, value in ckpt.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


class LinenLayers(linen.Module):
    @linen.compact
    def __call__(self, x):
        return {
            "conv1d": channels_last(linen.Conv(6, (3,), padding="VALID", feature_group_count=2, name="conv1d"),
                                    x["conv1d"]),
            "conv2d": channels_last(linen.Conv(6, (3, 2), padding="VALID", feature_group_count=2, name="conv2d"),
                                    x["conv2d"]),
            "conv3d": channels_last(linen.Conv(3, (2, 3, 2), padding="VALID", name="conv3d"), x["conv3d"]),
            "deconv2d": channels_last(linen.ConvTranspose(5, (3, 2), (2, 2), "VALID", name="deconv2d"), x["deconv2d"]),
            "deconv1d": channels_last(linen.ConvTranspose(4, (3,), (2,), "VALID", transpose_kernel=True,
                                                          name="deconv1d"), x["deconv1d"]),
            "dense": linen.Dense(3, name="dense")(x["dense"]),
            "embedding": linen.Embed(7, 3, name="embedding")(x["embedding"]),
            "bn": channels_last(linen.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn"), x["bn"]),
            "norm": linen.LayerNorm(epsilon=1e-7, name="norm")(x["norm"]),
        }


def test_every_layer_kind_linen():
    """linen has no module types to read: transposed convs are named with kinds=; without, the shape check
    refuses and says so."""
    ckpt, data = layers_fixture()
    x = {k[3:]: data[k] for k in data.files if k.startswith("x__")}
    model = LinenLayers()
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"deconv2d.weight.*transposed convolution.*kinds="):
        port_from_mindspore(ckpt, variables)
    kinds = {"deconv2d": "conv_transpose", "deconv1d": "conv_transpose_kernel"}
    params, stats, _ = port_from_mindspore(ckpt, variables, kinds=kinds)
    out = model.apply({"params": params, "batch_stats": stats}, x)
    for name, value in out.items():
        close(value, data[f"y__{name}"], name)
    back = port_to_mindspore({"params": params, "batch_stats": stats}, kinds=kinds)
    assert sorted(back) == sorted(ckpt)
    for name, value in ckpt.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


class EqxLayers(eqx.Module):
    conv1d: eqx.nn.Conv1d
    conv2d: eqx.nn.Conv2d
    conv3d: eqx.nn.Conv3d
    deconv2d: eqx.nn.ConvTranspose2d
    deconv1d: eqx.nn.ConvTranspose1d
    dense: eqx.nn.Linear
    embedding: eqx.nn.Embedding
    bn: eqx.nn.BatchNorm
    norm: eqx.nn.LayerNorm

    def __init__(self, key):
        k = jax.random.split(key, 7)
        self.conv1d = eqx.nn.Conv1d(4, 6, 3, groups=2, key=k[0])
        self.conv2d = eqx.nn.Conv2d(4, 6, (3, 2), groups=2, key=k[1])
        self.conv3d = eqx.nn.Conv3d(2, 3, (2, 3, 2), key=k[2])
        self.deconv2d = eqx.nn.ConvTranspose2d(3, 5, (3, 2), stride=2, key=k[3])
        self.deconv1d = eqx.nn.ConvTranspose1d(3, 4, 3, stride=2, key=k[4])
        self.dense = eqx.nn.Linear(5, 3, key=k[5])
        self.embedding = eqx.nn.Embedding(7, 3, key=k[6])
        self.bn = eqx.nn.BatchNorm(4, axis_name="batch", eps=1e-5, inference=True, mode="ema")
        self.norm = eqx.nn.LayerNorm(5, eps=1e-7)


def test_every_layer_kind_equinox():
    """Equinox is channel-first like MindSpore: convs keep OIHW (a Conv1d loses MindSpore's unit height, a conv bias
    gains unit spatial axes), transposed convs are flipped and their in/out swapped; BatchNorm statistics go into
    the model's eqx.nn.State."""
    ckpt, data = layers_fixture()
    model, state = eqx.nn.make_with_state(EqxLayers)(jax.random.PRNGKey(0))
    model, state, _ = port_from_mindspore(ckpt, model, state=state)
    x = {k[3:]: data[k] for k in data.files if k.startswith("x__")}

    @eqx.filter_jit
    def outputs(model, state, x):
        out = {n: jax.vmap(getattr(model, n))(x[n]) for n in ("conv1d", "conv2d", "conv3d", "deconv2d",
                                                               "deconv1d", "dense", "norm")}
        out["embedding"] = jax.vmap(jax.vmap(model.embedding))(x["embedding"])
        out["bn"] = jax.vmap(model.bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x["bn"], state)[0]
        return out

    for name, value in outputs(model, state, x).items():
        close(value, data[f"y__{name}"], name)
    back = port_to_mindspore(model, batch_stats=state)
    assert sorted(back) == sorted(ckpt)
    for name, value in ckpt.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


# --------------------------------------------------------------------------------------- checks and refusals
def test_flatten_order_is_required_and_checked():
    """LeNet5's fc1 takes conv2's flattened 16x5x5 map: MindSpore flattens NCHW, the Flax model NHWC. Without
    ``flatten`` the port refuses; ``flatten={'fc1': None}`` (a plain transpose, the shape fits) is the silent
    mistake the check exists for: the continued loss is far from MindSpore's."""
    config, losses, _, ckpt = fixture("lenet5_adamw_groups")
    model = NnxLeNet5(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"'fc1.weight' \(120, 400\).*'conv2.weight' \(16 channels\).*"
                                         r"flatten=\{'fc1': \(16, H, W\)\}"):
        port_from_mindspore(ckpt, model)
    with pytest.raises(ValueError, match=r"flatten\['fc1'\] = \(8, 10, 5\) starts with 8 channels.*'conv2.weight'"
                                         r".*16"):
        port_from_mindspore(ckpt, model, flatten={"fc1": (8, 10, 5)})
    with pytest.raises(ValueError, match=r"flatten for 'fc1' is \(16, 5, 4\), which holds 320 inputs.*400"):
        port_from_mindspore(ckpt, model, flatten={"fc1": (16, 5, 4)})
    with pytest.raises(ValueError, match=r"flatten names \['fc9'\]"):
        port_from_mindspore(ckpt, model, flatten={"fc1": (16, 5, 5), "fc9": None})
    x, y = batch("lenet5", config["seed"], config["steps"])
    port_from_mindspore(ckpt, model, flatten={"fc1": None})
    wrong = float(cross_entropy(model(x), y))
    port_from_mindspore(ckpt, model, flatten={"fc1": (16, 5, 5)})
    right = float(cross_entropy(model(x), y))
    close(right, losses[config["steps"]], "loss with the flatten permutation")
    assert abs(wrong - losses[config["steps"]]) > 1e-3, (wrong, right)


def test_adafactor_factored_moments_cannot_follow_a_transpose():
    """AdaFactor factors a matrix's second moment over its last two axes; a Flax dense kernel is the transpose:
    refused, naming the entry and the ways out; the plain preset (MindSpore's layout) ports it."""
    ckpt = msc.load(os.path.join(os.path.dirname(FOLDER), "checkpoints", "adafactor.ckpt"))
    shapes = {"fc1": {"kernel": (6, 8), "bias": (8,)}, "fc2": {"kernel": (8, 3), "bias": (3,)}}
    variables = {"params": jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), shapes,
                                        is_leaf=lambda s: isinstance(s, tuple))}
    with pytest.raises(ValueError, match=r"'exp_avg_sq_row_fc1.weight'.*cannot follow.*'fc1.weight'.*\(8, 6\).*"
                                         r"\(6, 8\).*preset='plain'"):
        port_from_mindspore(ckpt, variables, jaxopt_ms.adafactor())
    params, _, state = port_from_mindspore(ckpt, None, jaxopt_ms.adafactor())
    assert params["fc1"]["weight"].shape == (8, 6)


def test_mismatched_names_are_listed_at_once():
    _, _, _, ckpt = fixture("textbag_adam_exp_decay")

    class Renamed(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(50, 8, rngs=rngs)
            self.norm = nnx.LayerNorm(8, epsilon=1e-7, rngs=rngs)
            self.head = nnx.Linear(8, 4, rngs=rngs)

    model = Renamed(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"no target leaf: embedding.embedding_table -> embedding.embedding, "
                                         r"fc.weight -> fc.kernel, fc.bias -> fc.bias; target leaves with no "
                                         r"checkpoint entry: embed.embedding, head.bias, head.kernel\)"):
        port_from_mindspore(ckpt, model)
    tx = jaxopt_ms.adam(jaxopt_ms.schedules.exponential_decay(0.01, 0.9, 2))
    params, _, state = port_from_mindspore(ckpt, model, tx, rename={"embedding": "embed", "fc": "head"})
    np.testing.assert_array_equal(params["head"]["kernel"], ckpt["fc.weight"].T)
    np.testing.assert_array_equal(state.inner_state[0].moment1["head"]["kernel"] if hasattr(state, "inner_state")
                                  else jax.tree.leaves(state, is_leaf=lambda s: hasattr(s, "moment1"))[0]
                                  .moment1["head"]["kernel"], ckpt["moment1.fc.weight"].T)
    back = port_to_mindspore(model, tx, state, rename={"embedding": "embed", "fc": "head"})
    for name in ckpt:
        if name not in ("learning_rate",):
            np.testing.assert_array_equal(np.asarray(back[name]).reshape(-1), ckpt[name].reshape(-1), err_msg=name)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_round_trip_is_the_identity(fmt):
    """port_from_mindspore then port_to_mindspore gives MindSpore's entries back, bit for bit (nnx, linen and
    plain; both file formats), BatchNorm moving statistics included."""
    ckpt = msc.load(os.path.join(FOLDER, f"resnet_momentum.{fmt}"))
    config, _, _, _ = fixture("resnet_momentum")
    model = NnxResNet(nnx.Rngs(0))
    tx = build(config, "flax", target=model)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    port_from_mindspore(ckpt, model, optimizer)
    outs = [port_to_mindspore(model, optimizer), port_to_mindspore(model, optimizer, like=ckpt)]
    variables = jax.eval_shape(LinenResNet().init, jax.random.PRNGKey(0), np.zeros((1, 3, 8, 8), np.float32))
    params, stats, state = port_from_mindspore(ckpt, variables, tx)
    outs.append(port_to_mindspore({"params": params, "batch_stats": stats}, tx, state))
    tx = build(config, "plain")   # the default decay filter reads MindSpore's names
    params, stats, state = port_from_mindspore(ckpt, None, tx)
    outs.append(port_to_mindspore(params, tx, state, batch_stats=stats, preset="plain"))
    for out in outs:
        assert set(ckpt) - set(out) == {"learning_rate", "momentum"}   # configuration, not state
        for name, value in out.items():
            np.testing.assert_array_equal(np.asarray(value).reshape(ckpt[name].shape), ckpt[name], err_msg=name)


def test_mindspore_filter_decides_by_mindspore_names():
    """MindSpore's default decay filter skips gamma/beta by name; on a Flax model those are scale/bias, and a
    dense bias (decayed by MindSpore) is a bias too: mindspore_filter maps each name back first."""
    model = NnxResNet(nnx.Rngs(0))
    names = mindspore_names(model)
    assert names["bn1.scale"] == "bn1.gamma" and names["bn1.bias"] == "bn1.beta"
    assert names["layer2.down.kernel"] == "layer2.down.weight" and names["fc.bias"] == "fc.bias"
    f = mindspore_filter(model)
    assert f("fc.bias") and f("conv1.kernel") and f("fc.kernel.value") and not f("bn1.bias") and not f("bn1.scale")
    with pytest.raises(ValueError, match="no leaf"):
        f("nothing.kernel")


def test_batchnorm_conventions_of_mindspore():
    """MindSpore's BatchNorm2d (CPU), one training step: the output is normalised with the batch's biased
    variance; moving = 0.9 moving + 0.1 batch (momentum 0.9, the weight of the old value, as Flax's momentum);
    the moving variance averages the *unbiased* batch variance, n / (n - 1) times the biased one that Flax's
    BatchNorm averages. (The cell's ``momentum`` attribute is the op's ``1 - 0.9``.)"""
    d = np.load(os.path.join(FOLDER, "batchnorm.npz"))
    x = d["x"].astype(np.float64)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    n = x.size // x.shape[1]
    assert d["momentum"] == np.float32(0.1)
    y = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + float(d["eps"]))
    close(d["y"], y, "output")
    close(d["mean1"], 0.9 * d["mean0"] + 0.1 * mean, "moving_mean")
    close(d["var1"], 0.9 * d["var0"] + 0.1 * var * n / (n - 1), "moving_variance (unbiased)")
    bn = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, use_running_average=False, use_fast_variance=False,
                       rngs=nnx.Rngs(0))
    bn.mean[...], bn.var[...] = d["mean0"], d["var0"]
    close(channels_last(bn, d["x"]), d["y"], "Flax output")
    close(bn.mean[...], d["mean1"], "Flax moving mean")
    close(bn.var[...], 0.9 * d["var0"] + 0.1 * var, "Flax moving variance (biased)")
    assert np.abs(np.asarray(bn.var[...]) - d["var1"]).max() > 1e-3


# ------------------------------------------------------------------------------------- live: back to MindSpore
LIVE = """
import json, os, sys
os.environ.setdefault("GLOG_v", "3")
import numpy as np
import porting as fx
import mindspore as ms
from mindspore import Tensor, nn
out = {}
for case, path in json.load(open(sys.argv[1])).items():
    _, net_name, seed, steps, make_opt, config, extra = {c[0]: c for c in fx.CASES}[case]
    net = fx.NETS[net_name]()
    opt = make_opt(net.trainable_params())
    loss_net = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    cell = nn.TrainOneStepCell(loss_net, opt)
    loaded = ms.load_checkpoint(path, format=path.rsplit(".", 1)[1])
    not_loaded, unused = ms.load_param_into_net(cell, loaded, strict_load=True)
    net.set_train(True)
    x, y = fx.batch(net_name, seed, 2 * steps - 1)
    loss = float(cell(Tensor(x), Tensor(y)).asnumpy())   # MindSpore's step from the state ported back
    out[case] = {"not_loaded": list(not_loaded), "unused": list(unused), "loss": loss,
                 "params": {n: p.asnumpy().tolist() for n, p in net.parameters_and_names()}}
print("RESULT" + json.dumps(out))
"""


@pytest.mark.mindspore
def test_ported_back_checkpoints_continue_in_mindspore(tmp_path):
    """MindSpore -> JAX (nnx, linen, Equinox: K - 1 steps) -> port_to_mindspore -> save -> MindSpore loads it into
    its training cell with ``strict_load=True`` (nothing unused, nothing left unloaded but the learning rate) and
    takes the last step: MindSpore's uninterrupted run, per leaf."""
    python = mindspore_python()
    if python is None:
        pytest.skip("MindSpore not found (set JAXOPT_MS_MINDSPORE_PYTHON to a Python that has it)")
    runs = {"lenet5_adamw_groups": (run_nnx, "ckpt"), "resnet_momentum": (run_linen, "safetensors"),
            "textbag_adam_exp_decay": (run_equinox, "ckpt")}
    paths, wants = {}, {}
    for case, (run, fmt) in runs.items():
        config, losses, want, _, back = run(case, last=1)
        paths[case] = str(tmp_path / f"{case}.{fmt}")
        msc.save(paths[case], back)
        wants[case] = (losses[-1], want)
    with open(tmp_path / "cases.json", "w") as f:
        json.dump(paths, f)
    scripts = os.path.abspath(os.path.join(FOLDER, "..", "..", "..", "scripts", "mindspore_fixtures"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (scripts, os.environ.get("PYTHONPATH")) if p))
    run = subprocess.run([python, "-c", LIVE, str(tmp_path / "cases.json")], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    for case, (loss, want) in wants.items():
        got = result[case]
        # learning rates are configuration: the MindSpore optimizer is built with its own (not written)
        assert set(got["not_loaded"]) <= {"learning_rate", "momentum"}, (case, got["not_loaded"])
        assert got["unused"] == [], (case, got["unused"])
        close(got["loss"], loss, f"{case} MindSpore's last loss")
        for name, value in want.items():
            if not name.endswith("moving_variance"):   # Flax averages the biased batch variance
                close(got["params"][name], value, f"{case} MindSpore's last step {name}")


def test_way_back_without_reference_asks_for_every_possible_flatten():
    """A model does not say which dense layer a conv's flatten feeds: without like= every dense layer whose
    inputs are a multiple of a conv's channels must be named in flatten (None where no flatten feeds it)."""
    _, _, _, ckpt = fixture("lenet5_momentum")
    model = NnxLeNet5(nnx.Rngs(0))
    port_from_mindspore(ckpt, model, flatten={"fc1": (16, 5, 5)})
    with pytest.raises(ValueError, match=r"'fc1.weight'.*layer order is unknown.*like="):
        port_to_mindspore(model)
    with pytest.raises(ValueError, match=r"'fc2.weight' \(84, 120\).*'conv1.weight' \(6 channels\)"):
        port_to_mindspore(model, flatten={"fc1": (16, 5, 5)})
    back = port_to_mindspore(model, flatten={"fc1": (16, 5, 5), "fc2": None, "fc3": None})
    like = port_to_mindspore(model, flatten={"fc1": (16, 5, 5)}, like=ckpt)
    assert list(like) == [n for n in ckpt if n in like]
    for name, value in like.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
        np.testing.assert_array_equal(value, ckpt[name], err_msg=name)


def test_plain_template_and_flat_names():
    """A plain target may be a template with MindSpore's names (nested or flat); its structure is kept."""
    config, _, _, ckpt = fixture("textbag_adamw_groups")
    tx = build(config, "plain")
    flat = {n: jax.ShapeDtypeStruct(ckpt[n].shape, jnp.float32) for n in
            ("embedding.embedding_table", "norm.gamma", "norm.beta", "fc.weight", "fc.bias")}
    params, stats, state = port_from_mindspore(ckpt, flat, tx)
    assert sorted(params) == sorted(flat) and stats == {}
    np.testing.assert_array_equal(params["fc.weight"], ckpt["fc.weight"])
    back = port_to_mindspore(params, tx, state, preset="plain")
    for name, value in back.items():
        np.testing.assert_array_equal(np.asarray(value).reshape(ckpt[name].shape), ckpt[name], err_msg=name)
    with pytest.raises(ValueError, match=r"target leaves with no checkpoint entry: fc2.bias"):
        port_from_mindspore(ckpt, dict(flat, **{"fc2.bias": jax.ShapeDtypeStruct((4,), jnp.float32)}), tx)


@pytest.mark.parametrize("groups", [1, 2])
def test_equinox_grouped_transposed_conv_is_the_conv_gradient(groups):
    """MindSpore's Conv2dTranspose (weight (in, out/groups, kh, kw)) is the gradient of the grouped conv with that
    weight; the ported Equinox ConvTranspose2d(in, out, groups) computes it (derivation: jax.vjp)."""
    rng = np.random.RandomState(groups)
    cin, cout = 4, 6
    w = rng.randn(cin, cout // groups, 3, 2).astype(np.float32)
    b = rng.randn(cout).astype(np.float32)
    x = rng.randn(cin, 3, 4).astype(np.float32)
    stride = (2, 2)
    out_hw = ((3 - 1) * 2 + 3, (4 - 1) * 2 + 2)  # pad_mode='valid'

    def conv(y):  # the forward conv whose gradient MindSpore's transposed conv is: out channels -> in channels
        return jax.lax.conv_general_dilated(y[None], w, stride, "VALID", feature_group_count=groups,
                                            dimension_numbers=("NCHW", "OIHW", "NCHW"))[0]

    _, vjp = jax.vjp(conv, jnp.zeros((cout, *out_hw), jnp.float32))
    want = vjp(jnp.asarray(x))[0] + b[:, None, None]
    layer = eqx.nn.ConvTranspose2d(cin, cout, (3, 2), stride=2, groups=groups, key=jax.random.PRNGKey(0))
    ported, _, _ = port_from_mindspore({"deconv.weight": w, "deconv.bias": b}, {"deconv": layer}, preset="equinox")
    close(ported["deconv"](jnp.asarray(x)), want, f"groups={groups}")
    back = port_to_mindspore(ported, preset="equinox")
    np.testing.assert_array_equal(back["deconv.weight"], w)
