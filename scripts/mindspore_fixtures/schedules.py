"""MindSpore's LearningRateSchedule classes, dynamic_lr functions and learning-rate step semantics.

Writes ``tests/fixtures/schedules/*.npz``:

* ``sched_<name>_<i>``: a schedule evaluated at every step 0..STEPS-1 (``x__values``, float32), its arguments in
  ``config['args']``; each schedule is called with a 0-d int32 ``global_step`` as an optimizer does.
* ``dyn_<name>_<i>``: a dynamic_lr list (``x__values``, float64 as MindSpore returns Python floats).
* ``opt_*``: optimizer trajectories using a 1-d learning-rate list (including the call past its end, which
  raises in MindSpore), a schedule, and parameter groups mixing a schedule with a fixed lr; ``x__lr__<k>`` is
  ``opt.get_lr()`` before update ``k``.
"""

from __future__ import annotations

import numpy as np
from common import make_grads, make_params, ms, ms_params, raised, run_optimizer, save_case
from mindspore import Tensor, nn

FAMILY = "schedules"
STEPS = 240
# Small parameters keep the optimizer fixtures small; the shapes still include a 4-D conv weight.
SHAPES = {"conv1.weight": (2, 3, 2, 2), "fc.weight": (3, 4), "fc.bias": (3,), "bn1.gamma": (2,), "bn1.beta": (2,)}

SCHEDULES = {
    "exponential_decay": (nn.ExponentialDecayLR, [
        dict(learning_rate=0.1, decay_rate=0.9, decay_steps=4),
        dict(learning_rate=0.1, decay_rate=0.9, decay_steps=4, is_stair=True),
        dict(learning_rate=0.5, decay_rate=1.5, decay_steps=37),
        dict(learning_rate=2.0, decay_rate=0.05, decay_steps=100, is_stair=True),
    ]),
    "natural_exp_decay": (nn.NaturalExpDecayLR, [
        dict(learning_rate=0.1, decay_rate=0.9, decay_steps=4),
        dict(learning_rate=0.1, decay_rate=0.02, decay_steps=10, is_stair=True),
        dict(learning_rate=1.0, decay_rate=0.01, decay_steps=7),
    ]),
    "inverse_decay": (nn.InverseDecayLR, [
        dict(learning_rate=0.1, decay_rate=0.5, decay_steps=4),
        dict(learning_rate=0.1, decay_rate=0.5, decay_steps=4, is_stair=True),
        dict(learning_rate=3.0, decay_rate=7.5, decay_steps=50),
    ]),
    "cosine_decay": (nn.CosineDecayLR, [
        dict(min_lr=0.01, max_lr=0.1, decay_steps=10),
        dict(min_lr=0.0, max_lr=1.0, decay_steps=150),
        dict(min_lr=1e-5, max_lr=3e-4, decay_steps=239),
    ]),
    "polynomial_decay": (nn.PolynomialDecayLR, [
        dict(learning_rate=0.1, end_learning_rate=0.01, decay_steps=4, power=0.5),
        dict(learning_rate=0.1, end_learning_rate=0.01, decay_steps=4, power=0.5, update_decay_steps=True),
        dict(learning_rate=0.1, end_learning_rate=0.0, decay_steps=100, power=2.0),
        dict(learning_rate=0.1, end_learning_rate=0.3, decay_steps=60, power=1.0, update_decay_steps=True),
        dict(learning_rate=1.0, end_learning_rate=1e-4, decay_steps=33, power=3.7, update_decay_steps=True),
    ]),
    "warmup": (nn.WarmUpLR, [
        dict(learning_rate=0.1, warmup_steps=4),
        dict(learning_rate=0.0, warmup_steps=1),
        dict(learning_rate=0.3, warmup_steps=150),
    ]),
}

DYNAMIC = {
    "piecewise_constant_lr": [
        dict(milestone=[2, 5, 6], learning_rates=[0.1, 0.05, 0.01]),
        dict(milestone=(10, 10, 100, 250), learning_rates=(1.0, 0.5, 0.25, 0.125)),
    ],
    "exponential_decay_lr": [
        dict(learning_rate=0.1, decay_rate=0.9, total_step=240, step_per_epoch=2, decay_epoch=2),
        dict(learning_rate=0.1, decay_rate=0.9, total_step=240, step_per_epoch=2, decay_epoch=2, is_stair=True),
        dict(learning_rate=0.5, decay_rate=1.1, total_step=217, step_per_epoch=7, decay_epoch=3),
    ],
    "natural_exp_decay_lr": [
        dict(learning_rate=0.1, decay_rate=0.9, total_step=240, step_per_epoch=2, decay_epoch=2),
        dict(learning_rate=0.1, decay_rate=0.05, total_step=240, step_per_epoch=3, decay_epoch=4, is_stair=True),
    ],
    "inverse_decay_lr": [
        dict(learning_rate=0.1, decay_rate=0.5, total_step=240, step_per_epoch=2, decay_epoch=2),
        dict(learning_rate=0.1, decay_rate=0.5, total_step=240, step_per_epoch=5, decay_epoch=3, is_stair=True),
    ],
    "cosine_decay_lr": [
        dict(min_lr=0.01, max_lr=0.1, total_step=240, step_per_epoch=2, decay_epoch=2),
        dict(min_lr=0.0, max_lr=0.1, total_step=240, step_per_epoch=10, decay_epoch=15),
    ],
    "polynomial_decay_lr": [
        dict(learning_rate=0.1, end_learning_rate=0.01, total_step=240, step_per_epoch=2, decay_epoch=2, power=0.5),
        dict(learning_rate=0.1, end_learning_rate=0.01, total_step=240, step_per_epoch=2, decay_epoch=2, power=0.5,
             update_decay_epoch=True),
        dict(learning_rate=0.1, end_learning_rate=0.0, total_step=240, step_per_epoch=4, decay_epoch=30, power=2.0),
        dict(learning_rate=0.2, end_learning_rate=0.05, total_step=240, step_per_epoch=3, decay_epoch=7, power=1.5,
             update_decay_epoch=True),
    ],
    "warmup_lr": [
        dict(learning_rate=0.1, total_step=240, step_per_epoch=2, warmup_epoch=2),
        dict(learning_rate=0.3, total_step=240, step_per_epoch=3, warmup_epoch=50),
    ],
}


def schedule_cases() -> None:
    for name, (cls, arg_sets) in SCHEDULES.items():
        for i, args in enumerate(arg_sets):
            sched = cls(**args)
            values = np.array([sched(Tensor(k, ms.int32)).asnumpy() for k in range(STEPS)], np.float32)
            save_case(FAMILY, f"sched_{name}_{i}", {"kind": "schedule", "name": name, "class": cls.__name__,
                                                      "args": args}, {}, [], [], {"values": values})


def dynamic_cases() -> None:
    for name, arg_sets in DYNAMIC.items():
        fn = getattr(nn, name)
        for i, args in enumerate(arg_sets):
            values = fn(**args)
            assert isinstance(values, list)
            config = {"kind": "dynamic_lr", "name": name, "args": {k: list(v) if isinstance(v, tuple) else v
                                                                   for k, v in args.items()}}
            save_case(FAMILY, f"dyn_{name}_{i}", config, {}, [], [], {"values": np.array(values, np.float64)})


def _lrs(opt) -> np.ndarray:
    lr = opt.get_lr()
    if isinstance(lr, (tuple, list)):
        return np.array([float(x.asnumpy().reshape(())) for x in lr], np.float32)
    return np.array([float(lr.asnumpy().reshape(()))], np.float32)


def run_with_lr_log(opt, parameters, grads):
    traj, lrs = [], {}
    for k, g in enumerate(grads):
        lrs[f"lr__{k}"] = _lrs(opt)
        traj.extend(run_optimizer(opt, parameters, [g]))
    return traj, lrs


def optimizer_cases() -> None:
    rng = np.random.RandomState(7)
    p0 = make_params(rng, SHAPES)

    # A 1-d learning-rate list: update k uses lr[k]; the call after the last element raises.
    lr_list = nn.cosine_decay_lr(0.01, 0.1, 6, 2, 2)
    grads = make_grads(rng, p0, 7)
    params = ms_params(p0)
    opt = nn.SGD(params, learning_rate=lr_list, momentum=0.9, weight_decay=0.01)
    traj, lrs = run_with_lr_log(opt, params, grads[:6])
    before = {p.name: p.asnumpy().copy() for p in params}
    try:
        opt(tuple(Tensor(grads[6][p.name]) for p in params))
        past_end = {"raised": None}
    except Exception as e:  # MindSpore: RuntimeError from Gather
        past_end = {"raised": type(e).__name__, "message": str(e).splitlines()[0][:200]}
    unchanged = all(np.array_equal(before[p.name], p.asnumpy()) for p in params)
    save_case(FAMILY, "opt_sgd_lr_list", {
        "kind": "optimizer", "optimizer": "SGD", "args": {"learning_rate": lr_list, "momentum": 0.9,
                                                          "weight_decay": 0.01},
        "past_end": past_end, "past_end_params_unchanged": unchanged,
        "global_step_after": int(opt.global_step.asnumpy().reshape(-1)[0])}, p0, grads[:6], traj, lrs)

    # A schedule past its decay_steps (PolynomialDecayLR clamps at the end value).
    grads = make_grads(rng, p0, 8)
    params = ms_params(p0)
    sched = nn.PolynomialDecayLR(0.1, 0.01, 4, 0.5)
    opt = nn.Momentum(params, learning_rate=sched, momentum=0.9, loss_scale=4.0)
    traj, lrs = run_with_lr_log(opt, params, grads)
    save_case(FAMILY, "opt_momentum_polynomial", {
        "kind": "optimizer", "optimizer": "Momentum",
        "args": {"momentum": 0.9, "loss_scale": 4.0},
        "schedule": {"name": "polynomial_decay", "args": dict(learning_rate=0.1, end_learning_rate=0.01,
                                                              decay_steps=4, power=0.5)}}, p0, grads, traj, lrs)

    # Groups: a schedule in one group and a fixed lr in the other (quantised by (lr + 1) - 1).
    grads = make_grads(rng, p0, 6)
    params = ms_params(p0)
    sched_args = dict(learning_rate=0.1, decay_rate=0.5, decay_steps=2, is_stair=True)
    first = [p for p in params if p.name in ("conv1.weight", "fc.weight")]
    rest = [p for p in params if p.name not in ("conv1.weight", "fc.weight")]
    opt = nn.Adam([{"params": first, "lr": nn.ExponentialDecayLR(**sched_args)}, {"params": rest, "lr": 1e-4}],
                  learning_rate=0.05)
    traj, lrs = run_with_lr_log(opt, params, grads)
    save_case(FAMILY, "opt_adam_groups", {
        "kind": "optimizer", "optimizer": "Adam", "group0": ["conv1.weight", "fc.weight"],
        "schedule": {"name": "exponential_decay", "args": sched_args}, "group1_lr": 1e-4,
        "lr_order": [p.name for p in opt._parameters]}, p0, grads, traj, lrs)


# Invalid arguments: the exception type MindSpore raises for each (our checks must raise the same type).
INVALID = [
    ("ExponentialDecayLR", dict(learning_rate=1, decay_rate=0.9, decay_steps=4)),
    ("ExponentialDecayLR", dict(learning_rate=0.1, decay_rate=0.9, decay_steps=4.0)),
    ("ExponentialDecayLR", dict(learning_rate=0.1, decay_rate=0.0, decay_steps=4)),
    ("ExponentialDecayLR", dict(learning_rate=0.0, decay_rate=0.9, decay_steps=4)),
    ("ExponentialDecayLR", dict(learning_rate=0.1, decay_rate=0.9, decay_steps=0)),
    ("ExponentialDecayLR", dict(learning_rate=0.1, decay_rate=0.9, decay_steps=True)),
    ("ExponentialDecayLR", dict(learning_rate=0.1, decay_rate=0.9, decay_steps=4, is_stair=1)),
    ("NaturalExpDecayLR", dict(learning_rate=0.1, decay_rate=-0.5, decay_steps=4)),
    ("NaturalExpDecayLR", dict(learning_rate=0.1, decay_rate=1, decay_steps=4)),
    ("InverseDecayLR", dict(learning_rate=-0.1, decay_rate=0.5, decay_steps=4)),
    ("InverseDecayLR", dict(learning_rate=0.1, decay_rate=0.5, decay_steps=4, is_stair="yes")),
    ("CosineDecayLR", dict(min_lr=0, max_lr=0.1, decay_steps=10)),
    ("CosineDecayLR", dict(min_lr=0.1, max_lr=0.1, decay_steps=10)),
    ("CosineDecayLR", dict(min_lr=-0.1, max_lr=0.1, decay_steps=10)),
    ("CosineDecayLR", dict(min_lr=0.0, max_lr=1, decay_steps=10)),
    ("CosineDecayLR", dict(min_lr=0.0, max_lr=0.1, decay_steps=0)),
    ("PolynomialDecayLR", dict(learning_rate=0.1, end_learning_rate=0, decay_steps=4, power=0.5)),
    ("PolynomialDecayLR", dict(learning_rate=0.1, end_learning_rate=-0.1, decay_steps=4, power=0.5)),
    ("PolynomialDecayLR", dict(learning_rate=0.1, end_learning_rate=0.0, decay_steps=4, power=1)),
    ("PolynomialDecayLR", dict(learning_rate=0.1, end_learning_rate=0.0, decay_steps=4, power=0.0)),
    ("PolynomialDecayLR", dict(learning_rate=0.1, end_learning_rate=0.0, decay_steps=4, power=1.0,
                               update_decay_steps=0)),
    ("PolynomialDecayLR", dict(learning_rate=1, end_learning_rate=0.0, decay_steps=4, power=1.0)),
    ("WarmUpLR", dict(learning_rate=1, warmup_steps=4)),
    ("WarmUpLR", dict(learning_rate=-0.1, warmup_steps=4)),
    ("WarmUpLR", dict(learning_rate=0.1, warmup_steps=0)),
    ("piecewise_constant_lr", dict(milestone=[3, 2], learning_rates=[0.1, 0.2])),
    ("piecewise_constant_lr", dict(milestone=[2, 3], learning_rates=[1, 0.2])),
    ("piecewise_constant_lr", dict(milestone=[0, 3], learning_rates=[0.1, 0.2])),
    ("piecewise_constant_lr", dict(milestone=[2], learning_rates=[0.1, 0.2])),
    ("piecewise_constant_lr", dict(milestone=[2.0], learning_rates=[0.1])),
    ("piecewise_constant_lr", dict(milestone="2", learning_rates=[0.1])),
    ("exponential_decay_lr", dict(learning_rate=0.1, decay_rate=0.9, total_step=8, step_per_epoch=2,
                                  decay_epoch=0)),
    ("exponential_decay_lr", dict(learning_rate=1, decay_rate=0.9, total_step=8, step_per_epoch=2, decay_epoch=2)),
    ("natural_exp_decay_lr", dict(learning_rate=0.1, decay_rate=0.9, total_step=8, step_per_epoch=2.0,
                                  decay_epoch=2)),
    ("inverse_decay_lr", dict(learning_rate=0.1, decay_rate=0.9, total_step=8, step_per_epoch=2, decay_epoch=2,
                              is_stair=None)),
    ("cosine_decay_lr", dict(min_lr=0.1, max_lr=0.1, total_step=8, step_per_epoch=2, decay_epoch=2)),
    ("cosine_decay_lr", dict(min_lr=0, max_lr=0.1, total_step=8, step_per_epoch=2, decay_epoch=2)),
    ("polynomial_decay_lr", dict(learning_rate=0.1, end_learning_rate=0.0, total_step=8, step_per_epoch=2,
                                 decay_epoch=2, power=2)),
    ("polynomial_decay_lr", dict(learning_rate=0.1, end_learning_rate=-1.0, total_step=8, step_per_epoch=2,
                                 decay_epoch=2, power=2.0)),
    ("polynomial_decay_lr", dict(learning_rate=0.1, end_learning_rate=0.0, total_step=0, step_per_epoch=2,
                                 decay_epoch=2, power=2.0)),
    ("warmup_lr", dict(learning_rate=0, total_step=8, step_per_epoch=2, warmup_epoch=2)),
    ("warmup_lr", dict(learning_rate=0.1, total_step=8, step_per_epoch=2, warmup_epoch=-1)),
]


def invalid_cases() -> None:
    results = []
    for target, args in INVALID:
        results.append({"target": target, "args": args, "error": raised(getattr(nn, target), **args)})
    save_case(FAMILY, "invalid_arguments", {"kind": "invalid", "cases": results}, {}, [], [])


if __name__ == "__main__":
    invalid_cases()
    schedule_cases()
    dynamic_cases()
    optimizer_cases()
