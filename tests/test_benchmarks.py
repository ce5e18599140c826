"""The benchmark runner runs end to end in quick mode and writes its JSON, markdown and plot (no timing checks)."""

from __future__ import annotations

import json
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def test_runner_quick_mode_writes_results(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(BENCHMARKS)
    monkeypatch.delenv("JAXOPT_MS_BENCH_MINDSPORE", raising=False)
    import run

    assert run.main(["--quick", "--workloads", "leaves", "--algorithms", "adam,lamb", "--models",
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
    assert "fraction of copy bandwidth" in table
    assert (tmp_path / "results.png").stat().st_size > 0
    sys.modules.pop("run", None)
    sys.modules.pop("workloads", None)


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
