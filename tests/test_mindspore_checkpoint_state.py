"""MindSpore optimizer state in (jaxopt_ms.mindspore_checkpoint.optimizer_state): without a template, the
hyperparameters MindSpore saves checked against the optimizer, and errors that name every missing entry and the
fix. Fixtures: scripts/mindspore_fixtures/checkpoints.py (MindSpore 2.10 CPU)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mindspore_checkpoint import (
    FOLDER,
    NAMES,
    SHAPES,
    build,
    close,
    continue_run,
    fixture,
    fused,
    jitted_step,
    like,
)

import jaxopt_ms
from jaxopt_ms import mindspore_checkpoint as msc
from jaxopt_ms.mindspore_checkpoint import hyperparameters

pytest.importorskip("safetensors")
pytest.importorskip("google.protobuf")


def path(case: str, fmt: str = "ckpt") -> str:
    return os.path.join(FOLDER, f"{case}.{fmt}")


# ------------------------------------------------------------------------------------------- without a template
@pytest.mark.parametrize("case", ["momentum", "sgd", "adam", "adam_groups", "asgd", "adafactor", "rmsprop_centered",
                                  "adam_dynamic_loss_scale", "sgd_no_momentum"])
def test_without_template_resumes_as_with_one(case):
    """params_like=None: the shapes and dtypes come from the file; the run continues as MindSpore's did."""
    config, grads, traj = fixture(case)
    opt = build(config)
    params, state = msc.from_mindspore(opt, path(case))
    assert isinstance(params, dict) and sorted(params) == sorted(NAMES)
    assert {n: (v.shape, v.dtype) for n, v in params.items()} == {n: (s, jnp.float32) for n, s in SHAPES.items()}
    want_params, want_state = msc.from_mindspore(opt, path(case), like())
    for a, b in zip(jax.tree.leaves((params, state)), jax.tree.leaves((want_params, want_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    got, params, state = continue_run(opt, params, state, grads, step=jitted_step(opt))
    for k, (g, w) in enumerate(zip(got, traj)):
        for n in NAMES:
            close(g[n], w[n], f"{case} without template, step {k} {n}")
    back = msc.to_mindspore(opt, params, state)
    assert set(NAMES) <= set(back)


def test_without_template_nested_and_fused():
    config, grads, traj = fixture("adam")
    opt = build(config)
    params, state = msc.from_mindspore(opt, path("adam", "safetensors"), nested=True)
    assert jax.tree.structure(params) == jax.tree.structure(like(nested=True))
    nest = lambda g: {m: {k: g[f"{m}.{k}"] for k in ("weight", "bias")} for m in ("fc1", "fc2")}  # noqa: E731
    got, _, _ = continue_run(opt, params, state, [nest(g) for g in grads])
    for n in NAMES:
        close(got[-1][n], traj[-1][n], f"nested {n}")
    opt, inner, _ = fused(config)
    params, state = msc.from_mindspore(opt, path("adam"))
    assert isinstance(params, jaxopt_ms.fused.FlatParams)
    got, _, _ = continue_run(opt, params, state, grads, flatten=inner.flatten)
    for n in NAMES:
        close(got[-1][n], traj[-1][n], f"fused {n}")


def test_without_template_needs_optimizer_state():
    net_only = {n: v for n, v in msc.load(path("adam")).items() if n in NAMES}
    with pytest.raises(ValueError, match="has none .*pass params_like"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), net_only)
    ckpt = dict(msc.load(path("adam")), **{"bn.moving_mean": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"map nowhere.*bn\.moving_mean"):  # a buffer: no state, not a parameter
        msc.from_mindspore(jaxopt_ms.adam(0.01, eps=1e-3, weight_decay=0.01), ckpt)
    params, _ = msc.from_mindspore(jaxopt_ms.adam(0.01, eps=1e-3, weight_decay=0.01), ckpt,
                                   ignore=lambda n: "moving_" in n)
    assert sorted(params) == sorted(NAMES)


# --------------------------------------------------------------------------------------- saved hyperparameters
def test_saved_hyperparameters_are_all_known():
    """Every scalar MindSpore 2.10 saves besides parameters and per-parameter state is checked (learning rates,
    momentum) or is state this module restores (global_step, beta powers, AdaFactor's step, LARS placeholders)."""
    with open(os.path.join(FOLDER, "saved_hyperparameters.json")) as f:
        saved = json.load(f)
    state = {"global_step", "beta1_power", "beta2_power", "afactor_step", "fake_lr", "fake_param"}
    checked = {"learning_rate", "momentum"}
    for optimizer, entries in saved.items():
        for name in entries:
            base = "learning_rate" if name.startswith("learning_rate_group_") else name
            assert base in state | checked, f"{optimizer} saves {name!r}, which nothing checks or restores"
            assert hyperparameters.HYPERPARAMETER.match(name) or name in state
    with_momentum = sorted(o for o, e in saved.items() if "momentum" in e)
    assert with_momentum == ["LARS(Momentum)", "Momentum", "Momentum(groups)", "SGD"]
    assert saved["SGD"]["momentum"][2] == [pytest.approx(0.7)]
    assert "learning_rate" not in saved["Adam(schedule)"]  # a schedule saves nothing to check
    assert saved["Adam(lr list)"]["learning_rate"][1] == [3]
    assert sorted(k for k in saved["Momentum(groups)"] if k.startswith("learning")) == ["learning_rate",
                                                                                       "learning_rate_group_0"]


@pytest.mark.parametrize("is_fused", [False, True])
def test_momentum_differs_from_mindspores(is_fused):
    """A Momentum run saved with momentum=0.9 and continued with 0.5 would diverge: refused, naming both values."""
    wrap = (lambda o: jaxopt_ms.fused.fuse(o, own_buffer_from=None)) if is_fused else (lambda o: o)
    msc.from_mindspore(wrap(jaxopt_ms.momentum(0.1, 0.9, weight_decay=0.01)), path("momentum"))
    with pytest.raises(ValueError, match=r"'momentum' is 0\.9 .*applies momentum 0\.5.*momentum=0\.9"):
        msc.from_mindspore(wrap(jaxopt_ms.momentum(0.1, 0.5, weight_decay=0.01)), path("momentum"))
    with pytest.raises(ValueError, match=r"'momentum' is 0\.9 .*applies momentum 0\.5.*jaxopt_ms\.sgd"):
        msc.from_mindspore(wrap(jaxopt_ms.sgd(0.1, momentum=0.5, dampening=0.1, weight_decay=0.01)), path("sgd"))


def test_every_differing_hyperparameter_reported_at_once():
    with pytest.raises(ValueError, match=r"several saved hyperparameters:\n- .*learning rate.*0\.1.*0\.01.*\n- "
                                         r"Checkpoint entry 'momentum' is 0\.9 .*0\.5"):
        msc.from_mindspore(jaxopt_ms.momentum(0.01, 0.5, weight_decay=0.01), path("momentum"))


def test_momentum_zero_against_nonzero():
    with pytest.raises(ValueError, match=r"'momentum' is 0\.9 .*applies momentum 0[^.]"):
        msc.from_mindspore(jaxopt_ms.sgd(0.1, weight_decay=0.01), path("sgd"),
                           ignore=lambda n: n.startswith(("accum.", "stat.")))
    with pytest.raises(ValueError, match=r"'momentum' is 0 .*applies momentum 0\.9"):
        msc.from_mindspore(jaxopt_ms.sgd(0.1, momentum=0.9), path("sgd_no_momentum"))
    msc.from_mindspore(jaxopt_ms.sgd(0.1), path("sgd_no_momentum"))


def test_lars_inner_momentum_checked():
    msc.from_mindspore(jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.9)), path("lars_init"))
    with pytest.raises(ValueError, match=r"'momentum' is 0\.9 .*0\.8"):
        msc.from_mindspore(jaxopt_ms.lars(jaxopt_ms.momentum(0.1, 0.8)), path("lars_init"), like())


def test_group_learning_rate_checked():
    """MindSpore names group i's own rate learning_rate_group_<i>; the other group runs on learning_rate."""
    groups = lambda lr0: [{"params": r"^fc1\.", "lr": lr0}, {"params": r"^fc2\."}]  # noqa: E731
    msc.from_mindspore(jaxopt_ms.momentum(0.1, 0.9, param_groups=groups(0.05)), path("momentum_groups_init"))
    with pytest.raises(ValueError, match=r"0\.05 \(entry 'learning_rate_group_0'.*0\.04.*'lr' of parameter group 0"):
        msc.from_mindspore(jaxopt_ms.momentum(0.1, 0.9, param_groups=groups(0.04)), path("momentum_groups_init"))


# ------------------------------------------------------------------------------------------------------ errors
def test_missing_entries_listed_at_once_parameters_apart():
    ckpt = msc.load(path("adam"))
    for name in ("fc1.bias", "moment1.fc2.weight", "moment2.fc1.bias", "beta2_power"):
        del ckpt[name]
    with pytest.raises(ValueError) as info:
        msc.from_mindspore(jaxopt_ms.adam(0.01, eps=1e-3, weight_decay=0.01), ckpt, like())
    text = str(info.value)
    assert "1 parameter(s) of params_like: ['fc1.bias'] (the closest names in the checkpoint: {'fc1.bias': " \
        "['fc2.bias']})" in text
    assert "3 optimizer-state entries: ['moment1.fc2.weight', 'moment2.fc1.bias', 'beta2_power']" in text or \
        all(n in text.split("optimizer-state")[1] for n in ("moment1.fc2.weight", "moment2.fc1.bias", "beta2_power"))
    assert "'fc1.bias'" not in text.split("optimizer-state")[1]


def test_missing_parameters_show_the_closest_names():
    flax_like = {"fc1": {"kernel": jnp.zeros((8, 6)), "bias": jnp.zeros(8)},
                 "fc2": {"kernel": jnp.zeros((3, 8)), "bias": jnp.zeros(3)}}
    with pytest.raises(ValueError, match=r"2 parameter\(s\) of params_like: \['fc1\.kernel', 'fc2\.kernel'\] "
                                         r"\(these are Flax's names: MindSpore's are 'weight'"):
        msc.from_mindspore(jaxopt_ms.adam(0.01, eps=1e-3, weight_decay=0.01), path("adam"), flax_like)


def test_network_only_checkpoint_says_so():
    net_only = {n: v for n, v in msc.load(path("adam")).items() if n in NAMES}
    with pytest.raises(ValueError, match=r"optimizer-state entries.*save_checkpoint\(net\)"):
        msc.from_mindspore(jaxopt_ms.adam(0.01), net_only, like())


@pytest.mark.parametrize("case, wrapper", [("adam_dynamic_loss_scale", "dynamic_loss_scale"),
                                           ("adam_fixed_loss_scale", "fixed_loss_scale")])
def test_loss_scale_entries_point_to_the_wrapper(case, wrapper):
    with pytest.raises(ValueError, match=rf"loss-scale state .*scale_sense.*jaxopt_ms\.loss_scale\.{wrapper}") as e:
        msc.from_mindspore(jaxopt_ms.adam(0.01), path(case), like())
    assert "pass ignore" not in str(e.value)
    config, _, _ = fixture(case)
    msc.from_mindspore(build(config), path(case), like())
