"""Golden trajectories of MindSpore 2.10 ``nn.AdamOffload`` (CPU), written to tests/fixtures/adam_offload/."""

from __future__ import annotations

import numpy as np
from common import make_grads, make_params, ms_params, run_optimizer, save_case
from mindspore import nn

STEPS = 6
# Small shapes keep the fixtures small; still a 4-D conv weight and gamma/beta names.
SHAPES = {"conv1.weight": (2, 16, 2, 2), "fc.weight": (3, 8), "fc.bias": (3,), "bn1.gamma": (2,), "bn1.beta": (2,)}


def case(name: str, kwargs: dict, groups: list[dict] | None = None, seed: int = 0) -> None:
    rng = np.random.RandomState(seed)
    params0 = make_params(rng, SHAPES)
    grads = make_grads(rng, params0, STEPS, scale=0.5)
    parameters = ms_params(params0)
    if groups is None:
        opt = nn.AdamOffload(parameters, **kwargs)
    else:
        ms_groups = [dict({k: v for k, v in g.items() if k != "names"},
                          params=[p for p in parameters if p.name in g["names"]]) for g in groups]
        opt = nn.AdamOffload(ms_groups, **kwargs)
    traj = run_optimizer(opt, parameters, grads)
    config = {"optimizer": "AdamOffload", "kwargs": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                                     for k, v in kwargs.items()},
              "groups": groups}
    print(save_case("adam_offload", name, config, params0, grads, traj))


if __name__ == "__main__":
    case("defaults", dict(learning_rate=0.01))
    case("eps_beta2_wd_loss_scale", dict(learning_rate=0.05, beta2=0.8, eps=0.1, weight_decay=0.01,
                                         loss_scale=8.0), seed=1)
    case("nesterov_dynamic_lr", dict(learning_rate=[0.05, 0.04, 0.03, 0.02, 0.01, 0.005], beta1=0.5,
                                     use_nesterov=True, weight_decay=0.02), seed=2)
    case("groups", dict(learning_rate=0.02, weight_decay=0.0, loss_scale=4.0),
         groups=[{"names": ["conv1.weight", "fc.weight"], "weight_decay": 0.05},
                 {"names": ["fc.bias", "bn1.gamma", "bn1.beta"], "lr": 0.1}], seed=3)
