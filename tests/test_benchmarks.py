"""The benchmark runner runs end to end in quick mode, writes outside the checkout, and reports no figure that no
memory-bound step can reach (no timing checks: speed is measured by the benchmarks themselves)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delenv("JAXOPT_MS_BENCH_MINDSPORE", raising=False)
    import run

    yield run
    sys.modules.pop("run", None)
    sys.modules.pop("workloads", None)


def test_runner_quick_mode_writes_results(tmp_path, runner):
    pytest.importorskip("matplotlib")
    assert runner.main(["--quick", "--workloads", "leaves", "--algorithms", "adam", "--models",
                        "demo_mlp,transformer", "--repeats", "1", "--rounds", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    libraries = {(r["algorithm"], r["library"]) for r in result["optimizer"] if "step_ms" in r}
    for alg in ("adam",):
        assert {(alg, "jaxopt_ms per-leaf"), (alg, "jaxopt_ms fused"), (alg, "optax")} <= libraries
    assert all(r["step_ms"] > 0 and r["first_call_s"] > 0 for r in result["optimizer"] if "step_ms" in r)
    # the copy limit is timed in the same interleaved rounds; every step gets its best-of fraction of it
    assert {("adam", "copy x * s"), ("adam", "copy x * s, step's bytes")} <= libraries
    assert all(0 < r["best_ms"] <= r["step_ms"] and r["best_fraction_of_copy"] > 0
               for r in result["optimizer"] if "step_ms" in r)
    variants = {r["variant"] for r in result["training"]}
    assert "flat, fused.view (custom VJP), fused adam" in variants and "forward + backward alone" in variants
    assert {r["model"] for r in result["training"]} == {"demo_mlp", "transformer"}
    table = (tmp_path / "results.md").read_text()
    assert "| 50 leaves x 64 | adam |" in table and "fused / optax" in table
    assert "Quick mode is a smoke run" in table and "fraction of copy bandwidth" in table
    assert (tmp_path / "results.png").stat().st_size > 0
    # Every reported figure is physically possible, or flagged and shown as n/a.
    for r in result["optimizer"]:
        if "step_ms" in r:
            assert r.get("flag") or 0 < r["fraction_of_copy"] <= 1, r
    for r in result["training"]:
        assert r.get("flag") or r["vs_fwd_bwd"] >= 1, r
    # The table shows a bandwidth per (workload, algorithm): the fused step's; and a ratio per training row.
    shown = result["training"] + [r for r in result["optimizer"] if r["library"] == "jaxopt_ms fused"]
    flagged = sum(bool(r.get("flag")) for r in shown)
    assert table.count("n/a (") == flagged


def test_figures_no_memory_bound_step_can_reach_are_flagged_not_reported(runner):
    # The quick-mode figures once published: a training step faster than forward + backward alone (0.552) and a
    # step at 181% of the copy bandwidth.
    result = {"machine": "m", "jax": "j", "optax": "o", "scale": "quick", "repeats": 3, "rounds": 1, "date": "d",
              "skipped": [],
              "optimizer": [dict(workload="flat", algorithm="adam", library=lib, step_ms=ms, first_call_s=0.1,
                                 bytes=1, gbps=g, copy_gbps=10.0, fraction_of_copy=g / 10.0)
                            for lib, ms, g in (("jaxopt_ms fused", 0.02, 18.1), ("optax", 0.03, 9.0))],
              "training": [dict(model="mlp", title="MLP", params=1, variant=v, step_ms=ms, first_call_s=0.1,
                                vs_fwd_bwd=ratio)
                           for v, ms, ratio in (("forward + backward alone", 1.0, 1.0), ("fused", 0.552, 0.552),
                                                ("optax", 1.2, 1.2))]}
    runner.flag_unphysical(result)
    fused, optax = result["optimizer"]
    assert fused["flag"] == runner.BANDWIDTH_FLAG and fused["fraction_of_copy"] is None
    assert fused["measured_fraction_of_copy"] == pytest.approx(1.81)
    assert "flag" not in optax and optax["fraction_of_copy"] == pytest.approx(0.9)
    assert [bool(r.get("flag")) for r in result["training"]] == [False, True, False]
    table = runner.markdown(result)
    assert "n/a (181% measured: overhead-bound)" in table and "181%)" not in table.replace("181% measured", "")
    assert "n/a (0.552 measured: overhead-bound)" in table and "| 1.200 |" in table


def _checkout_state() -> tuple[str, dict[str, int]]:
    """``git status`` of the checkout and the modification times of its tracked files (of every file outside
    caches when it is not a git checkout)."""
    if shutil.which("git") and (ROOT / ".git").exists():
        git = functools.partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, check=True)
        status = git(["git", "status", "--porcelain", "--untracked-files=all"]).stdout
        files = git(["git", "ls-files"]).stdout.splitlines()
    else:
        status, files = "", []
        skip = {".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints"}
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
            files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    return status, {f: os.stat(ROOT / f).st_mtime_ns for f in files if (ROOT / f).exists()}


def test_bench_command_writes_nothing_into_the_checkout(tmp_path):
    pytest.importorskip("matplotlib")
    before = _checkout_state()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("JAXOPT_MS_BENCH_MINDSPORE", None)
    done = subprocess.run([sys.executable, "-m", "jaxopt_ms", "bench", "--workloads", "flat", "--no-training",
                           "--repeats", "2", "--rounds", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--quick" in done.stdout.splitlines()[0]  # 'running: ... run.py --quick --workloads flat ...'
    out = Path(re.search(r"^results written to (.+)$", done.stdout, re.M).group(1))
    assert out.parent == tmp_path  # a new temporary folder
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "results.png"}
    assert json.loads((out / "results.json").read_text())["scale"] == "quick"
    assert _checkout_state() == before


def test_passes_reads_the_traffic_of_compiled_fused_steps(monkeypatch, capsys):
    """benchmarks/passes.py: SGD is one pass at the minimum (12 B per parameter); Adam moves at least its 28 B."""
    monkeypatch.syspath_prepend(BENCHMARKS)
    import passes

    assert passes.main(["sgd", "adam", "--size", "4096"]) == 0
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| sgd") or line.startswith("| adam")}
    assert rows["sgd"] == ["1", "12", "12", "1.00"]
    n_passes, moved, minimum = (int(c) for c in rows["adam"][:3])
    assert minimum == 28 and moved >= minimum and n_passes >= 1
    sys.modules.pop("passes", None)
