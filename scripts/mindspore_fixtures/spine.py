"""Golden trajectories for SGD, Momentum, Adam, LazyAdam (dense) and AdamWeightDecay (family ``spine``).

Each case runs a MindSpore 2.10 optimizer on the CPU for ``STEPS`` steps over the default shapes of ``common.py``
(a 4-D conv weight, a dense weight and bias, BatchNorm ``gamma``/``beta``), with random gradients whose scale
changes from step to step (so that AMSGrad's running maximum and momentum buffers matter).

The config of each case is the JAX call: ``optimizer`` (a ``jaxopt_ms`` factory name) and ``args`` (its keyword
arguments). Values JSON cannot hold are tagged dicts that tests/test_spine_cases.py-style builders decode:
``{"schedule": "exponential_decay", ...}`` / ``{"schedule": "polynomial_decay", ...}`` for a learning rate or
weight decay that is a MindSpore ``LearningRateSchedule`` (a JAX callable of the step), ``{"array": [...]}`` for a
0-d or 1-d tensor. Group ``params`` are lists of leaf names. ``reference`` says what produced the trajectory.

Run from the repository root::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/spine.py
"""

from __future__ import annotations

import numpy as np
from common import DEFAULT_SHAPES, Tensor, make_params, ms_params, save_case
from mindspore import nn

FAMILY = "spine"
STEPS = 6
# Per-step gradient scales: moments, AMSGrad's maximum and momentum buffers see changing magnitudes.
STEP_SCALES = (2.0, 0.5, 1.0, 0.2, 1.5, 0.3)


def make_grads(rng: np.random.RandomState, params: dict, scale: float = 1.0) -> list[dict]:
    return [{k: (scale * s * rng.randn(*v.shape)).astype(np.float32) for k, v in params.items()}
            for s in STEP_SCALES[:STEPS]]


def ms_value(spec):
    """The MindSpore object a config value describes (learning rate or weight decay)."""
    if isinstance(spec, dict) and "schedule" in spec:
        if spec["schedule"] == "exponential_decay":
            return nn.ExponentialDecayLR(spec["learning_rate"], spec["decay_rate"], spec["decay_steps"])
        if spec["schedule"] == "polynomial_decay":
            return nn.PolynomialDecayLR(spec["learning_rate"], spec["end_learning_rate"], spec["decay_steps"],
                                        spec["power"])
        raise ValueError(spec)
    if isinstance(spec, dict) and "array" in spec:
        return Tensor(np.asarray(spec["array"], np.float32))
    return spec


MS_CLASSES = {
    "sgd": nn.SGD,
    "momentum": nn.Momentum,
    "adam": nn.Adam,
    "lazy_adam": nn.LazyAdam,
    "adam_weight_decay": nn.AdamWeightDecay,
}


def build_ms(optimizer: str, args: dict, parameters: list):
    by_name = {p.name: p for p in parameters}
    kwargs = {k: ms_value(v) for k, v in args.items() if k != "param_groups"}
    if "param_groups" in args:
        groups = []
        for g in args["param_groups"]:
            if "order_params" in g:
                groups.append({"order_params": [by_name[n] for n in g["order_params"]]})
                continue
            group = {"params": [by_name[n] for n in g["params"]]}
            for key in ("lr", "weight_decay", "grad_centralization"):
                if key in g:
                    group[key] = ms_value(g[key])
            groups.append(group)
        return MS_CLASSES[optimizer](groups, **kwargs)
    return MS_CLASSES[optimizer](parameters, **kwargs)


def run(opt, parameters: list, grads: list[dict]) -> list[dict]:
    """Feeds each step's gradients in the optimizer's own parameter order (groups and order_params reorder);
    parameters outside every group are reported unchanged."""
    traj = []
    for g in grads:
        opt(tuple(Tensor(g[p.name]) for p in opt.parameters))
        traj.append({p.name: p.asnumpy().copy() for p in parameters})
    return traj


def momentum_nesterov_numpy(params0, grads, lr, momentum, weight_decay, loss_scale):
    """Momentum(use_nesterov=True) as documented (and as the GPU kernel computes), float32 throughout."""
    p = {k: v.copy() for k, v in params0.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    wd_s = np.float32(weight_decay * loss_scale)
    inv = np.float32(1.0 / loss_scale)
    lr, mom = np.float32(lr), np.float32(momentum)
    traj = []
    for g in grads:
        for k in p:
            gk = g[k]
            if weight_decay > 0 and "beta" not in k and "gamma" not in k:
                gk = gk + p[k] * wd_s
            if loss_scale != 1.0:
                gk = gk * inv
            v[k] = mom * v[k] + gk
            p[k] = p[k] - (lr * gk + lr * mom * v[k])
        traj.append({k: x.copy() for k, x in p.items()})
    return traj


EXP_WD = {"schedule": "exponential_decay", "learning_rate": 0.1, "decay_rate": 0.5, "decay_steps": 2}
EXP_LR = {"schedule": "exponential_decay", "learning_rate": 0.05, "decay_rate": 0.7, "decay_steps": 2}
POLY_LR = {"schedule": "polynomial_decay", "learning_rate": 0.1, "end_learning_rate": 0.01, "decay_steps": 4,
           "power": 2.0}
LR_LIST = [0.1, 0.05, 0.08, 0.02, 0.04, 0.01]
ADAM_HP = {"beta1": 0.8, "beta2": 0.9, "eps": 0.1}  # optax.adam's form would differ at these settings

CASES = {
    # --- SGD (reference §3.1) ---
    "sgd_plain_dampening_ignored": ("sgd", {"learning_rate": 0.1, "momentum": 0.0, "dampening": 0.3}),
    "sgd_momentum": ("sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    "sgd_dampening": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "dampening": 0.3}),
    "sgd_nesterov": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    "sgd_weight_decay_loss_scale": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "dampening": 0.3,
                                            "weight_decay": 0.1, "loss_scale": 8.0}),
    "sgd_lr_list": ("sgd", {"learning_rate": LR_LIST, "momentum": 0.9, "weight_decay": 0.1}),
    # --- Momentum (reference §3.2) ---
    "momentum_plain": ("momentum", {"learning_rate": 0.1, "momentum": 0.9}),
    "momentum_weight_decay_loss_scale": ("momentum", {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.1,
                                                      "loss_scale": 8.0}),
    "momentum_lr_polynomial": ("momentum", {"learning_rate": POLY_LR, "momentum": 0.9}),
    "momentum_lr_tensor_0d": ("momentum", {"learning_rate": {"array": 0.05}, "momentum": 0.5}),
    # --- Adam (reference §3.3) ---
    "adam_eps_beta2": ("adam", {"learning_rate": 0.01, **ADAM_HP}),
    "adam_nesterov": ("adam", {"learning_rate": 0.01, **ADAM_HP, "use_nesterov": True}),
    "adam_amsgrad": ("adam", {"learning_rate": 0.01, **ADAM_HP, "use_amsgrad": True}),
    "adam_weight_decay_loss_scale": ("adam", {"learning_rate": 0.01, **ADAM_HP, "weight_decay": 0.1,
                                              "loss_scale": 4.0}),
    "adam_dynamic_weight_decay": ("adam", {"learning_rate": 0.01, **ADAM_HP, "weight_decay": EXP_WD,
                                           "loss_scale": 4.0}),
    "adam_lr_exponential": ("adam", {"learning_rate": EXP_LR, **ADAM_HP}),
    "adam_lr_tensor_1d": ("adam", {"learning_rate": {"array": LR_LIST}, **ADAM_HP, "use_nesterov": True}),
    # --- LazyAdam, dense gradients (reference §3.5) ---
    "lazy_adam_dense": ("lazy_adam", {"learning_rate": 0.01, **ADAM_HP, "use_nesterov": True, "weight_decay": 0.1,
                                      "loss_scale": 4.0}),
    # --- AdamWeightDecay (reference §3.4) ---
    "adam_weight_decay_eps_wd": ("adam_weight_decay", {"learning_rate": 0.01, **ADAM_HP, "weight_decay": 0.1}),
    "adam_weight_decay_dynamic_wd": ("adam_weight_decay", {"learning_rate": EXP_LR, "beta2": 0.9, "eps": 1e-3,
                                                           "weight_decay": EXP_WD}),
    # --- parameter groups (reference §2.3, §2.4) ---
    # per-group lr and wd; bn1.* inherit the default wd and, in group mode, decay gamma/beta; fc.bias is in no
    # group (not updated); order_params reverses the order.
    "groups_adam": ("adam", {"learning_rate": 0.01, **ADAM_HP, "weight_decay": 0.05, "loss_scale": 4.0,
                             "param_groups": [
                                 {"params": ["conv1.weight", "fc.weight"], "lr": 0.02, "weight_decay": 0.2},
                                 {"params": ["bn1.gamma", "bn1.beta"]},
                                 {"order_params": ["bn1.beta", "bn1.gamma", "fc.weight", "conv1.weight"]},
                             ]}),
    # a fixed group lr mixed with dynamic ones is quantised as f32(f32(lr + 1) - 1): 1e-4 -> 1.00016594e-4.
    "groups_lr_quantisation": ("momentum", {"learning_rate": LR_LIST, "momentum": 0.9, "param_groups": [
        {"params": ["conv1.weight", "fc.weight"], "lr": 1e-4},
        {"params": ["fc.bias", "bn1.gamma", "bn1.beta"]},
    ]}),
    "groups_sgd_dynamic": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "dampening": 0.3, "param_groups": [
        {"params": ["conv1.weight"], "lr": POLY_LR, "weight_decay": 0.1},
        {"params": ["fc.weight", "fc.bias"], "lr": 0.05},
        {"params": ["bn1.gamma"], "weight_decay": 0.2},
    ]}),
    "groups_adam_weight_decay": ("adam_weight_decay", {"learning_rate": 0.01, **ADAM_HP, "weight_decay": 0.05,
                                                       "param_groups": [
                                                           {"params": ["conv1.weight"], "weight_decay": EXP_WD},
                                                           {"params": ["fc.weight", "fc.bias"], "lr": EXP_LR,
                                                            "weight_decay": 0.0},
                                                           {"params": ["bn1.gamma", "bn1.beta"]},
                                                       ]}),
}
# Gradients this large make the quantisation visible in the parameters at rtol 1e-5.
GRAD_SCALE = {"groups_lr_quantisation": 1e4}

# Momentum's CPU kernel ignores use_nesterov (reference §9.6): these follow the documented formula / GPU kernel,
# computed by MindSpore's nn.SGD(momentum, nesterov=True) -- the same recurrence (accum starts at g = 0*m + g) --
# and cross-checked against a NumPy transcription of ApplyMomentum(use_nesterov=True).
NESTEROV_CASES = {
    "momentum_nesterov": {"learning_rate": 0.1, "momentum": 0.9, "use_nesterov": True},
    "momentum_nesterov_weight_decay_loss_scale": {"learning_rate": 0.1, "momentum": 0.9, "use_nesterov": True,
                                                  "weight_decay": 0.1, "loss_scale": 8.0},
}


def main() -> None:
    for i, (case, (optimizer, args)) in enumerate(sorted(CASES.items())):
        rng = np.random.RandomState(1000 + i)
        params0 = make_params(rng, DEFAULT_SHAPES)
        grads = make_grads(rng, params0, GRAD_SCALE.get(case, 1.0))
        parameters = ms_params(params0)
        opt = build_ms(optimizer, args, parameters)
        traj = run(opt, parameters, grads)
        config = {"optimizer": optimizer, "args": args, "reference": f"mindspore nn.{MS_CLASSES[optimizer].__name__}"}
        print(save_case(FAMILY, case, config, params0, grads, traj))

    for i, (case, args) in enumerate(sorted(NESTEROV_CASES.items())):
        rng = np.random.RandomState(2000 + i)
        params0 = make_params(rng, DEFAULT_SHAPES)
        grads = make_grads(rng, params0)
        parameters = ms_params(params0)
        sgd_args = {k: v for k, v in args.items() if k != "use_nesterov"}
        opt = nn.SGD(parameters, nesterov=True, **sgd_args)
        traj = run(opt, parameters, grads)
        ref = momentum_nesterov_numpy(params0, grads, args["learning_rate"], args["momentum"],
                                      args.get("weight_decay", 0.0), args.get("loss_scale", 1.0))
        for got, want in zip(traj, ref):
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
        config = {"optimizer": "momentum", "args": args,
                  "reference": "documented formula / GPU kernel (MindSpore's CPU ApplyMomentum ignores use_nesterov): "
                               "mindspore nn.SGD(nesterov=True), same recurrence, checked against NumPy"}
        print(save_case(FAMILY, case, config, params0, grads, traj))


if __name__ == "__main__":
    main()
