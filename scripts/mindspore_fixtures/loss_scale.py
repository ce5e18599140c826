"""MindSpore's loss-scale update cells and overflow-skipping training steps.

Writes ``tests/fixtures/loss_scale/*.npz``:

* ``scale_<i>``: ``nn.DynamicLossScaleUpdateCell`` called standalone with a given overflow sequence
  (``x__overflow``); ``x__scale`` is the scale after each call, ``x__cur_iter``/``x__last_overflow_iter`` its
  counters at the end. ``amp.DynamicLossScaler`` (integer factors) and ``DynamicLossScaleManager.update_loss_scale``
  are run on the same sequence and stored beside it (``x__scale_amp``, ``x__scale_manager``).
* ``train_*``: ``TrainOneStepWithLossScaleCell``'s step, composed from its MindSpore pieces because the cell itself
  does not run on CPU (``NPUGetFloatStatusV2``): ``g = g_scaled * f32(1/scale)``, ``overflow = not
  amp.all_finite(g)``, ``update_cell(scale, overflow)``, ``if not overflow: optimizer(g)``. ``g__<k>`` are the
  scaled gradients fed (some non-finite), ``p__<k>`` params after each step, ``x__scale``/``x__overflow`` per step.
* ``fixed_no_drop``: ``FixedLossScaleManager(s, drop_overflow_update=False)``: the optimizer, built with
  ``loss_scale=s``, receives the still-scaled gradients (``TrainOneStepCell(sens=s)``), no overflow check.
"""

from __future__ import annotations

import numpy as np
from common import make_grads, make_params, ms, ms_params, raised, save_case
from mindspore import Parameter, Tensor, amp, nn, ops

FAMILY = "loss_scale"
SHAPES = {"conv1.weight": (2, 3, 2, 2), "fc.weight": (3, 4), "fc.bias": (3,), "bn1.gamma": (2,), "bn1.beta": (2,)}


def _pattern(rng, steps, p, forced=()):
    flags = rng.rand(steps) < p
    flags[list(forced)] = True
    return flags


def scale_cases() -> None:
    rng = np.random.RandomState(3)
    cases = [
        dict(init=8.0, factor=2, window=3, overflow=np.array([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0], bool)),
        dict(init=float(2 ** 24), factor=2, window=20, overflow=_pattern(rng, 300, 0.1)),
        dict(init=1.5, factor=2, window=3, overflow=_pattern(rng, 40, 0.6, forced=range(5))),
        dict(init=1000.0, factor=3, window=5, overflow=_pattern(rng, 250, 0.2)),
        dict(init=1024.0, factor=1.5, window=1, overflow=_pattern(rng, 200, 0.3)),
        dict(init=65536.0, factor=2, window=100, overflow=_pattern(rng, 400, 0.02)),
    ]
    for i, c in enumerate(cases):
        cell = nn.DynamicLossScaleUpdateCell(c["init"], c["factor"], c["window"])
        scale = Parameter(Tensor(c["init"], ms.float32), name="scale")
        after = []
        for flag in c["overflow"]:
            cell(scale, Tensor(bool(flag)))
            after.append(scale.asnumpy().item())
        extra = {"overflow": c["overflow"], "scale": np.array(after, np.float32),
                 "cur_iter": cell.cur_iter.asnumpy(), "last_overflow_iter": cell.last_overflow_iter.asnumpy()}
        manager = ms.DynamicLossScaleManager(c["init"], c["factor"], c["window"])
        managed = []
        for flag in c["overflow"]:
            manager.update_loss_scale(bool(flag))
            managed.append(manager.get_loss_scale())
        extra["scale_manager"] = np.array(managed, np.float64)
        if isinstance(c["factor"], int):
            scaler = amp.DynamicLossScaler(c["init"], c["factor"], c["window"])
            scaled = []
            for flag in c["overflow"]:
                scaler.adjust(Tensor(not flag))
                scaled.append(scaler.scale_value.asnumpy().item())
            extra["scale_amp"] = np.array(scaled, np.float32)
        config = {"kind": "scale", "init_loss_scale": c["init"], "scale_factor": c["factor"],
                  "scale_window": c["window"]}
        save_case(FAMILY, f"scale_{i}", config, {}, [], [], extra)


def _scaled_grads(rng, p0, steps, scales_guess, overflow_at):
    grads = make_grads(rng, p0, steps, scale=0.5)
    for k in overflow_at:
        name = list(p0)[k % len(p0)]
        grads[k][name].flat[k % grads[k][name].size] = np.inf if k % 2 else np.nan
    return grads


def train_case(case, optimizer, update_cell, init_scale, p0, raw_grads, params, config):
    """Runs the loss-scaled step; ``raw_grads`` are gradients of ``loss * scale`` *divided* by the scale used."""
    scale = Parameter(Tensor(init_scale, ms.float32), name="scale")
    reciprocal = ops.Reciprocal()
    fed, traj, scales, flags = [], [], [], []
    for g in raw_grads:
        s = scale.asnumpy().item()
        scaled = {k: (v * np.float32(s)).astype(np.float32) for k, v in g.items()}  # what grad(loss * s) returns
        fed.append(scaled)
        grads = tuple(Tensor(scaled[p.name]) * ops.cast(reciprocal(scale), ms.float32) for p in params)
        overflow = not bool(amp.all_finite(grads).asnumpy())
        overflow = bool(update_cell(scale, Tensor(overflow)).asnumpy())
        if not overflow:
            optimizer(grads)
        flags.append(overflow)
        scales.append(s)
        traj.append({p.name: p.asnumpy().copy() for p in params})
    config = dict(config, kind="train", init_loss_scale=init_scale,
                  global_step=int(optimizer.global_step.asnumpy().reshape(-1)[0]))
    save_case(FAMILY, case, config, p0, fed, traj, {"scale_used": np.array(scales, np.float32),
                                                    "overflow": np.array(flags)})


def train_cases() -> None:
    rng = np.random.RandomState(11)
    p0 = make_params(rng, SHAPES)

    raw = _scaled_grads(rng, p0, 14, None, overflow_at=[2, 5, 6, 11])
    params = ms_params(p0)
    opt = nn.Adam(params, learning_rate=0.01, weight_decay=0.01)
    cell = nn.DynamicLossScaleUpdateCell(256.0, 2, 3)
    train_case("train_dynamic_adam", opt, cell, 256.0, p0, raw, params,
               {"optimizer": "Adam", "args": {"learning_rate": 0.01, "weight_decay": 0.01},
                "manager": "dynamic", "scale_factor": 2, "scale_window": 3})

    raw = _scaled_grads(rng, p0, 10, None, overflow_at=[1, 4])
    params = ms_params(p0)
    sched = dict(learning_rate=0.1, decay_rate=0.5, decay_steps=1)
    opt = nn.Momentum(params, learning_rate=nn.ExponentialDecayLR(**sched), momentum=0.9)
    train_case("train_fixed_momentum_schedule", opt, nn.FixedLossScaleUpdateCell(128.0), 128.0, p0, raw, params,
               {"optimizer": "Momentum", "args": {"momentum": 0.9}, "schedule": sched, "manager": "fixed"})

    # drop_overflow_update=False: TrainOneStepCell(sens=s) feeds grad(loss * s) to an optimizer with loss_scale=s.
    raw = make_grads(rng, p0, 6, scale=0.5)
    scaled = [{k: (v * np.float32(128.0)).astype(np.float32) for k, v in g.items()} for g in raw]
    params = ms_params(p0)
    opt = nn.Momentum(params, learning_rate=0.1, momentum=0.9, weight_decay=0.01, loss_scale=128.0)
    traj = []
    for g in scaled:
        opt(tuple(Tensor(g[p.name]) for p in params))
        traj.append({p.name: p.asnumpy().copy() for p in params})
    save_case(FAMILY, "fixed_no_drop", {"kind": "no_drop", "optimizer": "Momentum", "loss_scale": 128.0,
                                        "args": {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.01,
                                                 "loss_scale": 128.0}}, p0, scaled, traj)


def invalid_cases() -> None:
    cases = [
        ("FixedLossScaleManager", dict(loss_scale=0.5)),
        ("FixedLossScaleManager", dict(loss_scale=1)),
        ("FixedLossScaleManager", dict(loss_scale=128.0, drop_overflow_update=1)),
        ("DynamicLossScaleManager", dict(init_loss_scale=0.5)),
        ("DynamicLossScaleManager", dict(init_loss_scale=1)),
        ("DynamicLossScaleManager", dict(scale_window=0)),
        ("DynamicLossScaleManager", dict(scale_window=2.0)),
        ("DynamicLossScaleManager", dict(scale_window=True)),
        ("DynamicLossScaleManager", dict(scale_factor=0)),
        ("DynamicLossScaleManager", dict(scale_factor=-2)),
        ("DynamicLossScaleManager", dict(scale_factor=1.5)),
    ]
    results = []
    for target, args in cases:
        results.append({"target": target, "args": args, "error": raised(getattr(ms, target), **args)})
    save_case(FAMILY, "invalid_arguments", {"kind": "invalid", "cases": results}, {}, [], [])


if __name__ == "__main__":
    invalid_cases()
    scale_cases()
    train_cases()
