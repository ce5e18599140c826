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


def test_demo_trains_prints_and_saves_the_loss_curve_outside_the_current_folder(tmp_path, capsys, monkeypatch):
    cwd, temp = tmp_path / "cwd", tmp_path / "temp"
    cwd.mkdir()
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(cli.tempfile, "gettempdir", lambda: str(temp))
    result = cli.run(["demo", "--optimizer", "adam", "--epochs", "2", *FAST])  # the default --out
    out = temp / "jaxopt-ms" / "demo.png"
    assert not list(cwd.iterdir())
    accuracies = [e.test_accuracy for e in result.epochs]
    assert len(accuracies) == 3 and accuracies[0] < 0.3  # epoch 0 is the untrained network
    assert accuracies[2] > accuracies[0] + 0.5, accuracies
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert any(line.startswith("before training  loss") for line in lines)  # the epoch-0 row is labelled
    assert any(line.startswith("epoch   2 ") and " loss " in line for line in lines)
    assert "test acc" in text and f"loss curve saved to {out}" in text


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
    results = cli.run(["compare", "--optimizers", "sgd, adam", "--epochs", "1", "--out", str(out), *FAST])
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


# (command line, what the one error line must name: the flag and the value). Each must fail before any training.
BAD_INPUT = [
    (["demo", "--group-lr", "fc1=abc"], "--group-lr", "abc"),
    (["demo", "--group-wd", "fc1=x"], "--group-wd", "'x'"),
    (["demo", "--group-lr", "[=0.1"], "--group-lr", "'['"),  # re.error
    (["demo", "--group-gc", "(fc"], "--group-gc", "'(fc'"),
    (["demo", "--group-lr", "=0.1"], "--group-lr", "'=0.1'"),
    (["demo", "--group-lr", "fc1=-0.1"], "--group-lr", "-0.1"),
    (["demo", "--batch-size", "0"], "--batch-size", "'0'"),  # was a ZeroDivisionError
    (["demo", "--batch-size", "ten"], "--batch-size", "'ten'"),
    (["demo", "--batch-size", "5000"], "--batch-size", "5000"),  # larger than the data: 0 steps
    (["demo", "--epochs", "-2"], "--epochs", "'-2'"),
    (["demo", "--epochs", "1.5"], "--epochs", "'1.5'"),
    (["demo", "--seed", "-1"], "--seed", "'-1'"),
    (["demo", "--seed", str(2**70)], "--seed", str(2**70)),  # was an OverflowError inside JAX
    (["demo", "--lr", "nan"], "--lr", "'nan'"),  # trained to 7.8% with exit status 0
    (["demo", "--lr", "inf"], "--lr", "'inf'"),
    (["demo", "--lr", "-0.1"], "--lr", "'-0.1'"),
    (["demo", "--lr", "fast"], "--lr", "'fast'"),
    (["demo", "--weight-decay", "-1"], "--weight-decay", "'-1'"),
    (["demo", "--loss-scale", "0"], "--loss-scale", "'0'"),
    (["demo", "--out", "/nonexistent/dir/x.png"], "--out", "/nonexistent/dir"),  # failed after training
    (["demo", "--out", "curve.txt"], "--out", "curve.txt"),
    (["compare", "--out", "."], "--out", "'.'"),
    (["demo", "--model", "resnet"], "--model", "'resnet'"),
    (["demo", "--schedule", "linear"], "--schedule", "'linear'"),
    (["demo", "--decay-filter", "torch"], "--decay-filter", "'torch'"),
    (["demo", "--lr-list"], "--lr-list", "--schedule"),
    (["demo", "--dynamic-loss-scale", "--loss-scale", "8"], "--dynamic-loss-scale", "8"),
    (["demo", "--opt", "beta2"], "--opt", "'beta2'"),
    (["demo", "--opt", "decay_filter=torch"], "--opt", "'torch'"),
    (["demo", "--opt", "decay_filter=3"], "--opt", "3"),
    (["demo", "-o", "lars", "--opt", "lars_filter=flax"], "--opt", "'flax'"),
    (["demo", "--opt", "learning_rate=abc"], "--opt learning_rate", "'abc'"),
    (["demo", "--opt", "beta1=2"], "argument --opt beta1", "2.0"),
    (["demo", "--opt", "beta1=abc"], "argument --opt beta1", "'abc'"),
    (["demo", "-o", "sgd", "--opt", "momentum=-1"], "argument --opt momentum", "-1.0"),
    (["demo", "--opt", "bogus=1"], "bogus", "no argument"),
    (["demo", "-o", "no_such_optimizer"], "--optimizer", "'no_such_optimizer'"),
    (["demo", "-o", "param_names"], "--optimizer", "'param_names'"),  # a jaxopt_ms function, not an optimizer
    (["demo", "-o", "thor"], "--optimizer", "thor"),
    (["demo", "-o", "lars", "--opt", "optimizer=nope"], "--opt optimizer", "'nope'"),
    (["demo", "-o", "adafactor", "--schedule", "cosine"], "--schedule", "--lr"),
    (["demo", "--group-lr", "fc=0.1", "--group-lr", "fc1=0.2"], "argument --group-lr", "overlap"),
    (["demo", "--group-lr", "nothing=0.1"], "argument --group-lr", "fc1.weight"),  # the names to choose from
    (["demo", "--frobnicate"], "unrecognized", "--frobnicate"),
    (["compare", "--optimizers", "sgd,,adam"], "--optimizers", "'sgd,,adam'"),
    (["compare", "--optimizers", "sgd,nope"], "--optimizers", "'nope'"),
    (["compare", "--optimizers", "sgd,sgd"], "--optimizers", "'sgd,sgd'"),
    (["compare", "--epochs", "0"], "--epochs", "'0'"),
    (["frob"], "command", "'frob'"),
    ([], "command", "required"),
]


@pytest.fixture
def no_training(monkeypatch):
    """Makes any training attempt fail the test: every bad input must be reported before training starts."""
    from jaxopt_ms import _demo

    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(_demo, "train", train)


@pytest.mark.parametrize(("argv", "flag", "value"), BAD_INPUT, ids=[" ".join(a) or "(none)" for a, _, _ in BAD_INPUT])
def test_bad_input_is_one_error_line_with_exit_status_2(argv, flag, value, capsys, no_training):
    assert cli.main([*argv, *FAST] if argv[:1] in (["demo"], ["compare"]) else argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxopt-ms: error: "), captured.err
    assert flag in lines[0] and value in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


# A few of them through the real entry point: a fresh interpreter, as a user types them.
SUBPROCESS_CASES = [["demo", "--group-lr", "[=0.1"], ["demo", "--batch-size", "0"], ["demo", "--lr", "nan"],
                    ["demo", "--out", "/nonexistent/dir/x.png"], ["demo", "--opt", "decay_filter=torch"]]


def _jaxopt_ms(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jaxopt_ms", *argv], env=env, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("argv", SUBPROCESS_CASES, ids=" ".join)
def test_bad_input_in_a_fresh_interpreter_prints_no_traceback(argv, tmp_path):
    done = _jaxopt_ms(*argv, capture_output=True, cwd=tmp_path)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("jaxopt-ms: error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing written


def test_list_into_a_closed_pipe_stops_quietly():
    # `jaxopt-ms list | head -3`: the reader has gone before the output is written (its end of the pipe is closed
    # first, so the write fails every time instead of by chance).
    read, write = os.pipe()
    os.close(read)
    try:
        done = _jaxopt_ms("list", stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_preset_names_are_accepted_for_decay_filter(no_training):
    args = cli.build_parser().parse_args(["demo", "--opt", "decay_filter=flax", "--weight-decay", "1e-3"])
    _, _, kwargs = cli.build_optimizer("adam", args, total_steps=10, steps_per_epoch=5, param_names=["fc1.weight"])
    assert kwargs["decay_filter"] is jaxopt_ms.flax_decay_filter
    for text, preset in (("equinox", "equinox_decay_filter"), ("mindspore", "mindspore_decay_filter"),
                         ("all", "decay_all"), ("flax_decay_filter", "flax_decay_filter"),
                         ("jaxopt_ms.decay_all", "decay_all")):
        args = cli.build_parser().parse_args(["demo", "--opt", f"decay_filter={text}"])
        _, _, kwargs = cli.build_optimizer("sgd", args, total_steps=10, steps_per_epoch=5, param_names=["w"])
        assert kwargs["decay_filter"] is getattr(jaxopt_ms, preset)


def test_compare_strips_spaces_and_help_shows_the_defaults_used():
    parser = cli.build_parser()
    assert parser.parse_args(["compare", "--optimizers", " sgd, adam ,momentum"]).optimizers == [
        "sgd", "adam", "momentum"]
    for command in ("demo", "compare"):
        args = parser.parse_args([command])
        subparser = parser._subparsers._group_actions[0].choices[command]
        text = " ".join(subparser.format_help().split())
        assert f"training epochs (default: {args.epochs})" in text
        assert f"(default: {args.batch_size})" in text and f"(default: {args.out})" in text
    assert parser.parse_args(["compare"]).epochs == 10 and parser.parse_args(["demo"]).epochs == 15


def test_the_plot_goes_to_the_temporary_folder_by_default(monkeypatch, tmp_path):
    monkeypatch.setattr(cli.tempfile, "gettempdir", lambda: str(tmp_path))
    args = cli.build_parser().parse_args(["demo"])
    assert args.out == str(tmp_path / "jaxopt-ms" / "demo.png")
    cli._check_training_arguments(args, ["adam"])
    assert (tmp_path / "jaxopt-ms").is_dir()  # created before training, so saving the plot cannot fail


def test_the_train_size_known_before_loading_is_the_demo_split():
    from jaxopt_ms import _demo

    assert len(_demo.load_digits(0, cli.TEST_FRACTION).y_train) == cli.train_size()


def test_list_shows_whole_first_sentences_in_plain_text(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == cli.available_optimizers()
    for line in lines:
        assert not any(mark in line for mark in ("``", ":func:", ":mod:", ":class:", "`")), line
        assert line.removesuffix("  (not usable in demo/compare)").endswith("."), line

    def documented():
        """Runs ``f`` via :func:`~jaxopt_ms.adam` (see :mod:`jaxopt_ms.sparse`), e.g. twice. Then more text.

        Details."""

    assert cli.summary(documented) == "Runs f via adam (see jaxopt_ms.sparse), e.g. twice."


def test_progress_restarts_its_clock_after_the_compiling_first_step(monkeypatch):
    events = []

    class Bar:
        def update(self, n):
            events.append("update")

        def reset(self, total=None):
            events.append("reset")

        def set_description(self, desc, refresh=True):
            events.append(desc)

        def set_postfix(self, **kwargs):
            pass

        def write(self, text):
            pass

        def close(self):
            pass

    monkeypatch.setattr(cli, "_progress", lambda total, enabled, desc: Bar())
    cli.run(["demo", "--epochs", "1", "--model", "mlp", "--no-plot", "--batch-size", "700"])
    assert events == ["reset", "adam", "update", "update"]  # 2 steps; the ETA counts from the compiled first


def test_bench_passes_flags_to_the_runner_or_says_it_is_missing(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(cli, "benchmark_script", lambda: None)
    assert cli.main(["bench"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("jaxopt-ms: error: bench: no benchmarks/run.py found") and len(err.splitlines()) == 1
    script = tmp_path / "benchmarks" / "run.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setattr(cli, "benchmark_script", lambda: script)
    for argv, passed in ((["bench"], ["--quick"]),
                         (["bench", "--algorithms", "sgd"], ["--quick", "--algorithms", "sgd"]),
                         (["bench", "--", "--algorithms", "sgd"], ["--quick", "--algorithms", "sgd"]),
                         (["bench", "--quick", "--out", "d"], ["--quick", "--out", "d"]),
                         (["bench", "--full", "--algorithms", "sgd"], ["--algorithms", "sgd"]),
                         (["bench", "--runner-help"], ["--help"])):
        assert cli.main(argv) == 3
        assert f"ARGS {passed}" in capfd.readouterr().out
    assert cli.main(["bench", "--help"]) == 0
    assert "every flag is passed to the runner" in " ".join(capfd.readouterr().out.split())


@pytest.mark.parametrize(("argv", "value"), [(["--algorithms", "sgd,nope"], "'nope'"), (["--repeats", "0"], "'0'"),
                                             (["--workloads", "huge"], "'huge'"), (["--frobnicate"], "--frobnicate")])
def test_bench_usage_errors_of_the_runner_are_one_line_too(argv, value, capfd):
    assert cli.main(["bench", *argv]) == 2
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("jaxopt-ms: error: ") and value in err, err
    assert "Traceback" not in err


def test_python_m_entry_point_and_import_stays_light():
    code = ("import sys, jaxopt_ms; heavy = [m for m in ('jaxopt_ms._demo', 'jaxopt_ms.cli', 'sklearn', 'matplotlib',"
            " 'tqdm') if m in sys.modules]; assert not heavy, heavy")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    out = subprocess.run([sys.executable, "-m", "jaxopt_ms", "list"], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.split()[0] == "sgd" and "\nadam " in out.stdout
