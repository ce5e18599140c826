"""CI and the test selection: .ci/run runs README's test command verbatim first, then the default suite at both
ends of the supported range (the floor pinned by .ci/floor-constraints.txt on the oldest supported Python, the
newest releases unpinned on the newest), then the slow stage (``pytest -m slow``); tests marked slow are registered
and left out of the default run."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CI = (ROOT / ".ci" / "run").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
FLOOR = ROOT / ".ci" / "floor-constraints.txt"


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
    options = PYPROJECT["tool"]["pytest"]["ini_options"]
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


def _ci_value(name: str) -> str:
    (value,) = re.findall(rf"^{name}=(\S+)", CI, re.MULTILINE)
    return value


def _supported_pythons() -> list[Version]:
    return sorted(Version(c.rsplit(" ", 1)[1]) for c in PYPROJECT["project"]["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))


def test_ci_runs_the_default_suite_at_the_floor_and_on_the_newest_releases_before_the_slow_stage():
    commands = _ci_commands()
    first = next(i for i, c in enumerate(commands) if "pytest" in c)
    slow = next(i for i, c in enumerate(commands) if re.search(r"pytest -q -m slow\b", c))
    floor = [i for i, c in enumerate(commands) if c.startswith("suite_in_fresh_venv .venv-floor")]
    newest = [i for i, c in enumerate(commands) if c.startswith("suite_in_fresh_venv .venv-newest")]
    assert len(floor) == len(newest) == 1 and first < floor[0] < newest[0] < slow
    assert commands[floor[0]] == 'suite_in_fresh_venv .venv-floor "${oldest_python}" -c .ci/floor-constraints.txt'
    assert commands[newest[0]] == 'suite_in_fresh_venv .venv-newest "${newest_python}"'  # unpinned
    # Both ends of the Python range that pyproject.toml promises.
    pythons = _supported_pythons()
    assert PYPROJECT["project"]["requires-python"] == f">={pythons[0]}"
    assert Version(_ci_value("oldest_python")) == pythons[0] and Version(_ci_value("newest_python")) == pythons[-1]
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{str(pythons[0]).replace('.', '')}"
    # The default suite in each venv, with the configured options; the venvs are ignored by git.
    assert '"${venv}/bin/python" -m pytest -q' in commands
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {".venv/", ".venv-floor/", ".venv-newest/"} <= set(ignored)


def test_floor_constraints_pin_every_lower_bound_that_pyproject_declares():
    pins = {}
    for line in FLOOR.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    project = PYPROJECT["project"]
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    lower = {r.name.lower(): Version(s.version) for r in requirements for s in r.specifier if s.operator == ">="}
    for name in ("jax", "jaxlib", "optax", "chex", "numpy"):  # every runtime dependency is pinned at its bound
        assert name in pins and lower[name] == pins[name], name
    assert {r.name for r in map(Requirement, project["dependencies"])} == {"jax", "jaxlib", "optax", "chex", "numpy"}
    for name, version in pins.items():  # a pinned test dependency is pinned at its declared bound
        assert name not in lower or lower[name] == version, name
    assert {"flax", "equinox", "scipy", "ml-dtypes"} <= set(pins)


def test_ci_fails_when_an_interpreter_is_missing(tmp_path):
    function = re.search(r"^find_python\(\) \{\n.*?^\}\n", CI, re.MULTILINE | re.DOTALL).group(0)
    script = f"set -euo pipefail\n{function}find_python 3.0\necho reached\n"
    env = {"PATH": "/usr/bin:/bin", "PYENV_ROOT": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "reached" not in out.stdout
    assert "Python 3.0 is not installed" in out.stderr
    # One installed under pyenv's versions/ is found (the newest patch release) when the PATH has none.
    for patch in ("3.0.2", "3.0.10"):
        exe = tmp_path / "versions" / patch / "bin" / "python3.0"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [str(tmp_path / "versions" / "3.0.10" / "bin" / "python3.0"), "reached"]
