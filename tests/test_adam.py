"""Adam and LazyAdam (dense gradients) against MindSpore 2.10 golden trajectories (tests/fixtures/spine).

Settings are chosen so that optax's Adam form would fail: eps 0.1 (MindSpore adds eps to sqrt of the uncorrected
v), beta2 0.9, beta1 0.8; plus nesterov, AMSGrad, weight decay with loss_scale 4, a dynamic (schedule) weight
decay, a schedule lr and a 1-d tensor lr.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from parity import load_case, run_trajectory
from spine_cases import check_case, parity_params, spine_cases

import jaxopt_ms

CASES = spine_cases(lambda name, cfg: cfg["optimizer"] in ("adam", "lazy_adam") and "param_groups" not in cfg["args"])
# Also run un-jitted and inside optax.chain (all cases run jitted).
EVERY_MODE = ("adam_weight_decay_loss_scale", "adam_amsgrad", "lazy_adam_dense")


@pytest.mark.parametrize("path, mode", parity_params(CASES, EVERY_MODE))
def test_adam_matches_mindspore(path, mode):
    check_case(load_case(path), mode)


def test_optax_adam_does_not_match_the_oracle():
    # Guards against fixtures too weak to tell the eps-hat form from optax's bias-corrected eps.
    case = load_case([p for p in CASES if p.endswith("adam_eps_beta2.npz")][0])
    a = case.config["args"]
    got = run_trajectory(optax.adam(a["learning_rate"], a["beta1"], a["beta2"], a["eps"]), case.params0, case.grads)
    assert not np.allclose(got[-1]["fc.weight"], case.traj[-1]["fc.weight"], rtol=1e-4)


def test_use_lazy_is_lazy_adam_on_dense_gradients():
    case = load_case([p for p in CASES if p.endswith("lazy_adam_dense.npz")][0])
    a = dict(case.config["args"])
    got = run_trajectory(jaxopt_ms.adam(**a, use_lazy=True), case.params0, case.grads)
    np.testing.assert_allclose(got[-1]["conv1.weight"], case.traj[-1]["conv1.weight"], rtol=1e-5, atol=1e-6)


def test_amsgrad_state_is_running_maximum():
    opt = jaxopt_ms.adam(0.1, beta2=0.5, use_amsgrad=True)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    for g in (jnp.array([4.0, 1.0]), jnp.array([0.0, 0.0])):
        _, state = opt.update({"w": g}, state, params)
    is_adam = lambda s: isinstance(s, jaxopt_ms.transforms.ScaleByAdamState)  # noqa: E731
    adam_state = [s for s in jax.tree.leaves(state, is_leaf=is_adam) if is_adam(s)][0]
    np.testing.assert_allclose(adam_state.vhat["w"], [8.0, 0.5])   # max(0.5*16, 0.25*16)
    np.testing.assert_allclose(adam_state.moment2["w"], [4.0, 0.25])
