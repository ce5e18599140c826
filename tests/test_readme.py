"""README.md runs as written: every Python block verbatim in a fresh interpreter, its commands consistent with the
CI entry point and the command line."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jaxopt_ms import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

# Checks run after a block, in the same interpreter, on what the block computed; keyed by a line of the block.
CHECKS = {
    "state = jaxopt_ms.set_lr(state, 5e-4)": """
assert float(loss) > 0
assert abs(float(jaxopt_ms.current_lr(state)) - 5e-4) < 1e-9
""",
    "jaxopt_ms.current_lr(state)   # one learning rate per group": """
assert [round(float(v), 6) for v in jaxopt_ms.current_lr(state)] == [0.1, 0.01]
updates, state = opt.update(params, state, params)
assert all(bool((u != 0).all()) for u in jax.tree.leaves(updates))  # both groups train
""",
    "optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)": """
import math
assert math.isfinite(float(loss)) and float(loss) > 0
assert float(train_step(model, optimizer, jnp.ones((8, 4)), jnp.zeros((8, 2)))) < float(loss)
""",
    "opt_state = tx.init(eqx.filter(model, eqx.is_array))": """
import math
assert math.isfinite(float(loss)) and float(loss) > 0
assert float(train_step(model, opt_state, jnp.ones((8, 4)), jnp.zeros((8, 2)))[2]) < float(loss)
""",
    "params, state, loss = thor_step(": """
import math
assert math.isfinite(float(loss))
""",
    "params = jaxopt_ms.fused.unflatten(flat)": """
first = float(loss_fn(jax.tree.map(jnp.zeros_like, params), batch))
assert float(loss) < first
assert jax.tree.structure(params) == jax.tree.structure({"fc": {"weight": 0, "bias": 0}})
""",
}


def _check_for(block: str) -> str:
    keys = [k for k in CHECKS if k in block]
    assert len(keys) <= 1, keys
    return "import jax\n" + CHECKS[keys[0]] if keys else ""


def test_every_check_belongs_to_exactly_one_block():
    assert len(BLOCKS) >= 6
    for key in CHECKS:
        assert sum(key in b for b in BLOCKS) == 1, key


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_block_runs_as_written_in_a_fresh_interpreter(block, tmp_path):
    for module in re.findall(r"^(?:from|import) (\w+)", block, flags=re.M):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    done = subprocess.run([sys.executable, "-c", block + "\n" + _check_for(block)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.iterdir())  # and writes nothing


def _commands() -> list[str]:
    """The indented command lines of README (continuations joined, comments removed)."""
    text = re.sub(r"\\\n\s*", " ", README)
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith("    ")
            and line.strip().startswith((".venv/bin/", "python3.11 ", "PYTHONPATH="))]


def test_the_test_command_is_the_one_ci_runs():
    test_command = "python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"
    assert test_command in _commands()
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[demo]' && .venv/bin/python -m jaxopt_ms demo" \
        in _commands()


def test_command_line_examples_parse():
    examples = [shlex.split(c) for c in _commands() if c.startswith(".venv/bin/jaxopt-ms")]
    assert {e[1] for e in examples} == {"demo", "compare", "bench", "list"}
    runner_help = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"], capture_output=True,
                                 text=True, check=True).stdout
    for argv in examples:
        if argv[1] == "bench":
            for flag in (a for a in argv[2:] if a.startswith("--")):
                assert flag in runner_help or flag in cli.BENCH_HELP, (flag, argv)
            continue
        args = cli.build_parser().parse_args(argv[1:])  # raises CliError on any flag or value it rejects
        if args.command != "list":
            args.plot = False
            names = (args.optimizers or []) if args.command == "compare" else [args.optimizer]
            cli._check_training_arguments(args, names)
