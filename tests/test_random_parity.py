"""Randomized differential parity: hundreds of MindSpore 2.10 (CPU) trajectories, replayed per leaf and fused.

The cases come from scripts/mindspore_fixtures/random_cases.py (tests/fixtures/random/<optimizer>.npz: seed 16,
16 cases per optimizer; adam_seed17.npz: seed 17's six Adam cases, among them ``adam(use_lazy=True)`` with a
dynamic group weight decay): random optimizers, flags, hyperparameters, learning-rate forms, parameter groups,
loss scales, leaf shapes and gradient magnitudes (see that script for what it draws and for the CPU-kernel bugs
whose documented formula it records instead). Each case is replayed un-jitted per leaf and through
``jaxopt_ms.fused.fuse`` (un-jitted too: a few hundred distinct optimizers would otherwise cost a few hundred
compiles; the leaf shapes come from a few fixed models, so the eager kernels are compiled once and shared), and
every leaf after every step must satisfy ``|got - want| <= 1e-6 + 1e-5 |want|``; ``jaxopt_ms.current_lr`` before
every step must equal MindSpore's ``get_lr()``. The first cases using each learning-rate schedule also run jitted
per leaf (XLA rewrites divisions by constants, which schedules must survive).

A case that fails here is triaged with ``scripts/triage_float64.py`` (float32 rounding noise or a formula
difference). The live test (``-m mindspore``) draws a fresh seed with MindSpore itself and replays it.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from fixture_replay import build, covering_sample, run_variant
from parity import FIXTURES, Case, assert_trajectory, load_cases, mindspore_python, run_trajectory

import jaxopt_ms

RTOL, ATOL = 1e-5, 1e-6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR = os.path.join(ROOT, "scripts", "mindspore_fixtures", "random_cases.py")


def _packs() -> list[str]:
    return sorted(glob.glob(os.path.join(FIXTURES, "random", "*.npz")))


def _cases() -> list[Case]:
    return [case for path in _packs() for case in load_cases(path)]


CASES = _cases()

# Failing cases that scripts/triage_float64.py classifies as float32 rounding noise: MindSpore is as far from the
# float64 replay as jaxopt_ms is, and no farther than inputs moved by one ulp scatter the trajectory (figures: max
# over steps, in tolerance units; ill-conditioned steps, e.g. huge gradients cancelling to a small parameter).
# They run (xfail, not strict) and test_noise_cases_are_rounding_noise asserts the classification.
NOISE = {
    "lars_16_001": "jax32-f64 3.11, ms-f64 4.78, ulp-f64 2.14; jax32-ms 1.68",
}
def _params(cases: list[Case]) -> list:
    noise = lambda c: [pytest.mark.xfail(reason=f"float32 rounding noise: {NOISE[c.name]}", strict=False)]  # noqa: E731
    return [pytest.param(c, id=c.name, marks=noise(c) if c.name in NOISE else []) for c in cases]


def lr_expected(case: Case, step: int) -> dict[str, float]:
    """MindSpore's ``get_lr()`` before ``step``: one value per parameter name (``'*'``: all parameters)."""
    return dict(zip(case.config["lr_names"], case.extra["lr"][step].tolist()))


def lr_checker(case: Case, got: list):
    """An ``observe`` callback collecting ``current_lr`` per group (or one value), for :func:`check_lr`."""
    if case.config["optimizer"] == "adafactor":
        return None  # AdaFactor's get_lr() is its fixed lr parameter, not the relative step it uses
    return lambda state: got.append(np.asarray(jax.tree.leaves(jaxopt_ms.current_lr(state)), np.float32))


def check_lr(case: Case, got: list) -> None:
    config = case.config["kwargs"]["optimizer"] if case.config["optimizer"] == "lars" else case.config
    groups = config.get("groups")
    for step, values in enumerate(got):
        want = lr_expected(case, step)
        if "*" in want:
            expected = np.full(values.shape, want["*"], np.float32)
        else:
            expected = np.array([want[g["params"][0]] for g in groups], np.float32)
        np.testing.assert_allclose(values, expected, rtol=RTOL, atol=1e-9,
                                   err_msg=f"{case.name}: current_lr before step {step}")


def replay(case: Case, fused: bool, jit: bool = False) -> None:
    lrs: list = []
    got = run_trajectory(build(case.config), case.params0, case.grads, jit=jit, fused=fused,
                         observe=lr_checker(case, lrs))
    assert_trajectory(got, case.traj, rtol=RTOL, atol=ATOL, label=f"{case.name} [{'fused' if fused else 'leaf'}]")
    check_lr(case, lrs)


def test_sample_covers_every_optimizer():
    seen = {case.config["optimizer"] for case in CASES}
    assert len(CASES) >= 200 and seen >= {
        "sgd", "momentum", "adam", "lazy_adam", "adam_offload", "adam_weight_decay", "lamb", "ftrl", "rmsprop",
        "proximal_adagrad", "adagrad", "adafactor", "lars", "adadelta", "adamax", "asgd", "rprop"}, (len(CASES), seen)


@pytest.mark.parametrize("case", _params(CASES))
def test_matches_mindspore_per_leaf(case):
    replay(case, fused=False)


@pytest.mark.parametrize("case", _params(CASES))
def test_matches_mindspore_fused(case):
    replay(case, fused=True)


def scheduled_sample(cases: list[Case], per_schedule: int = 3) -> list[Case]:
    """The first ``per_schedule`` cases using each ``LearningRateSchedule`` (a few jitted runs, not hundreds)."""
    out, seen = [], {}
    for case in cases:
        text = json.dumps(case.config)
        names = [n for n in SCHEDULE_NAMES if f'"schedule": "{n}"' in text]
        if any(seen.get(n, 0) < per_schedule for n in names):
            out.append(case)
            for n in names:
                seen[n] = seen.get(n, 0) + 1
    return out


SCHEDULE_NAMES = ("exponential_decay", "natural_exp_decay", "inverse_decay", "cosine_decay", "polynomial_decay",
                  "warmup")
SCHEDULED = scheduled_sample(CASES)


@pytest.mark.parametrize("case", _params(SCHEDULED))
def test_scheduled_cases_match_mindspore_jitted(case):
    replay(case, fused=False, jit=True)


# Every learning-rate spelling, in the optimizer and in each group, crossed with per leaf / fused, eager /
# jax.jit(update) / jax.jit(init) and jax.jit(update), plain / optax.inject_hyperparams (tests/fixture_replay.py
# covering_sample): 48 seeded runs by default (every fixed spelling of the optimizer's rate in each of the 12
# combinations), two per case with -m slow. The un-jitted replays above never trace init, so a value a fused
# optimizer kept from a traced init (issue 27: a 0-d JAX rate beside a group's per-step rate) went unseen there.
SAMPLE_SEED = 27


# Jitted inject_hyperparams variants (hyperparameters as float32 arrays, traced) that the -m slow sweep finds 1-4
# tolerance units off while the plain jitted and eager replays match; scripts/triage_float64.py replays the plain
# call only, so these are not triaged yet: an open question, not a learning-rate-form defect.
INJECT_JIT_DEVIATIONS = {
    "sgd_16_015": "loss_scale 0.37 (its float32 reciprocal), weight decay 0.5, nesterov",
    "lars_16_011": "fused, per-step rate, loss_scale 8: 2.7e-5 relative at step 5",
    "adagrad_16_006": "update_slots=False, loss_scale 0.125: 3.6e-5 relative at step 7",
}


def _variant_params(pairs: list) -> list:
    def marks(case, variant):
        if variant.inject and variant.mode != "eager" and case.name in INJECT_JIT_DEVIATIONS:
            return [pytest.mark.xfail(reason=f"jitted inject_hyperparams, not triaged: "
                                             f"{INJECT_JIT_DEVIATIONS[case.name]}", strict=False)]
        if variant.mode != "eager" and case.name in JIT_TRIAGED:
            verdict, figures = JIT_TRIAGED[case.name]
            return [pytest.mark.xfail(reason=f"jitted, triaged {verdict}: {figures}", strict=False)]
        return []

    return [pytest.param(case, variant, id=f"{k:03d}-{case.name}-{variant.label}", marks=marks(case, variant))
            for k, (case, variant) in enumerate(pairs)]


# Jitted replays (XLA fuses and reorders float32 operations) that fail the tolerance, with the verdict of
# scripts/triage_float64.py --jit on the plain jitted replay and its figures (as NOISE's). They run (xfail, not
# strict) in the jitted variants; test_jitted_deviations_keep_their_triage asserts each verdict. "noise": MindSpore
# is as far from float64 as jaxopt_ms. "jaxopt rounding": the jitted float32 order loses accuracy MindSpore keeps
# (the eager replays above match): an open defect of the jitted path, not of the learning-rate forms.
# sgd_16_011: the plain jitted replay matches; its inject_hyperparams variant (momentum, dampening, weight decay
# as float32 arrays) deviates by less than one ulp of the inputs scatters the trajectory (ulp-f64 3.85).
VERDICT_ORDER = ("match", "noise", "jaxopt rounding")  # better to worse; "formula" is in no entry of JIT_TRIAGED
JIT_TRIAGED = {
    "sgd_16_000": ("noise", "jax32-f64 4.77, ms-f64 7.01, ulp-f64 13.2; jax32-ms 2.24"),
    "sgd_16_014": ("noise", "jax32-f64 1.73, ms-f64 2.29, ulp-f64 3.95; jax32-ms 3.05"),
    "asgd_16_008": ("noise", "jax32-f64 3.62, ms-f64 2.13, ulp-f64 6.05; jax32-ms 5.74"),
    "sgd_16_011": ("noise", "jax 0.10.2: match, jax32-f64 1.2, ms-f64 1.87, ulp-f64 3.85; jax32-ms 0.673 (plain "
                   "jitted); jax 0.12.1: noise"),
    "asgd_16_006": ("jaxopt rounding", "jax32-f64 13.9, ms-f64 3.98, ulp-f64 26.7; jax32-ms 17.9"),
    "adadelta_16_002": ("jaxopt rounding", "jax32-f64 0.919, ms-f64 0.31, ulp-f64 0.555; jax32-ms 1.13"),
}


def replay_variant(case: Case, variant) -> None:
    lrs: list = []
    observe = None if variant.inject else lr_checker(case, lrs)  # inject: current_lr is optax's hyperparameter
    got = run_variant(case, variant, observe=observe)
    assert_trajectory(got, case.traj, rtol=RTOL, atol=ATOL, label=f"{case.name} [{variant.label}]")
    check_lr(case, lrs)


CLEAN = [c for c in CASES if c.name not in NOISE]


@pytest.mark.parametrize("case,variant", _variant_params(covering_sample(CLEAN, 48, SAMPLE_SEED)))
def test_every_lr_spelling_mode_and_inject_matches_mindspore(case, variant):
    replay_variant(case, variant)


@pytest.mark.slow
@pytest.mark.parametrize("case,variant", _variant_params(covering_sample(CLEAN, 2 * len(CLEAN), SAMPLE_SEED + 1)))
def test_every_lr_spelling_mode_and_inject_matches_mindspore_sweep(case, variant):
    replay_variant(case, variant)


@pytest.mark.parametrize("name", sorted(NOISE))
def test_noise_cases_are_rounding_noise(name):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from triage_float64 import triage

    (case,) = [c for c in CASES if c.name == name]
    assert triage(case)["verdict"] == "noise"


@pytest.mark.parametrize("name", sorted(JIT_TRIAGED))
def test_jitted_deviations_keep_their_triage(name):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from triage_float64 import triage

    (case,) = [c for c in CASES if c.name == name]
    got = triage(case, jit=True)["verdict"]
    # XLA releases order float32 work differently (jax 0.12.1: adadelta_16_002 matches, sgd_16_011 is noise), so a
    # jitted verdict may differ from the recorded one, but never be worse; a formula difference is always a failure.
    assert VERDICT_ORDER.index(got) <= VERDICT_ORDER.index(JIT_TRIAGED[name][0]), (name, got, JIT_TRIAGED[name])


@pytest.mark.mindspore
def test_fresh_seed_against_live_mindspore():
    """A seed no fixture was drawn from: generated by MindSpore now, replayed per leaf and fused."""
    python = mindspore_python()
    if python is None:
        pytest.skip("MindSpore is not installed here and JAXOPT_MS_MINDSPORE_PYTHON is not set")
    seed = int(os.environ.get("JAXOPT_MS_RANDOM_SEED", np.random.SeedSequence().entropy % 10**6))
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([python, GENERATOR, "--seed", str(seed), "--per-optimizer", "2", "--quiet", "--out", out],
                       check=True, capture_output=True, timeout=900)
        cases = [case for path in sorted(glob.glob(os.path.join(out, "*.npz"))) for case in load_cases(path)]
    assert len(cases) == 34
    failures = []
    for case in cases:
        for fused in (False, True):
            try:
                replay(case, fused=fused)
            except AssertionError as e:
                failures.append(f"{case.name} fused={fused}: {str(e).splitlines()[0]} ...")
    for case, variant in covering_sample(cases, 48, seed):  # spellings, jit modes, inject (see above)
        try:
            replay_variant(case, variant)
        except AssertionError as e:
            failures.append(f"{case.name} {variant.label}: {str(e).splitlines()[0]} ...")
    assert not failures, f"seed {seed}:\n" + "\n".join(failures)
