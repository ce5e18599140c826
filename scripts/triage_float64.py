"""Float32 rounding noise or a formula difference? Triage of MindSpore parity cases against a float64 replay.

For a case of a multi-case fixture (scripts/mindspore_fixtures/random_cases.py), the same jaxopt_ms optimizer is
replayed twice: in float32 (as the tests do) and in float64 (``jax.enable_x64``; parameters and gradients cast to
float64; Python hyperparameters are still rounded to float32 once, as MindSpore does, so only the arithmetic is
wider). The float64 run is the trajectory of jaxopt_ms's formulas without rounding. Then, in units of the parity
tolerance ``1e-6 + 1e-5 |ref|`` (max over leaves and elements, per step):

* ``jax``: jaxopt_ms float32 against float64 (its own rounding);
* ``ms``: MindSpore against jaxopt_ms float64;
* ``ulp``: jaxopt_ms float32 from parameters and gradients moved by one float32 ulp, against float64 (how far
  float32 rounding alone scatters this trajectory);
* ``diff``: jaxopt_ms float32 against MindSpore (what the tests check; a case fails when it exceeds 1).

A failing case is **noise** only when MindSpore is itself as far from the float64 trajectory as jaxopt_ms is
(``ms >= jax / 2``) and no farther than float32 rounding scatters it (``ms <= 4 max(jax, ulp)``): both float32
runs scatter around the same exact trajectory (rounding amplified, e.g. by cancellation or a division by a tiny
``sqrt(v) + eps``). ``ms`` beyond that means MindSpore follows another formula than jaxopt_ms (**formula**);
``jax`` far above ``ms`` means jaxopt_ms's float32 order of operations loses accuracy MindSpore keeps
(**jaxopt rounding**, a defect too).

    python scripts/triage_float64.py tests/fixtures/random/adam.npz adam_16_003
    python scripts/triage_float64.py --all tests/fixtures/random          # every case; failing ones triaged
    python scripts/triage_float64.py --growth 10,50,100,200 DIR           # deviation against steps
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from fixture_replay import build  # noqa: E402
from parity import Case, load_cases, run_trajectory  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def deviation(got: list, ref: list) -> np.ndarray:
    """Per step: max over leaves of ``|got - ref| / (ATOL + RTOL |ref|)`` (NaN where one side is NaN and the
    other not counts as infinite)."""
    out = []
    for g, r in zip(got, ref):
        worst = 0.0
        for name in r:
            a, b = np.asarray(g[name], np.float64), np.asarray(r[name], np.float64)
            both_nan = np.isnan(a) & np.isnan(b)
            d = np.where(both_nan, 0.0, np.abs(a - b) / (ATOL + RTOL * np.abs(b)))
            d = np.where(np.isnan(d), np.inf, d)
            worst = max(worst, float(d.max(initial=0.0)))
        out.append(worst)
    return np.array(out)


def nudge(tree: dict, rng: np.random.Generator) -> dict:
    """Every element moved by one float32 ulp, up or down at random."""
    up = np.float32(np.inf)
    return {k: np.nextafter(v, np.where(rng.uniform(size=v.shape) < 0.5, -up, up).astype(np.float32))
            for k, v in tree.items()}


def replays(case: Case, fused: bool = False, jit: bool = False) -> tuple[list, list, list]:
    """jaxopt_ms float32, float64, and float32 from inputs moved by one ulp, trajectories of ``case`` (``jit``: the
    updates jitted, as XLA compiles them; else eager)."""
    got32 = run_trajectory(build(case.config), case.params0, case.grads, jit=jit, fused=fused)
    rng = np.random.default_rng(0)
    nudged = run_trajectory(build(case.config), nudge(case.params0, rng), [nudge(g, rng) for g in case.grads],
                            jit=jit, fused=fused)
    with jax.enable_x64(True):
        p64 = {k: v.astype(np.float64) for k, v in case.params0.items()}
        g64 = [{k: v.astype(np.float64) for k, v in g.items()} for g in case.grads]
        got64 = run_trajectory(build(case.config), p64, g64, jit=False, fused=fused)
    return got32, got64, nudged


def verdict(diff: float, dev_jax: float, dev_ms: float, dev_ulp: float) -> str:
    """``noise`` needs MindSpore as far from float64 as jaxopt_ms (``ms >= jax / 2``) and within the scatter
    float32 rounding gives this trajectory (``ms <= 4 max(jax, ulp)``, ``ulp``: inputs moved by one ulp)."""
    if diff <= 1.0:
        return "match"
    if dev_ms > 4 * max(dev_jax, dev_ulp):
        return "formula"
    if dev_ms >= dev_jax / 2:
        return "noise"
    return "jaxopt rounding"


def triage(case: Case, fused: bool = False, jit: bool = False) -> dict:
    got32, got64, nudged = replays(case, fused, jit)
    diff, dev_jax, dev_ms = deviation(got32, case.traj), deviation(got32, got64), deviation(case.traj, got64)
    dev_ulp = deviation(nudged, got64)
    first = int(np.argmax(diff > 1.0)) if (diff > 1.0).any() else None
    return {"case": case.name, "steps": len(case.traj), "diff": diff, "jax": dev_jax, "ms": dev_ms, "ulp": dev_ulp,
            "first_failing_step": first,
            "verdict": verdict(diff.max(), dev_jax.max(), dev_ms.max(), dev_ulp.max())}


def report(r: dict) -> str:
    return (f"{r['case']}: {r['verdict']}  diff(jax32-ms)={r['diff'].max():.3g}  jax32-f64={r['jax'].max():.3g}  "
            f"ms-f64={r['ms'].max():.3g}  ulp-f64={r['ulp'].max():.3g}  "
            f"(tolerance units; first failing step {r['first_failing_step']})")


def cases_of(paths: list[str]) -> list[Case]:
    return [c for p in paths for c in load_cases(p)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="a .npz and case names, or with --all / --growth folders")
    parser.add_argument("--all", action="store_true", help="replay every case of the folders; triage failures")
    parser.add_argument("--growth", help="comma-separated steps: deviation at those steps, every case")
    parser.add_argument("--fused", action="store_true", help="triage the fused replay")
    parser.add_argument("--jit", action="store_true", help="triage the jitted replay")
    args = parser.parse_args()
    if args.growth:
        steps = [int(s) for s in args.growth.split(",")]
        print("case | " + " | ".join(f"step {s}: jax32-ms / jax32-f64 / ms-f64" for s in steps))
        for case in cases_of(sorted(p for d in args.paths for p in glob.glob(os.path.join(d, "*.npz")))):
            r = triage(case, args.fused, args.jit)
            cells = [f"{r['diff'][s - 1]:.3g} / {r['jax'][s - 1]:.3g} / {r['ms'][s - 1]:.3g}" for s in steps
                     if s <= r["steps"]]
            print(f"{case.name} | " + " | ".join(cells) + f" | {r['verdict']}")
        return
    if args.all:
        cases = cases_of(sorted(p for d in args.paths for p in glob.glob(os.path.join(d, "*.npz"))))
        results = [triage(c, args.fused, args.jit) for c in cases]
        for r in results:
            if r["verdict"] != "match":
                print(report(r))
        counts: dict[str, int] = {}
        for r in results:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        print(f"{len(results)} cases: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return
    path, names = args.paths[0], set(args.paths[1:])
    for case in load_cases(path):
        if not names or case.name in names:
            r = triage(case, args.fused, args.jit)
            print(report(r))
            print("  per step diff:", np.array2string(r["diff"], precision=3))
            print("  per step jax32-f64:", np.array2string(r["jax"], precision=3))
            print("  per step ms-f64:", np.array2string(r["ms"], precision=3))
            print("  per step ulp-f64:", np.array2string(r["ulp"], precision=3))


if __name__ == "__main__":
    main()
