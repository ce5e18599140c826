"""MindSpore checkpoints taken mid-training, and the steps MindSpore takes after them.

Run from the repository root (see common.py)::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/checkpoints.py

For each case a small network (``fc1``: Dense(6, 8), tanh, ``fc2``: Dense(8, 3), MSE loss) is trained in MindSpore
for ``K`` steps with a ``TrainOneStepCell``, the cell is saved with ``mindspore.save_checkpoint`` in both formats
(``tests/fixtures/checkpoints/<case>.ckpt`` / ``.safetensors``: parameters and the optimizer's state under
MindSpore's names), then ``K`` more steps are taken; ``<case>.npz`` holds ``config`` (the jaxopt_ms optimizer that
continues the run), the gradients MindSpore computed at each continued step (``g__<k>__<name>``) and the
parameters after it (``p__<k>__<name>``), and the losses of all ``2K`` steps (``x__loss``).

The dynamic-loss-scale case composes ``TrainOneStepWithLossScaleCell``'s step from its MindSpore pieces (the cell
does not run on CPU: ``NPUGetFloatStatusV2``), on the cell's own ``scale_sense`` and ``DynamicLossScaleUpdateCell``,
so its checkpoint has their names; ``g__<k>`` are the scaled gradients fed (one step overflows).

``lamb_init`` / ``lars_init`` are Lamb and LARS checkpoints saved before any step (their kernels do not run on
MindSpore's CPU build): they prove the state names only. ``dtypes.ckpt`` / ``dtypes.safetensors`` hold one tensor
of every dtype MindSpore writes, a 0-d tensor, ``append_dict`` scalars and a str, and a tensor split over several
``value`` entries (MindSpore's slicing threshold lowered from 512 MiB to 1 KiB for the test); ``crc.ckpt`` /
``crc.safetensors`` are saved with ``crc_check=True``.
``saved_hyperparameters.json`` lists, per optimizer, the scalars ``save_checkpoint(train_cell)`` writes besides
parameters and per-parameter state (the hyperparameters a checkpoint can be checked against), and
``momentum_groups_init`` is a Momentum with a group learning rate saved before any step (``python checkpoints.py
hyperparameters`` writes only these two).
``notebook.npz`` is a longer Momentum run (40 steps, checkpoint after 20) with its batches, for the notebook.
"""

from __future__ import annotations

import json
import os

import numpy as np
from common import FIXTURES, groups_for_ms, ms
from mindspore import Parameter, Tensor, amp, nn, ops

FOLDER = os.path.join(FIXTURES, "checkpoints")
K = 3
BATCH = 16


class Net(nn.Cell):
    def __init__(self, weights: dict):
        super().__init__()
        self.fc1 = nn.Dense(6, 8)
        self.fc2 = nn.Dense(8, 3)
        for p in self.trainable_params():
            p.set_data(Tensor(weights[p.name]))

    def construct(self, x):
        return self.fc2(ops.tanh(self.fc1(x)))


def initial_weights(rng) -> dict:
    scales = {"fc1.weight": ((8, 6), 0.5), "fc1.bias": ((8,), 0.1),
              "fc2.weight": ((3, 8), 0.5), "fc2.bias": ((3,), 0.1)}
    return {n: (s * rng.randn(*shape)).astype(np.float32) for n, (shape, s) in scales.items()}


def batches(rng, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    w = rng.randn(6, 3).astype(np.float32)
    out = []
    for _ in range(steps):
        x = rng.randn(BATCH, 6).astype(np.float32)
        out.append((x, (np.sin(x @ w) + 0.1 * rng.randn(BATCH, 3)).astype(np.float32)))
    return out


def save_both(cell, case: str) -> None:
    for fmt in ("ckpt", "safetensors"):
        path = os.path.join(FOLDER, f"{case}.{fmt}")
        if os.path.exists(path):
            os.chmod(path, 0o644)
            os.remove(path)
        ms.save_checkpoint(cell, path, format=fmt)
        os.chmod(path, 0o644)  # MindSpore leaves its files read-only


def scale_sense(loss_scale: dict):
    """``TrainOneStepWithLossScaleCell``'s ``scale_sense``: a ``DynamicLossScaleUpdateCell`` or a fixed Tensor."""
    if "ms" in loss_scale:
        return nn.DynamicLossScaleUpdateCell(**loss_scale["ms"])
    return Tensor(np.float32(loss_scale["fixed"]))


def scaled_step(cell, opt, grads) -> None:
    """``TrainOneStepWithLossScaleCell``'s step on scaled gradients, from its MindSpore pieces (reference §6)."""
    unscaled = tuple(g * Tensor(np.float32(1.0 / cell.scale_sense.asnumpy())) for g in grads)
    overflow = not bool(amp.all_finite(unscaled).asnumpy())
    if cell.loss_scaling_manager is not None:  # a dynamic scale; a fixed one (a Tensor sense) stays
        cell.loss_scaling_manager(cell.scale_sense, Tensor(overflow))
    if not overflow:
        opt(unscaled)


def case(name: str, make_opt, config: dict, groups=None, seed: int = 0, steps: int = K, loss_scale=None) -> None:
    """``make_opt(params)`` -> the MindSpore optimizer; ``config``: the jaxopt_ms side (see the tests)."""
    rng = np.random.RandomState(seed)
    weights = initial_weights(rng)
    data = batches(rng, 2 * steps)
    net = Net(weights)
    loss_net = nn.WithLossCell(net, nn.MSELoss())
    opt = make_opt(net.trainable_params())  # make_opt forms MindSpore's groups itself
    names = [p.name for p in opt._parameters]
    losses, grads_out, params_out = [], [], []
    if loss_scale is None:
        cell = nn.TrainOneStepCell(loss_net, opt)
        grad_fn = ms.value_and_grad(loss_net, None, opt.parameters)
        for k, (x, y) in enumerate(data):
            if k < steps:
                losses.append(float(cell(Tensor(x), Tensor(y)).asnumpy()))
                if k == steps - 1:
                    save_both(cell, name)
                continue
            loss, grads = grad_fn(Tensor(x), Tensor(y))
            opt(grads)
            losses.append(float(loss.asnumpy()))
            grads_out.append({n: g.asnumpy() for n, g in zip(names, grads)})
            params_out.append({p.name: p.asnumpy().copy() for p in net.trainable_params()})
    else:
        cell = nn.TrainOneStepWithLossScaleCell(loss_net, opt, scale_sense=scale_sense(loss_scale))
        scaled = lambda x, y: loss_net(x, y) * cell.scale_sense  # noqa: E731
        grad_fn = ms.value_and_grad(scaled, None, opt.parameters)
        for k, (x, y) in enumerate(data):
            loss, grads = grad_fn(Tensor(x), Tensor(y))
            if k in loss_scale["overflow_at"]:
                grads = tuple(g * Tensor(np.float32(np.inf)) if i == 0 else g for i, g in enumerate(grads))
            scale = cell.scale_sense.asnumpy()
            scaled_step(cell, opt, grads)
            losses.append(float(loss.asnumpy() / scale))
            if k == steps - 1:
                save_both(cell, name)
            if k >= steps:
                grads_out.append({n: g.asnumpy() for n, g in zip(names, grads)})
                params_out.append({p.name: p.asnumpy().copy() for p in net.trainable_params()})
    out = {"config": np.array(json.dumps(dict(config, groups=groups, steps=steps), sort_keys=True)),
           "x__loss": np.array(losses, np.float32)}
    for k, g in enumerate(grads_out):
        out.update({f"g__{k}__{n}": v for n, v in g.items()})
    for k, p in enumerate(params_out):
        out.update({f"p__{k}__{n}": v for n, v in p.items()})
    if name == "notebook":
        for k, (x, y) in enumerate(data):
            out[f"x__x{k}"], out[f"x__y{k}"] = x, y
    np.savez_compressed(os.path.join(FOLDER, f"{name}.npz"), **out)
    print(name, "loss", np.round(losses, 4))


class ConvNet(nn.Cell):
    """conv1 (no bias) -> bn1 (BatchNorm: gamma, beta trainable; moving statistics not) -> relu -> fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, pad_mode="valid", has_bias=False, weight_init="normal")
        self.bn1 = nn.BatchNorm2d(4)
        self.fc = nn.Dense(4 * 4 * 4, 3)

    def construct(self, x):
        return self.fc(ops.relu(self.bn1(self.conv1(x))).reshape(x.shape[0], -1))


def conv_case(name: str = "adam_conv_bn", steps: int = K) -> None:
    """Adam with weight decay (MindSpore's default filter skips ``bn1.gamma`` / ``bn1.beta``) on a conv + BatchNorm
    network; the checkpoint also holds ``bn1.moving_mean`` / ``bn1.moving_variance``, which are not optimized."""
    rng = np.random.RandomState(5)
    ms.set_seed(5)
    net = ConvNet()
    loss_net = nn.WithLossCell(net, nn.MSELoss())
    opt = nn.Adam(net.trainable_params(), 0.01, weight_decay=0.05)
    cell = nn.TrainOneStepCell(loss_net, opt)
    names = [p.name for p in opt._parameters]
    grad_fn = ms.value_and_grad(loss_net, None, opt.parameters)
    out = {}
    for k in range(2 * steps):
        x = rng.randn(BATCH, 1, 6, 6).astype(np.float32)
        y = rng.randn(BATCH, 3).astype(np.float32)
        if k < steps:
            cell(Tensor(x), Tensor(y))
            if k == steps - 1:
                save_both(cell, name)
            continue
        _, grads = grad_fn(Tensor(x), Tensor(y))
        opt(grads)
        out.update({f"g__{k - steps}__{n}": g.asnumpy() for n, g in zip(names, grads)})
        out.update({f"p__{k - steps}__{p.name}": p.asnumpy().copy() for p in net.trainable_params()})
    config = {"optimizer": "adam", "kwargs": {"learning_rate": 0.01, "weight_decay": 0.05}, "steps": steps,
              "shapes": {p.name: list(p.shape) for p in net.trainable_params()}}
    out["config"] = np.array(json.dumps(config, sort_keys=True))
    np.savez_compressed(os.path.join(FOLDER, f"{name}.conv.npz"), **out)
    print(name, sorted(ms.load_checkpoint(os.path.join(FOLDER, f"{name}.ckpt"))))


def init_only(name: str, make_opt) -> None:
    net = Net(initial_weights(np.random.RandomState(0)))
    cell = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), make_opt(net.trainable_params()))
    save_both(cell, name)


def dtypes() -> None:
    import mindspore.train.serialization as serialization
    from mindspore.common import dtype as mstype

    kinds = [mstype.float16, mstype.float32, mstype.float64, mstype.bfloat16, mstype.int8, mstype.int16,
             mstype.int32, mstype.int64, mstype.uint8, mstype.uint16, mstype.uint32, mstype.uint64, mstype.bool_]
    base = np.array([[0, 1, 2], [3, 125, 1]])
    items = [{"name": f"t_{k}", "data": Parameter(Tensor(base, k), name=f"t_{k}")} for k in kinds]
    items.append({"name": "scalar0d", "data": Parameter(Tensor(np.float32(3.5)), name="scalar0d")})
    items.append({"name": "big", "data": Parameter(Tensor(np.arange(900, dtype=np.float32).reshape(300, 3)),
                                                   name="big")})
    saved = serialization.SLICE_SIZE
    serialization.SLICE_SIZE = 1  # KiB: tensors above it are split over several values, as 512 MiB ones are
    try:
        for fmt in ("ckpt", "safetensors"):
            path = os.path.join(FOLDER, f"dtypes.{fmt}")
            if os.path.exists(path):
                os.chmod(path, 0o644)
                os.remove(path)
            extra = {"epoch_num": 3, "loss": 0.25}
            if fmt == "ckpt":
                extra["note"] = "resume here"
            ms.save_checkpoint(items, path, format=fmt, append_dict=extra)
            os.chmod(path, 0o644)
    finally:
        serialization.SLICE_SIZE = saved
    for fmt in ("ckpt", "safetensors"):  # crc_check=True appends / records a crc32 of the contents
        path = os.path.join(FOLDER, f"crc.{fmt}")
        if os.path.exists(path):
            os.chmod(path, 0o644)
            os.remove(path)
        ms.save_checkpoint(items[:3], path, format=fmt, crc_check=True)
        os.chmod(path, 0o644)
    print("dtypes", {k: str(v.dtype) for k, v in ms.load_checkpoint(os.path.join(FOLDER, "dtypes.ckpt")).items()
                     if hasattr(v, "dtype")})


# The optimizers whose saved scalars are recorded, each built with non-default hyperparameters so that a saved
# hyperparameter shows its value.
def _hyper_optimizers() -> dict:
    def groups(p):
        return [{"params": [q for q in p if q.name.startswith("fc1.")], "lr": 0.05},
                {"params": [q for q in p if q.name.startswith("fc2.")]}]
    return {
        "SGD": lambda p: nn.SGD(p, 0.05, momentum=0.7, dampening=0.1, weight_decay=0.01, loss_scale=2.0),
        "Momentum": lambda p: nn.Momentum(p, 0.05, 0.7, weight_decay=0.01, loss_scale=2.0, use_nesterov=True),
        "Momentum(groups)": lambda p: nn.Momentum(groups(p), 0.1, 0.7),
        "Adam": lambda p: nn.Adam(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01, loss_scale=2.0),
        "Adam(lr list)": lambda p: nn.Adam(p, [0.1, 0.05, 0.01]),
        "Adam(schedule)": lambda p: nn.Adam(p, nn.ExponentialDecayLR(0.1, 0.9, 2)),
        "AdamWeightDecay": lambda p: nn.AdamWeightDecay(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-5, weight_decay=0.01),
        "LazyAdam": lambda p: nn.LazyAdam(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
        "AdamOffload": lambda p: nn.AdamOffload(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
        "Lamb": lambda p: nn.Lamb(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-5, weight_decay=0.01),
        "FTRL": lambda p: nn.FTRL(p, initial_accum=0.2, learning_rate=0.05, lr_power=-0.4, l1=0.1, l2=0.2),
        "RMSProp": lambda p: nn.RMSProp(p, 0.05, decay=0.8, momentum=0.3, epsilon=1e-6, centered=True),
        "ProximalAdagrad": lambda p: nn.ProximalAdagrad(p, accum=0.2, learning_rate=0.05, l1=0.1, l2=0.2),
        "Adagrad": lambda p: nn.Adagrad(p, accum=0.2, learning_rate=0.05, weight_decay=0.01),
        "AdaFactor": lambda p: nn.AdaFactor(p, eps=(1e-29, 2e-3), clip_threshold=0.9, decay_rate=0.7, beta1=0.8),
        "AdaFactor(fixed lr)": lambda p: nn.AdaFactor(p, learning_rate=0.05, relative_step=False,
                                                      scale_parameter=False),
        "LARS(Momentum)": lambda p: nn.LARS(nn.Momentum(p, 0.05, 0.7), epsilon=1e-4, coefficient=0.002),
        "Adadelta": lambda p: nn.Adadelta(p, learning_rate=0.05, rho=0.8, epsilon=1e-5),
        "AdaMax": lambda p: nn.AdaMax(p, 0.05, beta1=0.8, beta2=0.99, eps=1e-6),
        "ASGD": lambda p: nn.ASGD(p, learning_rate=0.05, lambd=1e-3, alpha=0.7, t0=100.0),
        "Rprop": lambda p: nn.Rprop(p, learning_rate=0.05, etas=(0.4, 1.3), step_sizes=(1e-5, 40.0)),
    }


def saved_hyperparameters() -> None:
    """``saved_hyperparameters.json``: per optimizer, the entries of ``save_checkpoint(train_cell)`` that are
    neither a network parameter nor per-parameter state (``<prefix><parameter name>``): its saved scalars, with
    dtype, shape and value. These are what ``from_mindspore`` can check against the jaxopt_ms optimizer."""
    import tempfile

    out = {}
    for name, make in _hyper_optimizers().items():
        net = Net(initial_weights(np.random.RandomState(0)))
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), make(net.trainable_params()))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "c.ckpt")
            ms.save_checkpoint(cell, path)
            saved = {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items()}
        params = {p.name for p in net.get_parameters()}
        out[name] = {k: [str(v.dtype), list(v.shape), [float(x) for x in v.reshape(-1)[:8]]]
                     for k, v in saved.items() if k not in params and not any(k.endswith(p) for p in params)}
    path = os.path.join(FOLDER, "saved_hyperparameters.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("saved hyperparameters", json.dumps(out))


def momentum_groups_init() -> None:
    """A Momentum with a group learning rate, saved before any step: ``learning_rate_group_0`` (group 0's own
    rate) and ``learning_rate`` (the default, which group 1 uses)."""
    init_only("momentum_groups_init", lambda p: nn.Momentum(
        [{"params": [q for q in p if q.name.startswith("fc1.")], "lr": 0.05},
         {"params": [q for q in p if q.name.startswith("fc2.")]}], 0.1, 0.9))


def _cases() -> list[tuple]:
    """``(name, make MindSpore optimizer, jaxopt_ms config, extra case() arguments)`` of every resumed run."""
    c = lambda opt, **kw: {"optimizer": opt, "kwargs": kw}  # noqa: E731
    lrs = [0.1, 0.09, 0.08, 0.07, 0.06, 0.05]
    groups = [{"params": ["fc1.weight", "fc1.bias"], "lr": [0.05, 0.04, 0.03, 0.02, 0.01, 0.005],
               "weight_decay": 0.01}, {"params": ["fc2.weight", "fc2.bias"]}]
    scale = {"ms": dict(loss_scale_value=1024.0, scale_factor=2, scale_window=2), "overflow_at": [1, 4]}
    return [
        ("sgd", lambda p: nn.SGD(p, 0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
         c("sgd", learning_rate=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01), {}),
        ("momentum", lambda p: nn.Momentum(p, 0.1, 0.9, weight_decay=0.01),
         c("momentum", learning_rate=0.1, momentum=0.9, weight_decay=0.01), {}),
        ("momentum_lr_list", lambda p: nn.Momentum(p, lrs, 0.9), c("momentum", learning_rate=lrs, momentum=0.9), {}),
        ("adam", lambda p: nn.Adam(p, 0.01, eps=1e-3, weight_decay=0.01),
         c("adam", learning_rate=0.01, eps=1e-3, weight_decay=0.01), {}),
        ("adam_amsgrad", lambda p: nn.Adam(p, 0.01, use_amsgrad=True), c("adam", learning_rate=0.01, use_amsgrad=True),
         {}),
        ("adam_nesterov", lambda p: nn.Adam(p, 0.01, use_nesterov=True, loss_scale=4.0),
         c("adam", learning_rate=0.01, use_nesterov=True, loss_scale=4.0), {}),
        ("adam_schedule", lambda p: nn.Adam(p, nn.ExponentialDecayLR(0.05, 0.7, 2)),
         dict(c("adam"), schedule=["exponential_decay", [0.05, 0.7, 2]]), {}),
        ("adam_groups", lambda p: nn.Adam(groups_for_ms(groups, p), 0.01), c("adam", learning_rate=0.01),
         {"groups": groups}),
        ("lazy_adam", lambda p: nn.LazyAdam(p, 0.01), c("lazy_adam", learning_rate=0.01), {}),
        ("adam_offload", lambda p: nn.AdamOffload(p, 0.01), c("adam_offload", learning_rate=0.01), {}),
        ("adam_weight_decay", lambda p: nn.AdamWeightDecay(p, 0.01, weight_decay=0.01),
         c("adam_weight_decay", learning_rate=0.01, weight_decay=0.01), {}),
        ("ftrl", lambda p: nn.FTRL(p, learning_rate=0.05, l2=0.01), c("ftrl", learning_rate=0.05, l2=0.01), {}),
        ("rmsprop", lambda p: nn.RMSProp(p, 0.01), c("rmsprop", learning_rate=0.01), {}),
        ("rmsprop_centered", lambda p: nn.RMSProp(p, 0.01, momentum=0.5, centered=True),
         c("rmsprop", learning_rate=0.01, momentum=0.5, centered=True), {}),
        ("proximal_adagrad", lambda p: nn.ProximalAdagrad(p, learning_rate=0.05, l2=0.01),
         c("proximal_adagrad", learning_rate=0.05, l2=0.01), {}),
        ("adagrad", lambda p: nn.Adagrad(p, learning_rate=0.05), c("adagrad", learning_rate=0.05), {}),
        ("adafactor", lambda p: nn.AdaFactor(p), c("adafactor"), {}),
        ("adadelta", lambda p: nn.Adadelta(p, learning_rate=0.5), c("adadelta", learning_rate=0.5), {}),
        ("adamax", lambda p: nn.AdaMax(p, 0.01), c("adamax", learning_rate=0.01), {}),
        ("asgd", lambda p: nn.ASGD(p, 0.05, t0=2.0), c("asgd", learning_rate=0.05, t0=2.0), {}),
        ("rprop", lambda p: nn.Rprop(p, 0.01), c("rprop", learning_rate=0.01), {}),
        ("sgd_no_momentum", lambda p: nn.SGD(p, 0.1), c("sgd", learning_rate=0.1), {}),
        ("adafactor_no_beta1", lambda p: nn.AdaFactor(p, beta1=None), c("adafactor", beta1=None), {}),
        ("adafactor_fixed_lr", lambda p: nn.AdaFactor(p, learning_rate=0.01, relative_step=False,
                                                       scale_parameter=False),
         c("adafactor", learning_rate=0.01, relative_step=False, scale_parameter=False), {}),
        ("adam_fixed_loss_scale", lambda p: nn.Adam(p, 0.01),
         dict(c("adam", learning_rate=0.01), fixed_loss_scale=dict(loss_scale=128.0)),
         {"loss_scale": {"fixed": 128.0, "overflow_at": [4]}}),
        ("adam_dynamic_loss_scale", lambda p: nn.Adam(p, 0.01),
         dict(c("adam", learning_rate=0.01), dynamic_loss_scale=dict(init_loss_scale=1024.0, scale_factor=2,
                                                                      scale_window=2)), {"loss_scale": scale}),
    ]


MS_CASES = {name: (make, extra) for name, make, _, extra in _cases()}


def main() -> None:
    os.makedirs(FOLDER, exist_ok=True)
    for name, make, config, extra in _cases():
        case(name, make, config, **extra)
    case("notebook", lambda p: nn.Momentum(p, 0.05, 0.9), {"optimizer": "momentum",
         "kwargs": {"learning_rate": 0.05, "momentum": 0.9}}, seed=1, steps=20)
    conv_case()
    init_only("lamb_init", lambda p: nn.Lamb(p, 0.01))
    init_only("lars_init", lambda p: nn.LARS(nn.Momentum(p, 0.1, 0.9)))
    dtypes()
    hyperparameters()


def hyperparameters() -> None:
    saved_hyperparameters()
    momentum_groups_init()


if __name__ == "__main__":
    import sys

    hyperparameters() if sys.argv[1:] == ["hyperparameters"] else main()
