"""MindSpore networks trained mid-way, for porting into Flax, Equinox and plain JAX (``tests/test_porting.py``).

Run from the repository root (see common.py)::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/porting.py

Networks (MindSpore 2.10, CPU, PyNative): ``lenet5`` (MindSpore model zoo's LeNet5: conv1/conv2 without bias,
max-pool, flatten NCHW, fc1/fc2/fc3; inputs ``(8, 1, 32, 32)``), ``resnet`` (a small ResNet: conv-BN-ReLU stem, a
residual block, a strided block with a 1x1 projection shortcut, global average pool, dense head; BatchNorm in
training mode; inputs ``(8, 3, 8, 8)``) and ``textbag`` (an embedding-bag text classifier: Embedding, mean over the
tokens, LayerNorm, Dense; token ids ``(8, 6)``).

Each case trains ``K`` steps with ``TrainOneStepCell`` (softmax cross entropy with integer labels, mean), saves the
cell with ``mindspore.save_checkpoint`` (``tests/fixtures/porting/<case>.ckpt``; ``.safetensors`` too where
``both_formats``), trains ``K`` more steps and records the losses of all ``2K`` steps (``loss``) and every
parameter of the network after the last step (``p__<name>``, BatchNorm moving statistics included). The batches
are not stored: batch ``k`` of a case is :func:`batch` ``(net, seed, k)`` (numpy's ``RandomState``, whose stream
is fixed), which the tests recompute. The dynamic-loss-scale case composes ``TrainOneStepWithLossScaleCell``'s
step from its pieces (the cell does not run on CPU), on a ``DynamicLossScaleManager``'s update cell; the gradient
of ``overflow_at`` steps is made infinite (those steps are skipped and the scale halves).

``layers.ckpt`` / ``layers.npz``: one forward pass (inference mode) through single layers of every kind the port
converts -- Conv1d (grouped), Conv2d (grouped, with bias), Conv3d, Conv2dTranspose (stride 2, with bias),
Conv1dTranspose, Dense, Embedding, BatchNorm2d (trained statistics), LayerNorm -- with their inputs and MindSpore's
outputs.

``batchnorm.npz``: MindSpore's BatchNorm2d moving statistics after one training step from known inputs, to pin its
conventions (``moving = momentum * moving + (1 - momentum) * batch`` with ``momentum=0.9``; the batch variance in
the moving variance is the unbiased one, ``n / (n - 1)`` times the one the output is normalised with).
"""

from __future__ import annotations

import json
import os

import numpy as np
from checkpoints import scaled_step
from common import FIXTURES, ms
from mindspore import Tensor, nn
from mindspore.common.initializer import Normal

FOLDER = os.path.join(FIXTURES, "porting")
BATCH = 8


def batch(net: str, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``k`` of a run: inputs and integer labels (the tests recompute it the same way)."""
    rng = np.random.RandomState(seed * 1000 + k)
    if net == "textbag":
        tokens = rng.randint(0, 50, (BATCH, 6)).astype(np.int32)
        return tokens, (tokens[:, 0] % 4).astype(np.int32)  # a learnable rule: the first token's class
    x = rng.randn(BATCH, *((1, 32, 32) if net == "lenet5" else (3, 8, 8))).astype(np.float32)
    teacher = np.random.RandomState(99).randn(x[0].size, 10).astype(np.float32)  # labels: a fixed linear teacher
    return x, (x.reshape(BATCH, -1) @ teacher).argmax(-1).astype(np.int32)


class LeNet5(nn.Cell):
    """MindSpore model zoo's LeNet5 (research/cv/lenet, models/official/cv/lenet/src/lenet.py)."""

    def __init__(self, num_class: int = 10, num_channel: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(num_channel, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.fc1 = nn.Dense(16 * 5 * 5, 120, weight_init=Normal(0.02))
        self.fc2 = nn.Dense(120, 84, weight_init=Normal(0.02))
        self.fc3 = nn.Dense(84, num_class, weight_init=Normal(0.02))
        self.relu = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()

    def construct(self, x):
        x = self.max_pool2d(self.relu(self.conv1(x)))
        x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, weight_init="HeNormal")


class Block(nn.Cell):
    """conv-BN-ReLU-conv-BN plus the shortcut (a 1x1 strided conv + BN when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down = nn.Conv2d(cin, cout, 1, stride=stride, pad_mode="valid", weight_init="HeNormal")
            self.down_bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def construct(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        short = self.down_bn(self.down(x)) if self.project else x
        return self.relu(y + short)


class ResNet(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1 = conv3x3(3, 8)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = Block(8, 8)
        self.layer2 = Block(8, 16, stride=2)
        self.fc = nn.Dense(16, 10)
        self.relu = nn.ReLU()

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(axis=(2, 3)))


class TextBag(nn.Cell):
    """Embedding bag (mean over the tokens), LayerNorm, Dense."""

    def __init__(self, vocab: int = 50, dim: int = 8, classes: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm((dim,))
        self.fc = nn.Dense(dim, classes)

    def construct(self, x):
        return self.fc(self.norm(self.embedding(x).mean(axis=1)))


NETS = {"lenet5": LeNet5, "resnet": ResNet, "textbag": TextBag}


def _groups_awd(params):
    """AdamWeightDecay with groups: decay on weights, none on biases and norm parameters."""
    decay = [p for p in params if p.name.endswith(".weight") or p.name.endswith("embedding_table")]
    other = [p for p in params if p.name not in {q.name for q in decay}]
    return nn.AdamWeightDecay([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0},
                               {"order_params": params}], learning_rate=1e-3)


# (case, net, seed, K, make MindSpore optimizer, jaxopt_ms config, extra)
CASES = [
    ("lenet5_momentum", "lenet5", 1, 15, lambda p: nn.Momentum(p, 0.05, 0.9),
     {"optimizer": "momentum", "kwargs": {"learning_rate": 0.05, "momentum": 0.9}}, {}),
    ("lenet5_adam_exp_decay", "lenet5", 2, 3, lambda p: nn.Adam(p, nn.ExponentialDecayLR(1e-3, 0.9, 2)),
     {"optimizer": "adam", "schedule": ["exponential_decay", [1e-3, 0.9, 2]], "kwargs": {}}, {}),
    ("lenet5_adamw_groups", "lenet5", 3, 3, _groups_awd,
     {"optimizer": "adam_weight_decay", "kwargs": {"learning_rate": 1e-3},
      "groups": [{"params": "weight", "weight_decay": 0.01}, {"params": "other", "weight_decay": 0.0}]}, {}),
    ("resnet_momentum", "resnet", 4, 3, lambda p: nn.Momentum(p, 0.05, 0.9, weight_decay=1e-4),
     {"optimizer": "momentum", "kwargs": {"learning_rate": 0.05, "momentum": 0.9, "weight_decay": 1e-4}},
     {"both_formats": True}),
    ("resnet_dynamic_loss_scale", "resnet", 5, 3, lambda p: nn.Momentum(p, 0.05, 0.9),
     {"optimizer": "momentum", "kwargs": {"learning_rate": 0.05, "momentum": 0.9},
      "dynamic_loss_scale": {"init_loss_scale": 1024.0, "scale_factor": 2, "scale_window": 2}},
     {"loss_scale": (1024.0, 2, 2), "overflow_at": [4]}),
    ("textbag_adam_exp_decay", "textbag", 6, 3, lambda p: nn.Adam(p, nn.ExponentialDecayLR(0.01, 0.9, 2)),
     {"optimizer": "adam", "schedule": ["exponential_decay", [0.01, 0.9, 2]], "kwargs": {}}, {}),
    ("textbag_adamw_groups", "textbag", 7, 3, _groups_awd,
     {"optimizer": "adam_weight_decay", "kwargs": {"learning_rate": 1e-3},
      "groups": [{"params": "weight", "weight_decay": 0.01}, {"params": "other", "weight_decay": 0.0}]}, {}),
]


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.chmod(path, 0o644)
        os.remove(path)


def _save(cell, name: str, both: bool) -> None:
    for fmt in ("ckpt", "safetensors") if both else ("ckpt",):
        path = os.path.join(FOLDER, f"{name}.{fmt}")
        _remove(path)
        ms.save_checkpoint(cell, path, format=fmt)
        os.chmod(path, 0o644)  # MindSpore leaves its files read-only


def run_case(name: str, net_name: str, seed: int, steps: int, make_opt, config: dict, extra: dict) -> None:
    ms.set_seed(seed)
    net = NETS[net_name]()
    loss_net = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    opt = make_opt(net.trainable_params())
    net.set_train(True)  # BatchNorm normalises with the batch's statistics and updates its moving ones
    losses = []
    if "loss_scale" not in extra:
        cell = nn.TrainOneStepCell(loss_net, opt)
        for k in range(2 * steps):
            x, y = batch(net_name, seed, k)
            losses.append(float(cell(Tensor(x), Tensor(y)).asnumpy()))
            if k == steps - 1:
                _save(cell, name, extra.get("both_formats", False))
    else:
        manager = ms.amp.DynamicLossScaleManager(*extra["loss_scale"])
        cell = nn.TrainOneStepWithLossScaleCell(loss_net, opt, scale_sense=manager.get_update_cell())
        scaled = lambda x, y: loss_net(x, y) * cell.scale_sense  # noqa: E731
        grad_fn = ms.value_and_grad(scaled, None, opt.parameters)
        for k in range(2 * steps):
            x, y = batch(net_name, seed, k)
            loss, grads = grad_fn(Tensor(x), Tensor(y))
            if k in extra["overflow_at"]:
                grads = tuple(g * Tensor(np.float32(np.inf)) if i == 0 else g for i, g in enumerate(grads))
            scale = cell.scale_sense.asnumpy().copy()  # (asnumpy shares the memory the update rewrites)
            scaled_step(cell, opt, grads)
            losses.append(float(loss.asnumpy() / scale))
            if k == steps - 1:
                _save(cell, name, extra.get("both_formats", False))
    config = dict(config, net=net_name, seed=seed, steps=steps, overflow_at=extra.get("overflow_at", []))
    out = {"config": np.array(json.dumps(config, sort_keys=True)), "loss": np.array(losses, np.float32)}
    out.update({f"p__{n}": p.asnumpy().copy() for n, p in net.parameters_and_names()})
    np.savez_compressed(os.path.join(FOLDER, f"{name}.npz"), **out)
    print(name, "loss", np.round(losses, 4))


class Layers(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(4, 6, 3, pad_mode="valid", group=2, has_bias=True, weight_init="normal",
                                bias_init="normal")
        self.conv2d = nn.Conv2d(4, 6, (3, 2), pad_mode="valid", group=2, has_bias=True, weight_init="normal",
                                bias_init="normal")
        self.conv3d = nn.Conv3d(2, 3, (2, 3, 2), pad_mode="valid", has_bias=True, weight_init="normal",
                                bias_init="normal")
        self.deconv2d = nn.Conv2dTranspose(3, 5, (3, 2), stride=2, pad_mode="valid", has_bias=True,
                                           weight_init="normal", bias_init="normal")
        self.deconv1d = nn.Conv1dTranspose(3, 4, 3, stride=2, pad_mode="valid", has_bias=True,
                                           weight_init="normal", bias_init="normal")
        self.dense = nn.Dense(5, 3, weight_init="normal", bias_init="normal")
        self.embedding = nn.Embedding(7, 3, embedding_table="normal")
        self.bn = nn.BatchNorm2d(4)
        self.norm = nn.LayerNorm((5,), gamma_init="normal", beta_init="normal")


def layers() -> None:
    ms.set_seed(11)
    rng = np.random.RandomState(11)
    net = Layers()
    # trained-looking BatchNorm: non-trivial gamma, beta and moving statistics
    net.bn.gamma.set_data(Tensor(rng.rand(4).astype(np.float32) + 0.5))
    net.bn.beta.set_data(Tensor(rng.randn(4).astype(np.float32)))
    net.bn.moving_mean.set_data(Tensor(rng.randn(4).astype(np.float32)))
    net.bn.moving_variance.set_data(Tensor(rng.rand(4).astype(np.float32) + 0.5))
    net.set_train(False)
    inputs = {"conv1d": rng.randn(2, 4, 7), "conv2d": rng.randn(2, 4, 5, 6), "conv3d": rng.randn(2, 2, 4, 5, 3),
              "deconv2d": rng.randn(2, 3, 3, 4), "deconv1d": rng.randn(2, 3, 5), "dense": rng.randn(2, 5),
              "embedding": rng.randint(0, 7, (2, 4)), "bn": rng.randn(2, 4, 3, 3), "norm": rng.randn(2, 5)}
    out = {}
    for name, x in inputs.items():
        x = x.astype(np.int32 if name == "embedding" else np.float32)
        out[f"x__{name}"] = x
        out[f"y__{name}"] = getattr(net, name)(Tensor(x)).asnumpy()
    out.update({f"p__{n}": p.asnumpy() for n, p in net.parameters_and_names()})
    np.savez_compressed(os.path.join(FOLDER, "layers.npz"), **out)
    path = os.path.join(FOLDER, "layers.ckpt")
    _remove(path)
    ms.save_checkpoint(net, path)
    os.chmod(path, 0o644)
    print("layers", {n: p.shape for n, p in net.parameters_and_names()})


def batchnorm() -> None:
    """One training step of BatchNorm2d(3) from known moving statistics: pins MindSpore's update rule."""
    rng = np.random.RandomState(12)
    bn = nn.BatchNorm2d(3)
    mean0, var0 = rng.randn(3).astype(np.float32), (rng.rand(3) + 0.5).astype(np.float32)
    bn.moving_mean.set_data(Tensor(mean0))
    bn.moving_variance.set_data(Tensor(var0))
    bn.set_train(True)
    x = rng.randn(4, 3, 2, 3).astype(np.float32)
    y = bn(Tensor(x)).asnumpy()
    np.savez_compressed(os.path.join(FOLDER, "batchnorm.npz"), x=x, y=y, mean0=mean0, var0=var0,
                        mean1=bn.moving_mean.asnumpy(), var1=bn.moving_variance.asnumpy(),
                        momentum=np.float32(bn.momentum), eps=np.float32(bn.eps))
    n = x.size // 3
    batch_var = x.var(axis=(0, 2, 3))
    print("batchnorm: moving_variance", bn.moving_variance.asnumpy(), "biased rule",
          0.9 * var0 + 0.1 * batch_var, "unbiased rule", 0.9 * var0 + 0.1 * batch_var * n / (n - 1))


def main() -> None:
    os.makedirs(FOLDER, exist_ok=True)
    for case in CASES:
        run_case(*case)
    layers()
    batchnorm()


if __name__ == "__main__":
    main()
