"""Long-horizon parity: how far jaxopt_ms and MindSpore drift apart over many steps, and why.

Draws ``--per-optimizer`` random cases of every optimizer with ``--steps`` steps (scripts/mindspore_fixtures/
random_cases.py, run by MindSpore's Python into a temporary folder unless ``--cases`` names a folder of them), then
prints a Markdown table: per optimizer, the largest deviation (in units of the parity tolerance
``1e-6 + 1e-5 |want|``, max over its cases, leaves and elements) up to each reported step, of jaxopt_ms against
MindSpore (``jax-ms``), and of each against the float64 replay of the same formulas (``jax-f64``, ``ms-f64``;
scripts/triage_float64.py), with the triage verdict. Nothing is written inside the checkout::

    python scripts/long_horizon.py --mindspore-python /path/to/mindspore/python --seed 200 --steps 200
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from triage_float64 import cases_of, triage  # noqa: E402


def table(folder: str, marks: list[int]) -> str:
    rows: dict[str, list[dict]] = {}
    errors: dict[str, str] = {}
    for case in cases_of(sorted(glob.glob(os.path.join(folder, "*.npz")))):
        try:
            rows.setdefault(case.config["optimizer"], []).append(triage(case))
        except Exception as e:  # a case jaxopt_ms cannot build or run is a finding too
            errors[case.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    head = "| optimizer | " + " | ".join(f"≤ step {m}: jax-ms / jax-f64 / ms-f64" for m in marks) + " | verdict |"
    lines = [head, "|" + "---|" * (len(marks) + 2)]
    for optimizer, results in rows.items():
        cells = []
        for m in marks:
            worst = [max(float(np.max(r[k][:m])) for r in results) for k in ("diff", "jax", "ms")]
            cells.append(" / ".join(f"{w:.2g}" for w in worst))
        verdicts = sorted({r["verdict"] for r in results})
        lines.append(f"| {optimizer} | " + " | ".join(cells) + f" | {', '.join(verdicts)} |")
    lines += [f"\n{name}: {error}" for name, error in errors.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mindspore-python", help="a Python with MindSpore 2.10 (to draw the cases)")
    parser.add_argument("--cases", help="a folder of cases already drawn (instead of --mindspore-python)")
    parser.add_argument("--seed", type=int, default=200)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--per-optimizer", type=int, default=2)
    parser.add_argument("--marks", default="10,50,100,200")
    args = parser.parse_args()
    marks = [int(m) for m in args.marks.split(",") if int(m) <= args.steps]
    if args.cases:
        print(table(args.cases, marks))
        return
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([args.mindspore_python, os.path.join(ROOT, "scripts", "mindspore_fixtures", "random_cases.py"),
                        "--seed", str(args.seed), "--steps", str(args.steps), "--per-optimizer",
                        str(args.per_optimizer), "--quiet", "--out", out], check=True, capture_output=True)
        print(table(out, marks))


if __name__ == "__main__":
    main()
