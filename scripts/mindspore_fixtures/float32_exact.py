"""Regression fixtures for float32 corner cases: schedule boundaries under jit, hyperparameter arithmetic in
float32, and Adam with amsgrad and nesterov together.

Run from the repository root (see common.py)::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/float32_exact.py

Writes:

* ``tests/fixtures/schedule_boundaries/<schedule>_<i>.npz``: each LearningRateSchedule with seeded random
  arguments, evaluated (0-d int32 ``global_step``, as an optimizer calls it) at the steps around every boundary:
  ``k * decay_steps - 1, k * decay_steps, k * decay_steps + 1`` (stairs, ceilings, the end of a polynomial or
  cosine decay, the end of a warm-up); ``x__steps`` and ``x__values``.
* ``tests/fixtures/float32/<case>.npz``: optimizer trajectories (format of common.py) whose hyperparameters make
  float32 and float64 arithmetic differ (``1 - beta2`` for ``beta2 = 0.9999``, ``beta1`` near 1, large ``eps``,
  ``wd * loss_scale``, schedules past their decay steps), so a port that computes them in float64 drifts away.
  ``config``: ``optimizer`` (the jaxopt_ms factory), ``kwargs``, ``groups`` (parameter names), ``schedule``
  (a ``jaxopt_ms.schedules`` learning rate replacing ``kwargs['learning_rate']``, or null), ``notes``.
"""

from __future__ import annotations

import numpy as np
from common import ms, ms_params, run_optimizer, save_case
from mindspore import Tensor, nn

SEED = 20261201
FAMILY_OUT = "float32"
SHAPES = {"fc.weight": (3, 4), "fc.bias": (3,), "bn1.gamma": (2,), "bn1.beta": (2,)}

# jaxopt_ms schedule name -> MindSpore class.
SCHEDULES = {
    "exponential_decay": nn.ExponentialDecayLR,
    "natural_exp_decay": nn.NaturalExpDecayLR,
    "inverse_decay": nn.InverseDecayLR,
    "cosine_decay": nn.CosineDecayLR,
    "polynomial_decay": nn.PolynomialDecayLR,
    "warmup": nn.WarmUpLR,
}


def _decay_steps(rng) -> int:
    # Mostly steps whose reciprocal is not a float32 number (3, 6, 7, 10, 60, ...): the ratios that XLA's
    # approximate division gets wrong.
    return int(rng.choice([3, 6, 7, 10, 11, 33, 37, 60, 100, 239, int(rng.randint(2, 500))]))


def random_schedule_args(name: str, rng) -> dict:
    f = lambda lo, hi: float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))  # noqa: E731
    steps = _decay_steps(rng)
    if name in ("exponential_decay", "natural_exp_decay", "inverse_decay"):
        rate = f(0.05, 0.99) if name != "inverse_decay" else f(0.05, 5.0)
        return dict(learning_rate=f(1e-3, 1.0), decay_rate=rate, decay_steps=steps, is_stair=bool(rng.rand() < 0.6))
    if name == "cosine_decay":
        low = f(1e-5, 0.05)
        return dict(min_lr=low, max_lr=low + f(1e-3, 1.0), decay_steps=steps)
    if name == "polynomial_decay":
        lr, end = f(1e-3, 1.0), float(rng.choice([0.0, f(1e-4, 0.5)]))
        power = float(np.float32(rng.uniform(0.1, 3.0)))  # non-integer: a negative base would give NaN
        return dict(learning_rate=lr, end_learning_rate=end, decay_steps=steps, power=power,
                    update_decay_steps=bool(rng.rand() < 0.5))
    return dict(learning_rate=f(1e-3, 1.0), warmup_steps=steps)


def boundary_steps(d: int) -> list[int]:
    steps = {0, 1, 2}
    for k in range(1, 6):
        steps |= {k * d - 1, k * d, k * d + 1}
    return sorted(s for s in steps if s >= 0)


# The two examples that gave NaN under jit (polynomial decay, non-integer power, step >= decay_steps).
KNOWN = [("polynomial_decay", dict(learning_rate=0.1, end_learning_rate=0.01, decay_steps=10, power=0.5)),
         ("polynomial_decay", dict(learning_rate=0.01, end_learning_rate=0.05, decay_steps=6, power=1.5))]


def schedule_boundary_cases(per_schedule: int = 6) -> None:
    rng = np.random.RandomState(SEED)
    cases = list(KNOWN)
    for name in SCHEDULES:
        cases += [(name, random_schedule_args(name, rng)) for _ in range(per_schedule)]
    counts: dict[str, int] = {}
    for name, args in cases:
        sched = SCHEDULES[name](**args)
        d = args.get("decay_steps", args.get("warmup_steps"))
        steps = boundary_steps(d)
        values = np.array([sched(Tensor(k, ms.int32)).asnumpy() for k in steps], np.float32)
        i = counts[name] = counts.get(name, -1) + 1
        print(save_case("schedule_boundaries", f"{name}_{i}", {"name": name, "args": args}, {}, [], [],
                        {"steps": np.array(steps, np.int32), "values": values}))


# --------------------------------------------------------------------------------------------------------------
# Optimizer trajectories.

MS_CLASS = {
    "adam": nn.Adam, "lazy_adam": nn.LazyAdam, "adam_offload": nn.AdamOffload,
    "adam_weight_decay": nn.AdamWeightDecay, "ftrl": nn.FTRL, "rmsprop": nn.RMSProp,
    "proximal_adagrad": nn.ProximalAdagrad, "adagrad": nn.Adagrad, "momentum": nn.Momentum, "sgd": nn.SGD,
    "adafactor": nn.AdaFactor, "adadelta": nn.Adadelta, "adamax": nn.AdaMax, "asgd": nn.ASGD, "rprop": nn.Rprop,
}
_TUPLE_ARGS = {"etas", "step_sizes", "eps"}


def groups_for_ms(groups, parameters, schedule):
    if groups is None:
        return parameters
    by_name = {p.name: p for p in parameters}
    out = []
    for g in groups:
        d = {k: (schedule if v == "schedule" else v) for k, v in g.items() if k != "params"}
        d["params"] = [by_name[n] for n in g["params"]]
        out.append(d)
    return out


def trajectory_case(name, optimizer, kwargs, steps=8, groups=None, schedule=None, seed=0, grad_scale=1.0,
                    params0=None, grads=None, notes=""):
    """Runs MindSpore's optimizer class for ``optimizer`` with ``kwargs`` (lists for tuple arguments) and saves
    the trajectory. ``schedule`` = ``(name, args)`` replaces the learning rate; a group's ``'lr': 'schedule'``
    takes it too."""
    rng = np.random.RandomState(seed)
    if params0 is None:
        params0 = {k: rng.randn(*s).astype(np.float32) for k, s in SHAPES.items()}
    if grads is None:
        grads = [{k: (grad_scale * rng.randn(*v.shape)).astype(np.float32) for k, v in params0.items()}
                 for _ in range(steps)]
    parameters = ms_params(params0)
    ms_kwargs = {k: tuple(v) if k in _TUPLE_ARGS and isinstance(v, list) else v for k, v in kwargs.items()}
    ms_sched = None
    if schedule is not None:
        ms_sched = SCHEDULES[schedule[0]](**schedule[1])
        if groups is None or "learning_rate" not in kwargs:
            ms_kwargs["learning_rate"] = ms_sched
    opt = MS_CLASS[optimizer](groups_for_ms(groups, parameters, ms_sched), **ms_kwargs)
    traj = run_optimizer(opt, list(opt._parameters), grads)
    grouped = {n for g in groups for n in g["params"]} if groups else set(params0)
    for step in traj:  # a leaf in no group is not optimized
        step.update({k: v for k, v in params0.items() if k not in grouped})
    config = {"optimizer": optimizer, "kwargs": kwargs, "groups": groups, "notes": notes,
              "schedule": None if schedule is None else {"name": schedule[0], "args": schedule[1]}}
    print(save_case(FAMILY_OUT, name, config, params0, grads, traj))


def ones_case(name, optimizer, kwargs, steps=3, **kw):
    """p0 = 1, g = 1 on a single leaf: the hand-checkable setting of a defect report."""
    p0 = {"w": np.ones((1,), np.float32)}
    trajectory_case(name, optimizer, kwargs, params0=p0, grads=[{"w": np.ones((1,), np.float32)}] * steps, **kw)


def schedule_trajectory_cases() -> None:
    # A schedule past decay_steps with a non-integer power: NaN parameters under jit before the fix.
    trajectory_case("momentum_polynomial_past_end", "momentum", dict(momentum=0.9, loss_scale=4.0), steps=14,
                    schedule=KNOWN[0])
    trajectory_case("sgd_polynomial_update_decay_steps", "sgd", dict(momentum=0.5, weight_decay=0.01), steps=14,
                    schedule=("polynomial_decay", dict(KNOWN[1][1], update_decay_steps=True)))
    # Stairs crossing k * decay_steps with decay_steps = 3 and 6 (1/3, 1/6 are not float32 numbers).
    trajectory_case("adam_exponential_stairs", "adam", dict(beta2=0.99), steps=10,
                    schedule=("exponential_decay", dict(learning_rate=0.1, decay_rate=0.5, decay_steps=3,
                                                        is_stair=True)))
    trajectory_case("rmsprop_natural_exp_stairs", "rmsprop", dict(centered=True, momentum=0.5), steps=13,
                    schedule=("natural_exp_decay", dict(learning_rate=0.05, decay_rate=0.1, decay_steps=6,
                                                        is_stair=True)))


def amsgrad_nesterov_cases() -> None:
    # MindSpore's Adam switches to ApplyAdamWithAmsgradV2 with use_amsgrad, which has no nesterov input.
    trajectory_case("adam_amsgrad_nesterov", "adam", dict(learning_rate=0.05, beta1=0.8, beta2=0.9, eps=0.1,
                                                          use_amsgrad=True, use_nesterov=True), steps=8,
                    notes="use_nesterov is ignored with use_amsgrad (ApplyAdamWithAmsgradV2 has no nesterov)")
    trajectory_case("adam_amsgrad_nesterov_wd_ls", "adam", dict(learning_rate=0.01, beta2=0.9999, use_amsgrad=True,
                                                                use_nesterov=True, weight_decay=0.1,
                                                                loss_scale=16.0), steps=8, grad_scale=16.0,
                    seed=1)


POLY = ("polynomial_decay", dict(learning_rate=0.05, end_learning_rate=0.001, decay_steps=5, power=0.7))
COSINE = ("cosine_decay", dict(min_lr=0.001, max_lr=0.05, decay_steps=5))
REST = ["bn1.gamma", "bn1.beta"]
WEIGHTS = ["fc.weight", "fc.bias"]


def hyperparameter_cases() -> None:
    """Settings where f32(1) - f32(beta) differs from f32(1 - beta): beta2 = 0.9999, beta1 near 1, large eps,
    weight decay with a loss scale, schedules and quantised group learning rates."""
    ls = dict(weight_decay=0.01, loss_scale=8.0)
    ones_case("adam_beta2_9999_ones", "adam", dict(learning_rate=0.1, beta2=0.9999))
    trajectory_case("adam_beta2_9999", "adam", dict(learning_rate=0.01, beta2=0.9999, eps=1e-3, **ls), grad_scale=8.0)
    trajectory_case("adam_beta1_near_one_nesterov", "adam", dict(learning_rate=0.01, beta1=0.99999, beta2=0.5,
                                                                 eps=0.5, use_nesterov=True))
    trajectory_case("adam_amsgrad_beta2_9999", "adam", dict(learning_rate=0.01, beta1=0.999, beta2=0.9999, eps=1e-2,
                                                            use_amsgrad=True))
    trajectory_case("lazy_adam_schedule", "lazy_adam", dict(beta1=0.99, beta2=0.9999, **ls), grad_scale=8.0,
                    schedule=POLY)
    trajectory_case("adam_offload_schedule", "adam_offload", dict(beta2=0.9999, eps=0.1, use_nesterov=True, **ls),
                    grad_scale=8.0, schedule=COSINE)
    trajectory_case("adam_weight_decay_defaults", "adam_weight_decay", dict(), steps=10)
    trajectory_case("adam_weight_decay", "adam_weight_decay", dict(learning_rate=0.01, beta1=0.99999, beta2=0.9999,
                                                                   eps=0.1, weight_decay=0.1))
    trajectory_case("adam_weight_decay_groups", "adam_weight_decay", dict(learning_rate=0.01, beta2=0.9999,
                                                                          weight_decay=0.05),
                    groups=[{"params": WEIGHTS, "lr": "schedule"}, {"params": REST, "lr": 1e-4, "weight_decay": 0.3}],
                    schedule=COSINE)
    trajectory_case("ftrl", "ftrl", dict(initial_accum=0.1, learning_rate=0.1, lr_power=-0.7, l2=0.3, **ls),
                    grad_scale=8.0)
    trajectory_case("rmsprop_centered", "rmsprop", dict(learning_rate=0.01, decay=0.9999, momentum=0.99999,
                                                        epsilon=0.5, centered=True, weight_decay=0.01,
                                                        loss_scale=16.0), grad_scale=16.0)
    trajectory_case("rmsprop", "rmsprop", dict(learning_rate=0.01, decay=0.9999, momentum=0.9), schedule=POLY)
    trajectory_case("proximal_adagrad", "proximal_adagrad", dict(accum=0.1, learning_rate=0.1, l1=0.01, l2=0.3, **ls),
                    grad_scale=8.0)
    trajectory_case("adagrad", "adagrad", dict(accum=0.1, learning_rate=0.1, weight_decay=0.01, loss_scale=1024.0),
                    grad_scale=1024.0)
    trajectory_case("momentum", "momentum", dict(learning_rate=0.1, momentum=0.99999, weight_decay=0.01,
                                                 loss_scale=1024.0), grad_scale=1024.0)
    trajectory_case("sgd_dampening", "sgd", dict(learning_rate=0.1, momentum=0.9, dampening=0.3, **ls),
                    grad_scale=8.0)
    trajectory_case("sgd_nesterov", "sgd", dict(learning_rate=0.1, momentum=0.999, nesterov=True, weight_decay=0.3))
    trajectory_case("adafactor", "adafactor", dict(beta1=0.9999, decay_rate=0.8, weight_decay=0.01))
    trajectory_case("adafactor_fixed_lr", "adafactor", dict(learning_rate=0.05, relative_step=False, beta1=0.99999,
                                                            decay_rate=0.3, eps=[1e-30, 0.3], clip_threshold=0.7))
    trajectory_case("adadelta", "adadelta", dict(learning_rate=1.0, rho=0.9999, epsilon=1e-6, **ls), grad_scale=8.0)
    trajectory_case("adamax", "adamax", dict(learning_rate=0.01, beta1=0.99999, beta2=0.9999, eps=0.5, **ls),
                    grad_scale=8.0)
    trajectory_case("asgd", "asgd", dict(learning_rate=0.1, lambd=1e-4, alpha=0.75, t0=3.0, weight_decay=0.01))
    trajectory_case("asgd_schedule", "asgd", dict(lambd=0.3, alpha=0.6, t0=2.0), schedule=POLY)
    trajectory_case("rprop", "rprop", dict(learning_rate=0.1, etas=[0.3, 1.7], step_sizes=[1e-3, 0.7],
                                           weight_decay=0.01))
    # Large gradients / steps, so that 1 - decay, 1 - beta1 and 1 - dampening reach the trajectory.
    trajectory_case("rmsprop_centered_large_grad", "rmsprop", dict(learning_rate=0.01, decay=0.9999, momentum=0.5,
                                                                   centered=True), grad_scale=300.0)
    trajectory_case("adafactor_beta1_large_lr", "adafactor", dict(learning_rate=100.0, relative_step=False,
                                                                  scale_parameter=False, beta1=0.999))
    # A zero first gradient: MindSpore's first SGD step takes the gradient undamped, so the steps that follow
    # are all (1 - dampening) g (times 1000).
    rng = np.random.RandomState(3)
    p0 = {k: rng.randn(*s).astype(np.float32) for k, s in SHAPES.items()}
    grads = [{k: np.zeros_like(v) for k, v in p0.items()}]
    grads += [{k: rng.randn(*v.shape).astype(np.float32) for k, v in p0.items()} for _ in range(7)]
    trajectory_case("sgd_dampening_near_one", "sgd", dict(learning_rate=1000.0, momentum=0.1, dampening=0.9999),
                    params0=p0, grads=grads)
    trajectory_case("adam_weight_decay_default_betas", "adam_weight_decay", dict(learning_rate=0.1), steps=8)
    trajectory_case("adam_offload_beta2_9999", "adam_offload", dict(beta1=0.99, beta2=0.9999, **ls),
                    grad_scale=8.0, schedule=COSINE)
    trajectory_case("momentum_groups", "momentum", dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01,
                                                        loss_scale=3.0),
                    groups=[{"params": WEIGHTS, "lr": "schedule", "weight_decay": 0.07}, {"params": REST, "lr": 0.03}],
                    schedule=POLY, grad_scale=3.0)


if __name__ == "__main__":
    hyperparameter_cases()
    schedule_boundary_cases()
    schedule_trajectory_cases()
    amsgrad_nesterov_cases()
