"""Rprop against MindSpore 2.10 (CPU) trajectories: tests/fixtures/rprop (scripts/mindspore_fixtures/family.py)."""

import pytest
from fixture_replay import fixture_params, replay
from parity import case_paths

import jaxopt_ms


@pytest.mark.parametrize("path", fixture_params("rprop"))
def test_matches_mindspore_every_step(path):
    replay(path, jit=True)


def test_matches_mindspore_without_jit():
    replay(case_paths("rprop")[0], jit=False)


def test_inside_optax_chain():
    replay(case_paths("rprop")[-1], in_chain=True)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(etas=[0.5, 1.2]), TypeError, r"'etas'.*list"),
    (dict(etas=(0.5, 1.2, 2.0)), ValueError, r"'etas'.*2\.0"),
    (dict(step_sizes=[1e-6, 50.0]), TypeError, r"'step_sizes'.*list"),
    (dict(step_sizes=(1.0, 0.5)), ValueError, r"'step_sizes'.*0\.5"),
    (dict(etas=(1.5, 1.2)), ValueError, r"'etaminus'.*1\.5"),
    (dict(etas=(1, 1.2)), TypeError, r"'etaminus'.*int"),
    (dict(etas=(0.5, 2)), TypeError, r"'etaplus'.*int"),
    (dict(etas=(0.5, 0.9)), ValueError, r"'etaplus'.*0\.9"),
    (dict(step_sizes=(0, 50.0)), TypeError, r"'min_step_sizes'.*int"),
    (dict(step_sizes=(1e-6, 50)), TypeError, r"'max_step_sizes'.*int"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxopt_ms.rprop(**kwargs)
