"""Golden trajectories for RMSProp, Adagrad, ProximalAdagrad, FTRL, AdaFactor, Adadelta, AdaMax, ASGD, Rprop.

Run from the repository root (see common.py)::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/family.py

Cases are written to ``tests/fixtures/<optimizer>/<case>.npz``. Each case's ``config`` holds ``optimizer`` (the
jaxopt_ms factory), ``kwargs`` (its arguments), ``groups`` (MindSpore parameter groups with parameter names in
place of Parameters, or null) and ``source``:

* ``mindspore``: the MindSpore optimizer itself, run on the CPU.
* ``mindspore-op``: where MindSpore's dense CPU kernel contradicts its documented formula (reference §9), the
  trajectory comes from another MindSpore op that computes the documented rule (FTRL with ``l1 > 0``:
  ``SparseApplyFtrl`` over every element; Adagrad with ``update_slots=False``: ``ApplyAdagradV2(epsilon=0,
  update_slots=False)``), after MindSpore's weight decay and loss-scale division written with MindSpore ops
  (``g + w * f32(wd * s)``, then ``* f32(1 / s)``, reference §1).

Lamb and LARS do not run on MindSpore's CPU build and RMSProp's non-centred CPU kernel puts eps outside the square
root in its vector path: their tests use NumPy references of the documented rules instead.
"""

from __future__ import annotations

import numpy as np
from common import groups_for_ms, make_grads, make_params, ms_params, run_optimizer, save_case
from mindspore import Parameter, Tensor, nn, ops

STEPS = 6


def case(name, ms_cls, optimizer, kwargs, groups=None, seed=0, grad_scale=1.0, ms_kwargs=None, notes=""):
    rng = np.random.RandomState(seed)
    params0 = make_params(rng)
    grads = make_grads(rng, params0, STEPS, scale=grad_scale)
    parameters = ms_params(params0)
    opt = ms_cls(groups_for_ms(groups, parameters), **(ms_kwargs or kwargs))
    grouped = {n for g in groups for n in g["params"]} if groups else {p.name for p in parameters}
    traj = run_optimizer(opt, list(opt._parameters), grads)  # the optimizer's order (groups reorder)
    for step in traj:  # a leaf in no group is not optimized
        step.update({k: v for k, v in params0.items() if k not in grouped})
    config = {"optimizer": optimizer, "kwargs": kwargs, "groups": groups, "source": "mindspore", "notes": notes}
    print(save_case(optimizer, name, config, params0, grads, traj))


def preprocess(g, w, wd, loss_scale, decay_all):
    """MindSpore's decay_weight then scale_grad, with MindSpore ops (reference §1)."""
    if wd > 0 and (decay_all or ("beta" not in w.name and "gamma" not in w.name)):
        g = g + w * Tensor(np.float32(wd * loss_scale))
    if loss_scale != 1.0:
        g = g * Tensor(np.float32(1.0 / loss_scale))
    return g


def manual_case(name, optimizer, kwargs, step_fn, init_slots, wd, loss_scale, seed=0, grad_scale=1.0, notes="",
                decay_all=False):
    rng = np.random.RandomState(seed)
    params0 = make_params(rng)
    grads = make_grads(rng, params0, STEPS, scale=grad_scale)
    parameters = ms_params(params0)
    slots = {p.name: init_slots(p) for p in parameters}
    traj = []
    for g in grads:
        for p in parameters:
            step_fn(p, preprocess(Tensor(g[p.name]), p, wd, loss_scale, decay_all), *slots[p.name])
        traj.append({p.name: p.asnumpy().copy() for p in parameters})
    config = {"optimizer": optimizer, "kwargs": kwargs, "groups": None, "source": "mindspore-op", "notes": notes}
    print(save_case(optimizer, name, config, params0, grads, traj))


def slot(p, value, tag):
    return Parameter(Tensor(np.full(p.shape, value, np.float32)), name=f"{tag}.{p.name}")


ALL = ["conv1.weight", "fc.weight", "fc.bias", "bn1.gamma", "bn1.beta"]
GROUPS_LR_WD = [
    {"params": ["conv1.weight", "bn1.gamma"], "lr": 0.05, "weight_decay": 0.02},
    {"params": ["fc.weight", "fc.bias"]},
]


def rmsprop_cases():
    base = dict(learning_rate=0.01, decay=0.8, momentum=0.5, epsilon=0.3, centered=True)
    case("rmsprop_centered", nn.RMSProp, "rmsprop", dict(base, weight_decay=0.01, loss_scale=4.0), grad_scale=4.0)
    case("rmsprop_centered_nomom", nn.RMSProp, "rmsprop", dict(base, momentum=0.0))
    case("rmsprop_centered_groups", nn.RMSProp, "rmsprop", dict(base, weight_decay=0.001), groups=GROUPS_LR_WD)


def adagrad_cases():
    case("adagrad", nn.Adagrad, "adagrad", dict(accum=0.5, learning_rate=0.1, weight_decay=0.01, loss_scale=2.0),
         grad_scale=2.0)
    case("adagrad_groups_dynamic_lr", nn.Adagrad, "adagrad",
         dict(learning_rate=[0.1, 0.09, 0.08, 0.07, 0.06, 0.05], weight_decay=0.003),
         groups=[{"params": ["conv1.weight", "fc.weight"], "lr": 0.2}, {"params": ["bn1.gamma", "fc.bias"]}])
    wd, ls = 0.01, 2.0
    op = ops.ApplyAdagradV2(epsilon=0.0, update_slots=False)
    manual_case("adagrad_no_update_slots", "adagrad",
                dict(accum=0.5, learning_rate=0.1, update_slots=False, weight_decay=wd, loss_scale=ls),
                lambda p, g, a: op(p, a, Tensor(np.float32(0.1)), g),
                lambda p: (slot(p, 0.5, "accum"),), wd, ls, grad_scale=2.0,
                notes="ApplyAdagradV2(epsilon=0, update_slots=False): Adagrad's CPU kernel ignores update_slots")


def proximal_adagrad_cases():
    case("proximal_adagrad", nn.ProximalAdagrad, "proximal_adagrad",
         dict(accum=0.2, learning_rate=0.1, l1=0.05, l2=0.02, weight_decay=0.01, loss_scale=4.0), grad_scale=4.0)
    case("proximal_adagrad_l1_zero", nn.ProximalAdagrad, "proximal_adagrad",
         dict(learning_rate=0.3, l1=0.0, l2=0.1))
    case("proximal_adagrad_groups", nn.ProximalAdagrad, "proximal_adagrad",
         dict(learning_rate=0.1, l1=0.01, l2=0.0, weight_decay=0.02), groups=GROUPS_LR_WD)


def ftrl_cases():
    # l1 == 0: the dense CPU kernel computes the documented rule (its l1 sign bug needs l1 > 0).
    case("ftrl", nn.FTRL, "ftrl", dict(initial_accum=0.2, learning_rate=0.1, l2=0.02, weight_decay=0.01,
                                       loss_scale=4.0), grad_scale=4.0,
         notes="not grouped: FTRL decays every leaf, gamma/beta included")
    case("ftrl_lr_power_03", nn.FTRL, "ftrl", dict(learning_rate=0.05, lr_power=-0.3, l2=0.1))
    case("ftrl_lr_power_0", nn.FTRL, "ftrl", dict(learning_rate=0.05, lr_power=0.0, l2=0.1))
    case("ftrl_groups", nn.FTRL, "ftrl", dict(learning_rate=0.1, weight_decay=0.01),
         groups=[{"params": ["conv1.weight", "bn1.gamma"], "weight_decay": 0.05},
                 {"params": ["fc.weight", "bn1.beta"]}])
    for name, lr_power in (("ftrl_l1", -0.5), ("ftrl_l1_lr_power_03", -0.3)):
        lr, l1, l2, wd, ls = 0.1, 0.5, 0.02, 0.01, 2.0
        op = ops.SparseApplyFtrl(lr, l1, l2, lr_power)

        def step(p, g, acc, lin, op=op):
            flat = lambda t: t.reshape((-1,))  # noqa: E731
            vp, va, vl = (Parameter(flat(x), name="v" + x.name) for x in (p, acc, lin))
            op(vp, va, vl, flat(g), Tensor(np.arange(int(np.prod(p.shape)), dtype=np.int32)))
            for dst, src in ((p, vp), (acc, va), (lin, vl)):
                dst.set_data(src.reshape(dst.shape))

        manual_case(name, "ftrl", dict(learning_rate=lr, lr_power=lr_power, l1=l1, l2=l2, weight_decay=wd,
                                       loss_scale=ls),
                    step, lambda p: (slot(p, 0.1, "accum"), slot(p, 0.0, "linear")), wd, ls, grad_scale=2.0,
                    notes="SparseApplyFtrl over every element: the dense CPU kernel uses +l1 instead of sign(lin)*l1",
                    decay_all=True)


def adafactor_cases():
    configs = {
        "adafactor": dict(),
        "adafactor_no_beta1": dict(beta1=0.0),
        "adafactor_wd": dict(weight_decay=0.1),
        "adafactor_no_scale_parameter": dict(scale_parameter=False),
        "adafactor_fixed_lr": dict(learning_rate=0.05, relative_step=False, clip_threshold=0.5, decay_rate=0.5,
                                   eps=(1e-3, 0.05), loss_scale=8.0),
        "adafactor_warmup": dict(warmup_init=True, decay_rate=0.6),
        "adafactor_compression": dict(compression=True, beta1=0.5, clip_threshold=2.0),
        "adafactor_fixed_lr_wd": dict(learning_rate=0.05, relative_step=False, scale_parameter=False,
                                      weight_decay=0.1, clip_threshold=0.5),
    }
    for name, kw in configs.items():
        ms_kw = dict(kw)
        case(name, nn.AdaFactor, "adafactor", {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
             ms_kwargs=ms_kw, grad_scale=0.5, notes="loss_scale is ignored by MindSpore's AdaFactor")
    case("adafactor_groups", nn.AdaFactor, "adafactor", dict(weight_decay=0.1),
         groups=[{"params": ["conv1.weight", "bn1.gamma"], "weight_decay": 0.5}, {"params": ["fc.weight", "fc.bias"]}],
         notes="a group's weight_decay is ignored by MindSpore's AdaFactor; bn1.beta is in no group")


def extra_cases():
    case("adadelta", nn.Adadelta, "adadelta", dict(learning_rate=0.5, rho=0.8, epsilon=0.01, weight_decay=0.01,
                                                   loss_scale=4.0), grad_scale=4.0)
    case("adadelta_groups", nn.Adadelta, "adadelta", dict(rho=0.95, epsilon=1e-4), groups=GROUPS_LR_WD)
    case("adamax", nn.AdaMax, "adamax", dict(learning_rate=0.01, beta1=0.8, beta2=0.9, eps=0.1, weight_decay=0.01,
                                             loss_scale=4.0), grad_scale=4.0)
    case("adamax_groups", nn.AdaMax, "adamax", dict(learning_rate=[0.01, 0.02, 0.03, 0.02, 0.01, 0.005]),
         groups=GROUPS_LR_WD)
    case("asgd", nn.ASGD, "asgd", dict(learning_rate=0.1, lambd=0.05, alpha=0.5, t0=3.0, weight_decay=0.01))
    case("asgd_groups_dynamic_lr", nn.ASGD, "asgd",
         dict(learning_rate=[0.1, 0.2, 0.15, 0.1, 0.05, 0.02], lambd=0.01, t0=2.0), groups=GROUPS_LR_WD)
    case("rprop", nn.Rprop, "rprop", dict(learning_rate=0.1, etas=[0.4, 1.5], step_sizes=[0.05, 0.3],
                                          weight_decay=0.01),
         ms_kwargs=dict(learning_rate=0.1, etas=(0.4, 1.5), step_sizes=(0.05, 0.3), weight_decay=0.01))
    case("rprop_groups", nn.Rprop, "rprop", dict(learning_rate=0.01), groups=GROUPS_LR_WD)


if __name__ == "__main__":
    rmsprop_cases()
    adagrad_cases()
    proximal_adagrad_cases()
    ftrl_cases()
    adafactor_cases()
    extra_cases()
