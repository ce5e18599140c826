"""CI and the test selection: .ci/run runs README's test command verbatim first, then the slow stage
(``pytest -m slow``); tests marked slow are registered and left out of the default run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI = (ROOT / ".ci" / "run").read_text()


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    commands = [line.strip() for line in readme.splitlines()
                if line.startswith("    ") and "pytest" in line and "pip install" in line]
    assert len(commands) == 1, commands
    return commands[0]


def _ci_commands() -> list[str]:
    return [line.strip() for line in CI.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_readme_test_command_verbatim_before_the_slow_stage():
    commands = _ci_commands()
    first = next(i for i, c in enumerate(commands) if "pytest" in c)
    assert commands[first] == _readme_test_command()
    slow = [i for i, c in enumerate(commands) if re.search(r"pytest -q -m slow\b", c)]
    assert slow and slow[0] > first
    assert "set -euo pipefail" in commands  # a failing default suite stops CI before the slow stage


def test_slow_marker_is_registered_and_left_out_by_default(tmp_path):
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in options["markers"])  # the config's addopts apply below
    (tmp_path / "test_selection.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_sweep():\n    pass\n\ndef test_quick():\n    pass\n")

    def collected(*extra: str) -> set[str]:
        args = [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
                "-p", "no:cacheprovider", "--collect-only", "-q", "-n", "0",
                *extra, str(tmp_path / "test_selection.py")]
        out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True).stdout
        return set(re.findall(r"::(test_\w+)", out))

    assert collected() == {"test_quick"}
    assert collected("-m", "slow") == {"test_sweep"}
