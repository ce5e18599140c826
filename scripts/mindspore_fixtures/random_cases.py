"""Randomized golden trajectories: many MindSpore 2.10 (CPU) runs with random optimizers, settings and data.

Every case draws, from a seeded generator: an optimizer and a combination of its flags that MindSpore's CPU build
runs, hyperparameters across their valid ranges (biased to discriminating values: large eps, beta2 near 1 or
small, loss scales far from 1, nonzero weight decay), a learning-rate form (float, 0-d and 1-d Tensor, list, a
``dynamic_lr`` list, each ``LearningRateSchedule`` with random arguments), a dynamic weight decay where MindSpore
takes one, 1-3 parameter groups with their own lr / weight_decay / grad_centralization (a leaf may be in no
group), leaf names that exercise the beta/gamma and LARS filters, 1-D to 4-D leaves, gradients that are normal,
huge, tiny or partly exactly zero, and 8-20 steps. MindSpore runs it; ``opt.get_lr()`` is recorded before every
step next to the parameters after it.

Only the ops MindSpore's CPU build lacks are emulated, with MindSpore ops (reference §8, §10): ``Centralization``
(gradient centralization), the ``Lamb`` op (its GPU kernel, reference §3.7) and LARS's ``LARSUpdate`` with the
norms ``SquareSumAll`` computes unreliably on the CPU (reference §3.13); MindSpore's own Python runs around them.
Where the CPU kernel contradicts the documented formula (reference §9; DESIGN: follow the formula), the case
records the documented rule from another MindSpore path (as tests/fixtures/<family> do):

* ``Momentum(use_nesterov=True)``: ``nn.SGD(nesterov=True)``, the same recurrence (CPU ApplyMomentum ignores
  nesterov); so its weight decay is a float (SGD rejects a Cell);
* ``Adagrad(update_slots=False)``: ``ApplyAdagradV2(epsilon=0, update_slots=False)`` after MindSpore's decay and
  loss-scale division (not grouped, fixed lr);
* ``FTRL(l1 > 0)``: ``SparseApplyFtrl`` over every element (the dense CPU kernel's l1 sign bug; not grouped);
* ``RMSProp(centered=False)``: every leaf has fewer than 8 elements, so the CPU kernel runs its scalar tail,
  which computes the documented ``sqrt(ms + eps)`` (its 8-wide AVX chunks put eps outside the root).

Output: one ``.npz`` per optimizer under ``--out`` holding several cases (keys ``<case>/config``, ``<case>/p0__
<leaf>``, and per leaf ``<case>/g__<leaf>`` / ``<case>/p__<leaf>`` stacked over steps, ``<case>/lr`` the
``get_lr()`` values, one column per name of ``config['lr_names']``); tests/parity.py ``load_cases`` reads them.
The replay (tests/test_random_parity.py, tests/fixture_replay.py ``covering_sample``) spells each learning rate of a
case in every JAX form with MindSpore's meaning (a fixed rate: float, 0-d JAX array, 0-d NumPy array, NumPy scalar; a
per-step one: list, tuple, 1-d NumPy or JAX array, schedule over the table) and crosses them with per leaf / fused,
eager / jitted ``update`` / jitted ``init`` and ``update``, plain / ``optax.inject_hyperparams``.
A case's ``config`` is the jaxopt_ms call: ``optimizer``, ``kwargs``, ``groups`` (leaf names), with tagged values
``{"schedule": name, ...}`` (``jaxopt_ms.schedules``), ``{"dynamic_lr": name, ...}`` (``jaxopt_ms.dynamic_lr``),
``{"array": x}`` (a Tensor), ``{"optimizer": ...}`` (LARS's wrapped optimizer). Run from the repository root::

    /path/to/mindspore/python scripts/mindspore_fixtures/random_cases.py --seed 16 --per-optimizer 16 \
        --out tests/fixtures/random
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mindspore.nn.optim.lamb as ms_lamb  # noqa: E402
import mindspore.nn.optim.optimizer as ms_optimizer  # noqa: E402
from common import Parameter, Tensor  # noqa: E402  (sets MindSpore's context)
from family import preprocess  # noqa: E402
from mindspore import nn, ops  # noqa: E402
from mindspore.common import dtype as mstype  # noqa: E402
from mindspore.ops import composite as C  # noqa: E402

f32 = np.float32

# ---------------------------------------------------------------------------------------------------------------
# Emulations of the ops the CPU build lacks (MindSpore ops; MindSpore's Python around them is unchanged).


class _Centralization(nn.Cell):
    """``inner.Centralization`` (Ascend-only): ``g - mean(g, axes)`` (reference §2.5)."""

    def construct(self, gradient, axis):
        return gradient - ops.mean(gradient, axis, keep_dims=True)


class _LambKernel(nn.Cell):
    """The ``Lamb`` op's GPU kernel (reference §3.7): Adam moments, ``pow(beta, t)`` bias correction, eps outside
    the root for the update and inside it for the trust ratio, trust ratio ``||p|| / ||ghat||`` (1 when a norm is
    0) clipped to [0, 10]."""

    def construct(self, param, m, v, lr, beta1, beta2, eps, weight_decay, global_step, gradient):
        t = ops.cast(global_step, mstype.float32)
        one = ops.ones((), mstype.float32)
        m_new = beta1 * m + (one - beta1) * gradient
        v_new = beta2 * v + (one - beta2) * gradient * gradient
        mh = m_new / (one - ops.pow(beta1, t))
        vh = v_new / (one - ops.pow(beta2, t))
        r = mh / (ops.sqrt(vh) + eps) + weight_decay * param
        ghat = mh / ops.sqrt(vh + eps) + weight_decay * param
        p_norm = ops.sqrt(ops.reduce_sum(param * param))
        g_norm = ops.sqrt(ops.reduce_sum(ghat * ghat))
        ratio = ops.select(g_norm > 0, p_norm / ops.select(g_norm > 0, g_norm, one), one)
        ratio = ops.select(p_norm > 0, ratio, one)
        ratio = ops.clip_by_value(ratio, 0.0, 10.0)
        new_param = param - ratio * lr * r
        ops.assign(m, m_new)
        ops.assign(v, v_new)
        ops.assign(param, new_param)
        return new_param


_LAMB = _LambKernel()
_lamb_emulated = C.MultitypeFuncGraph("lamb_emulated")


@_lamb_emulated.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                         "Tensor", "Bool", "Bool")
def _lamb_update(beta1, beta2, eps, global_step, lr, weight_decay, param, m, v, gradient, decay_flag, optim_filter):
    """``nn.optim.lamb._update_run_op`` with the emulated kernel."""
    if optim_filter:
        if decay_flag:
            return _LAMB(param, m, v, lr, beta1, beta2, eps, weight_decay, global_step, gradient)
        return _LAMB(param, m, v, lr, beta1, beta2, eps, 0.0, global_step, gradient)
    return gradient


ms_optimizer.op_gc = _Centralization()
ms_lamb._lamb_opt = _lamb_emulated


def lars_step(lars, grads: tuple, epsilon: float, coefficient: float) -> None:
    """``nn.LARS.construct`` run op by op, with ``SquareSumAll`` and ``LARSUpdate`` (Ascend ``lars_v2_update``,
    reference §3.13) written with MindSpore ops: ``trust = c ||w|| / (||g|| + wd ||w|| + eps)`` (``use_clip``:
    ``clip(trust / lr, 0, 1)``), ``g <- trust (g + wd w)`` on the leaves ``lars_filter`` selects."""
    lr = lars._get_lr() if lars.use_clip else None
    weight_decay = lars.get_weight_decay()
    if lars.need_scale:
        grads = tuple(g * Tensor(f32(lars.reciprocal_scale)) for g in grads)
    out = []
    for i, (p, g) in enumerate(zip(lars.parameters, grads)):
        if lars.lars_flag[i]:
            wd = weight_decay[i] if isinstance(weight_decay, tuple) else weight_decay
            wd = Tensor(f32(wd / lars.loss_scale if lars.decay_flags[i] else 0.0))
            w_norm = ops.sqrt(ops.reduce_sum(p * p))
            g_norm = ops.sqrt(ops.reduce_sum(g * g))
            trust = Tensor(f32(coefficient)) * w_norm / (g_norm + wd * w_norm + Tensor(f32(epsilon)))
            if lars.use_clip:
                lr_i = lr[i] if isinstance(lr, tuple) else lr
                trust = ops.clip_by_value(trust / lr_i.reshape(()), 0.0, 1.0)
            g = trust * (g + wd * p)
        out.append(g)
    lars.opt(tuple(out))


# ---------------------------------------------------------------------------------------------------------------
# Random draws.

OPTIMIZERS = ("sgd", "momentum", "adam", "lazy_adam", "adam_offload", "adam_weight_decay", "lamb", "ftrl", "rmsprop",
              "proximal_adagrad", "adagrad", "adafactor", "lars", "adadelta", "adamax", "asgd", "rprop")
# Names: MindSpore's default weight-decay filter skips names containing 'beta' or 'gamma' (substrings, so
# 'alphabeta.w' and 'gammas.kernel' too); LARS skips names containing 'LayerNorm' or 'bias'.
NAMES = ("conv1.weight", "fc.weight", "fc.bias", "bn1.gamma", "bn1.beta", "alphabeta.w", "gammas.kernel",
         "encoder.LayerNorm.weight", "head.kernel", "emb.table")
LOSS_SCALED = {"sgd", "momentum", "adam", "lazy_adam", "adam_offload", "ftrl", "rmsprop", "proximal_adagrad",
               "adagrad", "adafactor", "adadelta", "adamax"}
SCHEDULES = {"exponential_decay": "ExponentialDecayLR", "natural_exp_decay": "NaturalExpDecayLR",
             "inverse_decay": "InverseDecayLR", "cosine_decay": "CosineDecayLR",
             "polynomial_decay": "PolynomialDecayLR", "warmup": "WarmUpLR"}
DYNAMIC_LR = ("piecewise_constant_lr", "exponential_decay_lr", "natural_exp_decay_lr", "inverse_decay_lr",
              "cosine_decay_lr", "polynomial_decay_lr", "warmup_lr")
LR_RANGE = {"sgd": (1e-3, 0.3), "momentum": (1e-3, 0.2), "adam": (1e-3, 0.1), "lazy_adam": (1e-3, 0.1),
            "adam_offload": (1e-3, 0.1), "adam_weight_decay": (1e-3, 0.1), "lamb": (1e-3, 0.1), "ftrl": (0.01, 0.5),
            "rmsprop": (1e-3, 0.1), "proximal_adagrad": (0.01, 0.5), "adagrad": (0.01, 0.5),
            "adafactor": (1e-3, 0.1), "lars": (1e-2, 0.5), "adadelta": (0.1, 2.0), "adamax": (1e-3, 0.1),
            "asgd": (1e-3, 0.2), "rprop": (1e-3, 0.1)}


def log_uniform(rng, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_beta(rng) -> float:
    """A beta in (0, 1): near 1 (0.9999, 0.99999), usual, or small."""
    kind = rng.integers(4)
    if kind == 0:
        return float(rng.choice([0.9999, 0.99999, 0.999, 0.9995]))
    if kind == 1:
        return float(rng.choice([0.9, 0.99, 0.95]))
    return round(float(rng.uniform(0.05, 0.9)), 4)


def draw_eps(rng) -> float:
    return float(rng.choice([1e-8, 1e-6, 1e-3, 0.1, 0.5, log_uniform(rng, 1e-8, 1.0)]))


def draw_schedule(rng, lr: float, steps: int) -> dict:
    name = str(rng.choice(list(SCHEDULES)))
    ds = int(rng.integers(1, steps + 4))
    if name == "cosine_decay":
        return {"schedule": name, "min_lr": float(rng.choice([0.0, lr * rng.uniform(0.01, 0.5)])), "max_lr": lr,
                "decay_steps": ds}
    if name == "polynomial_decay":
        return {"schedule": name, "learning_rate": lr, "end_learning_rate": float(lr * rng.uniform(0.0, 1.3)),
                "decay_steps": ds, "power": float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.7, rng.uniform(0.2, 4.0)])),
                "update_decay_steps": bool(rng.integers(2))}
    if name == "warmup":
        return {"schedule": name, "learning_rate": lr, "warmup_steps": ds}
    rate = {"exponential_decay": (0.3, 1.5), "natural_exp_decay": (0.01, 0.3), "inverse_decay": (0.1, 3.0)}[name]
    return {"schedule": name, "learning_rate": lr, "decay_rate": float(rng.uniform(*rate)), "decay_steps": ds,
            "is_stair": bool(rng.integers(2))}


def draw_dynamic_lr(rng, lr: float, steps: int) -> dict:
    name = str(rng.choice(DYNAMIC_LR))
    spe, epochs = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    base = {"dynamic_lr": name, "total_step": steps, "step_per_epoch": spe}
    if name == "piecewise_constant_lr":
        cuts = sorted(int(c) for c in rng.integers(1, steps, size=int(rng.integers(1, 4))))
        milestone = sorted(set(cuts)) + [steps]
        return {"dynamic_lr": name, "milestone": milestone,
                "learning_rates": [float(lr * rng.uniform(0.1, 1.0)) for _ in milestone]}
    if name == "cosine_decay_lr":
        return {**base, "min_lr": float(lr * rng.uniform(0.01, 0.5)), "max_lr": lr, "decay_epoch": epochs}
    if name == "polynomial_decay_lr":
        return {**base, "learning_rate": lr, "end_learning_rate": float(lr * rng.uniform(0.0, 1.3)),
                "decay_epoch": epochs, "power": float(rng.choice([0.5, 2.0, rng.uniform(0.2, 4.0)])),
                "update_decay_epoch": bool(rng.integers(2))}
    if name == "warmup_lr":
        return {**base, "learning_rate": lr, "warmup_epoch": epochs}
    rate = {"exponential_decay_lr": (0.3, 1.5), "natural_exp_decay_lr": (0.01, 0.3),
            "inverse_decay_lr": (0.1, 3.0)}[name]
    return {**base, "learning_rate": lr, "decay_rate": float(rng.uniform(*rate)), "decay_epoch": epochs,
            "is_stair": bool(rng.integers(2))}


def draw_lr(rng, optimizer: str, steps: int, forms: tuple = ("float", "0d", "1d", "list", "schedule", "dynamic")):
    lr = log_uniform(rng, *LR_RANGE[optimizer])
    form = str(rng.choice(forms))
    if form == "float":
        return lr
    if form == "0d":
        return {"array": lr}
    if form in ("1d", "list"):
        values = [float(lr * rng.uniform(0.2, 1.0)) for _ in range(steps)]
        return {"array": values} if form == "1d" else values
    if form == "schedule":
        return draw_schedule(rng, lr, steps)
    return draw_dynamic_lr(rng, lr, steps)


def draw_weight_decay(rng, dynamic: bool, steps: int):
    kind = rng.integers(4 if dynamic else 3)
    if kind == 0:
        return 0.0
    if kind == 3:
        return draw_schedule(rng, log_uniform(rng, 1e-3, 0.1), steps)
    return float(rng.choice([log_uniform(rng, 1e-4, 0.1), 0.5]))


# Leaf shapes come from a few fixed models (1-D to 4-D; shape[1] == 16 where gradient centralization applies),
# with random names: replaying hundreds of cases then reuses the same compiled element-wise kernels, per leaf and
# fused (a fused buffer's size is a sum over a model's leaves).
MODELS = (
    ((3, 16), (5,), (2, 1, 1, 3)),
    ((2, 16, 1), (12,), (1,)),
    ((1, 16, 1, 2), (2, 3), (3, 2, 2), (5,)),
    ((3, 16), (2, 16, 1)),
    ((12,), (2, 3), (1, 16, 1, 2)),
    ((2, 1, 1, 3), (3, 2, 2)),
)
SMALL_MODELS = (((5,), (2, 3)), ((1, 2, 3), (2, 1, 1, 3), (1,)))  # every leaf under 8 elements


def draw_shapes(rng, small: bool = False) -> dict:
    """A model's leaf shapes under random names from ``NAMES``."""
    models = SMALL_MODELS if small else MODELS
    shapes = models[int(rng.integers(len(models)))]
    names = rng.choice(NAMES, size=len(shapes), replace=False)
    return {str(n): tuple(s) for n, s in zip(names, shapes)}


def draw_data(rng, shapes: dict, steps: int, loss_scale: float):
    """Initial parameters and per-step gradients: each leaf normal, huge, tiny or partly exactly zero, with
    per-step scale changes; multiplied by the loss scale (the optimizer divides by it)."""
    p_scale = float(rng.choice([0.1, 1.0, 3.0]))
    params0 = {k: (p_scale * rng.standard_normal(s)).astype(f32) for k, s in shapes.items()}
    regimes = {k: str(rng.choice(["normal", "huge", "tiny", "zeros"])) for k in shapes}
    base = {"normal": 1.0, "huge": float(rng.choice([1e3, 1e4, 1e5])), "tiny": float(rng.choice([1e-5, 1e-7])),
            "zeros": 1.0}
    grads = []
    for _ in range(steps):
        step_scale = float(rng.choice([0.2, 0.5, 1.0, 2.0, 3.0]))
        g = {}
        for k, s in shapes.items():
            x = base[regimes[k]] * step_scale * rng.standard_normal(s)
            if regimes[k] == "zeros":
                x = np.where(rng.uniform(size=s) < 0.4, 0.0, x)
            g[k] = (x * loss_scale).astype(f32)
        grads.append(g)
    return params0, grads, regimes


def draw_groups(rng, optimizer: str, names: list, steps: int, lr_ok: bool, gc_ok: bool, dyn_wd: bool):
    if rng.integers(2) == 0 or len(names) < 2:
        return None
    names = list(names)
    rng.shuffle(names)
    if len(names) > 2 and rng.integers(5) == 0:  # a leaf in no group is not updated
        names = names[1:]
    count = int(rng.integers(1, min(3, len(names)) + 1))
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, len(names)), size=count - 1, replace=False))
    groups = []
    for part in np.split(np.array(names), cuts):
        group = {"params": sorted(str(x) for x in part)}
        if lr_ok and rng.integers(3) == 0:
            group["lr"] = draw_lr(rng, optimizer, steps)
        if rng.integers(2):
            group["weight_decay"] = draw_weight_decay(rng, dyn_wd, steps)
        if gc_ok and rng.integers(2):
            group["grad_centralization"] = True
        groups.append(group)
    return groups


def draw_case(rng, optimizer: str, steps: int | None = None) -> dict:
    """One case: ``optimizer``, ``kwargs``, ``groups`` (the jaxopt_ms call), ``source`` and the MindSpore call;
    8-20 steps unless ``steps`` is given."""
    drawn = int(rng.integers(8, 21))
    steps = steps or drawn
    shapes = draw_shapes(rng)
    loss_scale = 1.0
    if optimizer in LOSS_SCALED and rng.integers(3):
        loss_scale = float(rng.choice([2.0 ** int(rng.integers(1, 13)), 0.37, 3.7, 1000.0, 0.125]))
    kw: dict = {"learning_rate": draw_lr(rng, optimizer, steps)}
    if loss_scale != 1.0:
        kw["loss_scale"] = loss_scale
    dyn_wd, lr_ok, gc_ok, groups_ok = True, True, True, True
    source = "mindspore"
    ms_call = None
    if optimizer == "sgd":
        mom = float(rng.choice([0.0, 0.9, rng.uniform(0.1, 0.99)]))
        kw.update(momentum=mom, dampening=float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.9)])),
                  nesterov=bool(mom > 0 and rng.integers(2)))
        if kw["nesterov"]:
            kw["dampening"] = 0.0
        dyn_wd = False  # SGD rejects a Cell weight decay
    elif optimizer == "momentum":
        kw.update(momentum=float(rng.choice([0.9, rng.uniform(0.0, 0.99)])), use_nesterov=bool(rng.integers(2)))
        if kw["use_nesterov"]:  # CPU ApplyMomentum ignores nesterov: nn.SGD(nesterov=True) computes the formula
            dyn_wd, source = False, "mindspore nn.SGD(nesterov=True): documented Momentum nesterov rule"
            ms_call = "sgd_nesterov"
    elif optimizer in ("adam", "lazy_adam", "adam_offload", "adam_weight_decay", "lamb", "adamax"):
        kw.update(beta1=draw_beta(rng), beta2=draw_beta(rng), eps=draw_eps(rng))
        if optimizer in ("adam", "lazy_adam", "adam_offload"):
            kw["use_nesterov"] = bool(rng.integers(2))
        if optimizer == "adam":
            flag = str(rng.choice(["none", "amsgrad", "lazy", "offload"]))
            if flag != "none":
                kw[f"use_{flag}"] = True
        if optimizer == "lazy_adam":
            dyn_wd = False  # LazyAdam rejects a Cell weight decay
        if optimizer == "adam_offload" or kw.get("use_offload"):
            gc_ok = False  # MindSpore's AdamOffload has no gradient centralization
    elif optimizer == "ftrl":
        kw = {"learning_rate": log_uniform(rng, *LR_RANGE["ftrl"]), **({"loss_scale": loss_scale}
                                                                       if loss_scale != 1.0 else {}),
              "initial_accum": float(rng.choice([0.1, rng.uniform(0.01, 1.0)])),
              "lr_power": float(rng.choice([-0.5, 0.0, rng.uniform(-1.0, 0.0)])),
              "l1": float(rng.choice([0.0, rng.uniform(0.01, 0.5)])), "l2": float(rng.choice([0.0,
                                                                                            rng.uniform(0.0, 0.2)]))}
        lr_ok = False  # FTRL takes a fixed float lr only
        if kw["l1"] > 0:  # dense CPU kernel: +l1 for every lin; SparseApplyFtrl computes sign(lin) * l1
            groups_ok, dyn_wd, source = False, False, "mindspore-op SparseApplyFtrl: documented FTRL l1 rule"
            ms_call = "ftrl_sparse"
    elif optimizer == "rmsprop":
        kw.update(decay=float(rng.choice([0.9, 0.99, rng.uniform(0.1, 0.999)])),
                  momentum=float(rng.choice([0.0, rng.uniform(0.0, 0.95)])), epsilon=draw_eps(rng),
                  centered=bool(rng.integers(2)))
        if not kw["centered"]:  # CPU AVX chunks put eps outside the root; leaves under 8 elements use the tail
            shapes = draw_shapes(rng, small=True)
            source = "mindspore (leaves < 8 elements: the CPU kernel's scalar path, documented eps placement)"
    elif optimizer == "proximal_adagrad":
        kw.update(accum=float(rng.choice([0.1, rng.uniform(0.01, 1.0)])), l1=float(rng.choice([0.0, rng.uniform(
            0.0, 0.1)])), l2=float(rng.choice([0.0, rng.uniform(0.0, 0.1)])))
    elif optimizer == "adagrad":
        kw.update(accum=float(rng.choice([0.1, rng.uniform(0.01, 1.0)])), update_slots=bool(rng.integers(3) > 0))
        if not kw["update_slots"]:  # the CPU kernel ignores update_slots=False: ApplyAdagradV2 computes it
            kw["learning_rate"] = log_uniform(rng, *LR_RANGE["adagrad"])
            groups_ok, dyn_wd = False, False
            source, ms_call = "mindspore-op ApplyAdagradV2(epsilon=0, update_slots=False)", "adagrad_no_slots"
    elif optimizer == "adafactor":
        relative = bool(rng.integers(2))
        kw = {"eps": [float(rng.choice([1e-30, 1e-10, 1e-3])), float(rng.choice([1e-3, 0.05, 0.5]))],
              "clip_threshold": float(rng.choice([1.0, rng.uniform(0.1, 2.0)])),
              "decay_rate": float(rng.uniform(0.3, 0.95)), "beta1": float(rng.choice([0.9, 0.0, rng.uniform(0.1,
                                                                                                       0.95)])),
              "weight_decay": float(rng.choice([0.0, rng.uniform(0.0, 0.3)])),
              "scale_parameter": bool(rng.integers(2)), "relative_step": relative,
              "warmup_init": bool(relative and rng.integers(2)), "compression": bool(rng.integers(2))}
        if loss_scale != 1.0:
            kw["loss_scale"] = loss_scale  # MindSpore's AdaFactor ignores it
        if not relative:
            kw["learning_rate"] = draw_lr(rng, optimizer, steps, forms=("float",))
        lr_ok, dyn_wd = False, False  # AdaFactor ignores a group's lr and weight decay; wd is a float
    elif optimizer == "lars":
        inner_name = str(rng.choice(["momentum", "sgd"]))
        inner_kw = {"learning_rate": draw_lr(rng, "lars", steps), "momentum": float(rng.uniform(0.5, 0.95)),
                    "weight_decay": float(rng.choice([0.0, log_uniform(rng, 1e-4, 0.05)]))}
        if loss_scale != 1.0 or rng.integers(2):
            inner_kw["loss_scale"] = float(rng.choice([8.0, 1024.0, 3.7]))
        use_clip = bool(rng.integers(2))
        names = list(shapes)
        inner_groups = draw_groups(rng, "lars", names, steps, lr_ok=not (use_clip and _dynamic(inner_kw)),
                                   gc_ok=True, dyn_wd=False)
        if use_clip and inner_groups and any("lr" in g for g in inner_groups) and (
                _dynamic(inner_kw) or any(_dynamic(g) for g in inner_groups)):
            use_clip = False  # MindSpore: use_clip with group and dynamic lr is a ValueError
        kw = {"optimizer": {"optimizer": inner_name, "kwargs": inner_kw, "groups": inner_groups},
              "epsilon": float(rng.choice([1e-5, 1e-8, 0.1])), "coefficient": float(rng.choice([1e-3, 0.02, 0.5])),
              "use_clip": use_clip}
        groups_ok = False
        source = "mindspore nn.LARS with LARSUpdate/SquareSumAll emulated (MindSpore ops)"
    elif optimizer == "adadelta":
        kw.update(rho=float(rng.choice([0.9, 0.99, rng.uniform(0.0, 1.0)])), epsilon=draw_eps(rng))
    elif optimizer == "asgd":
        kw.update(lambd=log_uniform(rng, 1e-4, 0.1), alpha=float(rng.uniform(0.2, 1.0)),
                  t0=float(rng.choice([1.0, float(rng.integers(2, 15)), 1e6])))
    elif optimizer == "rprop":
        lo = log_uniform(rng, 1e-6, 1e-2)
        kw.update(etas=[float(rng.uniform(0.1, 0.9)), float(rng.uniform(1.05, 2.0))],
                  step_sizes=[lo, float(lo * rng.choice([10.0, 1e3, 1e6]))])
    if optimizer not in ("adafactor", "lars"):
        kw["weight_decay"] = draw_weight_decay(rng, dyn_wd, steps)
    if optimizer == "adafactor" and not kw["weight_decay"]:
        kw.pop("weight_decay")
    groups = None
    if groups_ok:
        groups = draw_groups(rng, optimizer, list(shapes), steps, lr_ok=lr_ok, gc_ok=gc_ok, dyn_wd=dyn_wd)
    return {"optimizer": optimizer, "kwargs": kw, "groups": groups, "source": source, "ms_call": ms_call,
            "steps": steps, "shapes": {k: list(v) for k, v in shapes.items()}, "loss_scale": loss_scale}


def _dynamic(spec) -> bool:
    lr = spec.get("learning_rate", spec.get("lr")) if isinstance(spec, dict) else None
    return isinstance(lr, list) or (isinstance(lr, dict) and ("schedule" in lr or "dynamic_lr" in lr or (
        "array" in lr and isinstance(lr["array"], list))))


# ---------------------------------------------------------------------------------------------------------------
# Building and running MindSpore.

MS_CLASSES = {"sgd": nn.SGD, "momentum": nn.Momentum, "adam": nn.Adam, "lazy_adam": nn.LazyAdam,
              "adam_offload": nn.AdamOffload, "adam_weight_decay": nn.AdamWeightDecay, "lamb": nn.Lamb,
              "ftrl": nn.FTRL, "rmsprop": nn.RMSProp, "proximal_adagrad": nn.ProximalAdagrad, "adagrad": nn.Adagrad,
              "adafactor": nn.AdaFactor, "adadelta": nn.Adadelta, "adamax": nn.AdaMax, "asgd": nn.ASGD,
              "rprop": nn.Rprop}
_TUPLES = {"etas", "step_sizes", "eps"}


def ms_value(spec):
    """The MindSpore object a tagged config value describes."""
    if isinstance(spec, dict) and "schedule" in spec:
        return getattr(nn, SCHEDULES[spec["schedule"]])(**{k: v for k, v in spec.items() if k != "schedule"})
    if isinstance(spec, dict) and "dynamic_lr" in spec:
        return getattr(nn, spec["dynamic_lr"])(**{k: v for k, v in spec.items() if k != "dynamic_lr"})
    if isinstance(spec, dict) and "array" in spec:
        return Tensor(np.asarray(spec["array"], f32))
    return spec


def ms_optimizer_of(optimizer: str, kwargs: dict, groups, parameters: list, cls=None):
    by_name = {p.name: p for p in parameters}
    kw = {k: (tuple(v) if k in _TUPLES and isinstance(v, list) else ms_value(v)) for k, v in kwargs.items()}
    if groups is None:
        target = parameters
    else:
        target = [{**{k: ms_value(v) for k, v in g.items() if k != "params"},
                   "params": [by_name[n] for n in g["params"]]} for g in groups]
    return (cls or MS_CLASSES[optimizer])(target, **kw)


def lr_values(opt, names_out: list) -> np.ndarray:
    """``opt.get_lr()``: one value, or one per parameter (group lrs); ``names_out`` gets the parameter names."""
    lr = opt.get_lr()
    if isinstance(lr, (tuple, list)):
        names_out[:] = [p.name for p in opt.parameters]
        return np.array([float(x.asnumpy().reshape(-1)[0]) for x in lr], f32)
    names_out[:] = ["*"]
    return np.array([float(lr.asnumpy().reshape(-1)[0])], f32)


def run_case(spec: dict, params0: dict, grads: list) -> tuple[list, np.ndarray, list]:
    """Runs MindSpore on one case: the params after every step, ``get_lr()`` before every step, its names."""
    parameters = [Parameter(Tensor(v.copy()), name=k) for k, v in params0.items()]
    optimizer, kwargs, groups, call = spec["optimizer"], spec["kwargs"], spec["groups"], spec["ms_call"]
    if call in ("adagrad_no_slots", "ftrl_sparse"):
        return run_manual(spec, parameters, grads)
    if call == "sgd_nesterov":
        kw = {k: v for k, v in kwargs.items() if k != "use_nesterov"}
        opt = ms_optimizer_of("sgd", {**kw, "nesterov": True}, groups, parameters)
        step = lambda g: opt(tuple(Tensor(g[p.name]) for p in opt.parameters))  # noqa: E731
    elif optimizer == "lars":
        inner = kwargs["optimizer"]
        inner_opt = ms_optimizer_of(inner["optimizer"], inner["kwargs"], inner["groups"], parameters)
        lars = nn.LARS(inner_opt, epsilon=kwargs["epsilon"], coefficient=kwargs["coefficient"],
                       use_clip=kwargs["use_clip"])
        step = lambda g: lars_step(lars, tuple(Tensor(g[p.name]) for p in lars.parameters),  # noqa: E731
                                     kwargs["epsilon"], kwargs["coefficient"])
        opt = inner_opt  # get_lr is the wrapped optimizer's
    else:
        opt = ms_optimizer_of(optimizer, kwargs, groups, parameters)
        step = lambda g: opt(tuple(Tensor(g[p.name]) for p in opt.parameters))  # noqa: E731
    traj, lrs, names = [], [], []
    for g in grads:
        lrs.append(lr_values(opt, names))
        step(g)
        traj.append({p.name: p.asnumpy().copy() for p in parameters})
    return traj, np.stack(lrs), names


def run_manual(spec: dict, parameters: list, grads: list):
    """The documented rule from another MindSpore op, after MindSpore's decay and loss-scale division."""
    kw = spec["kwargs"]
    wd, ls = kw.get("weight_decay", 0.0), kw.get("loss_scale", 1.0)
    if spec["ms_call"] == "adagrad_no_slots":
        op = ops.ApplyAdagradV2(epsilon=0.0, update_slots=False)
        slots = {p.name: [Parameter(Tensor(np.full(p.shape, kw["accum"], f32)), name=f"a.{p.name}")]
                 for p in parameters}
        lr = Tensor(f32(kw["learning_rate"]))
        fn = lambda p, g, a: op(p, a, lr, g)  # noqa: E731
        decay_all = False
    else:
        op = ops.SparseApplyFtrl(kw["learning_rate"], kw["l1"], kw["l2"], kw["lr_power"])

        def fn(p, g, acc, lin):
            flat = lambda t: t.reshape((-1,))  # noqa: E731
            vp, va, vl = (Parameter(flat(x), name="v" + x.name) for x in (p, acc, lin))
            op(vp, va, vl, flat(g), Tensor(np.arange(int(np.prod(p.shape)), dtype=np.int32)))
            for dst, src in ((p, vp), (acc, va), (lin, vl)):
                dst.set_data(src.reshape(dst.shape))

        slots = {p.name: [Parameter(Tensor(np.full(p.shape, kw["initial_accum"], f32)), name=f"a.{p.name}"),
                          Parameter(Tensor(np.zeros(p.shape, f32)), name=f"l.{p.name}")] for p in parameters}
        decay_all = True  # FTRL (not grouped) decays every leaf
    traj = []
    for g in grads:
        for p in parameters:
            fn(p, preprocess(Tensor(g[p.name]), p, wd, ls, decay_all), *slots[p.name])
        traj.append({p.name: p.asnumpy().copy() for p in parameters})
    lr = np.full((len(grads), 1), f32(kw["learning_rate"]))
    return traj, lr, ["*"]


# ---------------------------------------------------------------------------------------------------------------


def pack(case: str, config: dict, params0: dict, grads: list, traj: list, lrs: np.ndarray) -> dict:
    out = {f"{case}/config": np.array(json.dumps(config, sort_keys=True)), f"{case}/lr": lrs}
    for k, v in params0.items():
        out[f"{case}/p0__{k}"] = v
        out[f"{case}/g__{k}"] = np.stack([g[k] for g in grads])
        out[f"{case}/p__{k}"] = np.stack([p[k] for p in traj])
    return out


def generate(seed: int, per_optimizer: int, optimizers=OPTIMIZERS, verbose: bool = True,
             steps: int | None = None) -> dict[str, dict]:
    """``{optimizer: npz contents}`` for ``per_optimizer`` cases of each optimizer; a draw MindSpore rejects at
    construction is drawn again (counted in the config's ``redraws``)."""
    packs = {}
    for optimizer in optimizers:
        oi = OPTIMIZERS.index(optimizer)  # a case depends on (seed, optimizer, i) only
        contents: dict = {}
        for i in range(per_optimizer):
            rng = np.random.default_rng([seed, oi, i])
            redraws = 0
            while True:
                spec = draw_case(rng, optimizer, steps)
                params0, grads, regimes = draw_data(rng, {k: tuple(v) for k, v in spec["shapes"].items()},
                                                    spec["steps"], spec["loss_scale"])
                try:
                    traj, lrs, lr_names = run_case(spec, params0, grads)
                    break
                except (TypeError, ValueError, KeyError) as e:
                    redraws += 1
                    if verbose:
                        print(f"  redraw {optimizer} {i}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    if redraws > 20:
                        raise
            name = f"{optimizer}_{seed}_{i:03d}"
            config = {"optimizer": optimizer, "kwargs": spec["kwargs"], "groups": spec["groups"],
                      "source": spec["source"], "grad_regimes": regimes, "lr_names": lr_names, "seed": seed,
                      "redraws": redraws}
            contents.update(pack(name, config, params0, grads, traj, lrs))
            if verbose:
                print(name, json.dumps(spec["kwargs"])[:150])
        packs[optimizer] = contents
    return packs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--per-optimizer", type=int, default=12)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--out", required=True, help="folder for one .npz per optimizer")
    parser.add_argument("--steps", type=int, help="steps per case (default: 8-20, drawn)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    packs = generate(args.seed, args.per_optimizer, tuple(args.optimizers.split(",")), verbose=not args.quiet,
                     steps=args.steps)
    for optimizer, contents in packs.items():
        path = os.path.join(args.out, f"{optimizer}.npz")
        np.savez_compressed(path, **contents)
        print(path)


if __name__ == "__main__":
    main()
