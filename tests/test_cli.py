"""The command line (``jaxopt-ms`` / ``python -m jaxopt_ms``): demo, compare, bench, list."""

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import jaxopt_ms
from jaxopt_ms import cli

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--model", "mlp", "--no-progress"]


def test_demo_trains_prints_and_saves_the_loss_curve(tmp_path, capsys):
    out = tmp_path / "curve.png"
    result = cli.run(["demo", "--optimizer", "adam", "--epochs", "2", "--out", str(out), *FAST])
    accuracies = [e.test_accuracy for e in result.epochs]
    assert len(accuracies) == 3 and accuracies[0] < 0.3  # epoch 0 is the untrained network
    assert accuracies[2] > accuracies[0] + 0.5, accuracies
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "epoch   2  loss" in text and "test acc" in text and "final test accuracy" in text


def test_demo_with_groups_schedule_free_weight_decay_and_decay_filter(capsys):
    result = cli.run(["demo", "-o", "momentum", "--epochs", "1", "--weight-decay", "1e-4", "--decay-filter", "flax",
                      "--group-lr", "fc1=0.02", "--group-wd", "fc3=1e-3", "--opt", "use_nesterov=True",
                      "--no-plot", *FAST])
    text = capsys.readouterr().out
    assert "{params: 'fc1', lr: 0.02}" in text and "use_nesterov=True" in text
    assert result.epochs[-1].learning_rate == "(0.02, 0.05, 0.05)"  # one lr per group, the rest group last
    assert result.test_accuracy > 0.5


def test_loss_scale_power_of_two_leaves_the_trajectory_unchanged():
    # The loss is multiplied by 128 and the optimizer divides the gradients by it again: a power of two, so the
    # trajectory is the same up to rounding differences of XLA's fusion choices.
    plain = cli.run(["demo", "-o", "momentum", "--epochs", "1", "--no-plot", *FAST])
    scaled = cli.run(["demo", "-o", "momentum", "--epochs", "1", "--no-plot", "--loss-scale", "128", *FAST])
    np.testing.assert_allclose(scaled.step_losses, plain.step_losses, rtol=1e-4)


@pytest.mark.skipif(not hasattr(jaxopt_ms, "schedules"), reason="jaxopt_ms.schedules not in this version")
def test_demo_with_a_schedule():
    result = cli.run(["demo", "--epochs", "1", "--schedule", "cosine", "--no-plot", *FAST])
    assert float(result.epochs[-1].learning_rate) < float(result.epochs[0].learning_rate)


def test_schedule_flags_call_the_schedule_and_dynamic_lr_modules_with_design_signatures(monkeypatch):
    # Stand-ins with the signatures of DESIGN.md, so the wiring is tested whether or not the modules are present.
    calls = []

    def cosine_decay(min_lr, max_lr, decay_steps):
        calls.append(("cosine_decay", min_lr, max_lr, decay_steps))
        return lambda step: max_lr * (1 - step / decay_steps) + min_lr

    def cosine_decay_lr(min_lr, max_lr, total_step, step_per_epoch, decay_epoch):
        calls.append(("cosine_decay_lr", min_lr, max_lr, total_step, step_per_epoch, decay_epoch))
        return [max_lr / (1 + i // step_per_epoch) for i in range(total_step)]

    monkeypatch.setitem(sys.modules, "jaxopt_ms.schedules", types.SimpleNamespace(cosine_decay=cosine_decay))
    monkeypatch.setitem(sys.modules, "jaxopt_ms.dynamic_lr", types.SimpleNamespace(cosine_decay_lr=cosine_decay_lr))
    result = cli.run(["demo", "--epochs", "2", "--lr", "0.01", "--schedule", "cosine", "--no-plot", *FAST])
    assert calls == [("cosine_decay", 0.0, 0.01, 44)]
    assert float(result.epochs[1].learning_rate) == pytest.approx(0.005, rel=1e-5)  # the schedule at step 22
    result = cli.run(["demo", "--epochs", "2", "--lr", "0.01", "--schedule", "cosine", "--lr-list",
                      "--group-lr", "fc3=0.1", "--no-plot", *FAST])
    assert calls[1:] == [("cosine_decay_lr", 0.0, 0.01, 44, 22, 2), ("cosine_decay_lr", 0.0, 0.1, 44, 22, 2)]
    assert result.epochs[1].learning_rate == "(0.05, 0.005)"


def test_compare_prints_a_table_and_saves_one_plot(tmp_path, capsys):
    out = tmp_path / "compare.png"
    results = cli.run(["compare", "--optimizers", "sgd,adam", "--epochs", "1", "--out", str(out), *FAST])
    assert [r.name for r in results] == ["sgd", "adam"]
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("optimizer"))
    assert "test acc" in header
    assert sum(line.startswith(("sgd ", "adam ")) for line in text.splitlines()) == 4  # progress + table rows
    assert out.stat().st_size > 1000


def test_compare_skips_an_optimizer_that_rejects_the_settings(capsys):
    results = cli.run(["compare", "--optimizers", "adam_weight_decay,sgd", "--epochs", "1", "--loss-scale", "8",
                       "--no-plot", *FAST])
    assert [r.name for r in results] == ["sgd"]  # AdamWeightDecay has no loss_scale, as in MindSpore
    assert "adam_weight_decay  skipped: optimizer 'adam_weight_decay' has no argument(s) ['loss_scale']" in (
        capsys.readouterr().out)


def test_a_wrapper_optimizer_gets_the_inner_optimizer_built_from_the_flags(monkeypatch):
    seen = {}

    def lars(optimizer, epsilon=1e-5, coefficient=0.001, use_clip=False, lars_filter=None):
        seen.update(optimizer=optimizer, coefficient=coefficient)
        return optimizer

    monkeypatch.setattr(jaxopt_ms, "lars", lars, raising=False)
    result = cli.run(["demo", "-o", "lars", "--opt", "coefficient=0.01", "--opt", "use_nesterov=True",
                      "--weight-decay", "1e-4", "--epochs", "1", "--no-plot", *FAST])
    inner = seen["optimizer"]
    assert seen["coefficient"] == 0.01 and inner.factory is jaxopt_ms.momentum
    assert inner.arguments["use_nesterov"] is True and inner.arguments["weight_decay"] == 1e-4
    assert inner.arguments["learning_rate"] == 0.1 and result.test_accuracy > 0.5


def test_usage_errors_exit_2_with_a_message(capsys):
    assert cli.main(["demo", "-o", "no_such_optimizer", *FAST]) == 2
    assert "unknown optimizer 'no_such_optimizer'; available: sgd, momentum, adam" in capsys.readouterr().err
    assert cli.main(["demo", "--opt", "bogus=1", *FAST]) == 2
    assert "has no argument(s) ['bogus']" in capsys.readouterr().err
    assert cli.main(["demo", "--group-lr", "fc=0.1", "--group-lr", "fc1=0.2", *FAST]) == 2
    assert "must not overlap" in capsys.readouterr().err


def test_bench_runs_the_benchmark_script_or_says_it_is_missing(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(cli, "benchmark_script", lambda: None)
    assert cli.main(["bench"]) == 1
    assert "no benchmarks/run.py found" in capfd.readouterr().err
    script = tmp_path / "benchmarks" / "run.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setattr(cli, "benchmark_script", lambda: script)
    assert cli.main(["bench"]) == 3
    assert "ARGS ['--quick']" in capfd.readouterr().out
    assert cli.main(["bench", "--", "--only", "adam"]) == 3
    assert "ARGS ['--only', 'adam']" in capfd.readouterr().out


def test_python_m_entry_point_and_import_stays_light():
    code = ("import sys, jaxopt_ms; heavy = [m for m in ('jaxopt_ms._demo', 'jaxopt_ms.cli', 'sklearn', 'matplotlib',"
            " 'tqdm') if m in sys.modules]; assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    out = subprocess.run([sys.executable, "-m", "jaxopt_ms", "list"], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split()[0] == "sgd" and "\nadam " in out.stdout
