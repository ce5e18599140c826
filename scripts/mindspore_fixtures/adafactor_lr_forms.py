"""AdaFactor with every learning-rate form: which ones keep ``scale_parameter`` (tests/fixtures/adafactor_lr_forms).

MindSpore 2.10's ``nn.AdaFactor`` keeps ``scale_parameter`` only for a learning rate that is a Python number
(``isinstance(learning_rate, (float, int))``, adafactor.py 306-310; ``np.float64`` is a ``float``) and turns it off
for anything else, a fixed 0-d Tensor included (340-341). Each case runs ``nn.AdaFactor(relative_step=False,
scale_parameter=True)`` with one form of the same rate (a factored and an unfactored leaf, 6 steps) and records
the trajectory and ``opt.scale_parameter``. tests/test_adafactor.py replays each case with every JAX spelling of
that form (tests/fixture_replay.py ``ADAFACTOR_FORMS``). Run from the repository root::

    PYTHONPATH=$NP1:scripts/mindspore_fixtures $MS_PY scripts/mindspore_fixtures/adafactor_lr_forms.py
"""

from __future__ import annotations

import numpy as np
from common import Tensor, make_grads, make_params, ms_params, run_optimizer, save_case
from mindspore import nn

LR = 0.05
STEPS = 6
TABLE = [0.05, 0.04, 0.06, 0.03, 0.05, 0.02]
SHAPES = {"fc.weight": (5, 8), "fc.bias": (5,)}
# case: (MindSpore's learning rate, the config's tagged learning rate)
FORMS = {
    "float": (LR, LR),
    "int": (1, 1),
    "numpy_float64": (np.float64(LR), LR),
    "tensor_0d": (Tensor(np.float32(LR)), {"array": LR}),
    "tensor_1d": (Tensor(np.asarray(TABLE, np.float32)), {"array": TABLE}),
    "list": (list(TABLE), TABLE),
    "schedule": (nn.ExponentialDecayLR(LR, 0.8, 2), {"schedule": "exponential_decay", "learning_rate": LR,
                                                      "decay_rate": 0.8, "decay_steps": 2}),
}


def main() -> None:
    rng = np.random.RandomState(27)
    params0 = make_params(rng, SHAPES)
    grads = make_grads(rng, params0, STEPS)
    for case, (ms_lr, tagged) in FORMS.items():
        parameters = ms_params(params0)
        opt = nn.AdaFactor(parameters, learning_rate=ms_lr, relative_step=False, scale_parameter=True,
                           beta1=0.9, weight_decay=0.01)
        traj = run_optimizer(opt, parameters, grads)
        config = {"optimizer": "adafactor", "form": case, "scale_parameter_kept": bool(opt.scale_parameter),
                  "kwargs": {"learning_rate": tagged, "relative_step": False, "scale_parameter": True,
                             "beta1": 0.9, "weight_decay": 0.01}}
        print(case, "scale_parameter kept:", bool(opt.scale_parameter),
              save_case("adafactor_lr_forms", case, config, params0, grads, traj))


if __name__ == "__main__":
    main()
