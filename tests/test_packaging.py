"""Packaging: the wheel ships ``py.typed`` and the Apache-2.0 LICENSE, its metadata carries the license, project
URLs, classifiers and the one version (``jaxopt_ms.__version__``), and a type checker accepts a user's script over
the public API while rejecting misuse of it (so the annotations are really seen)."""

from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jaxopt_ms

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TYPING = Path(__file__).resolve().parent / "typing"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the checkout (a build writes egg-info and build/ beside its sources)."""
    pytest.importorskip("setuptools", minversion="77")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "jaxopt_ms", src / "jaxopt_ms", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(work / "dist"), str(src)], check=True, cwd=work, capture_output=True)
    (path,) = (work / "dist").glob("jaxopt_ms-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_wheel_ships_py_typed_and_the_license(wheel):
    names = wheel.namelist()
    assert "jaxopt_ms/py.typed" in names
    (license_name,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_name).decode() == (ROOT / "LICENSE").read_text()
    assert (ROOT / "jaxopt_ms" / "py.typed").exists()


def test_license_is_the_apache_2_text_the_metadata_declares(wheel):
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(text.split()) > 1500  # the full text, not a notice
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert _metadata(wheel)["License-Expression"] == "Apache-2.0"


def test_metadata_has_urls_and_classifiers(wheel):
    meta = _metadata(wheel)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3" in classifiers
    minimum = tuple(int(v) for v in re.fullmatch(r">=(\d+)\.(\d+)", meta["Requires-Python"]).groups())
    versions = [tuple(int(v) for v in c.rsplit(" ", 1)[1].split(".")) for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions and min(versions) == minimum
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX expression says it


def test_version_is_written_in_one_place(wheel):
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "jaxopt_ms.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", jaxopt_ms.__version__)
    assert _metadata(wheel)["Version"] == jaxopt_ms.__version__
    literal = re.compile(rf"""["']{re.escape(jaxopt_ms.__version__)}["']""")
    written = [p.relative_to(ROOT) for p in [ROOT / "pyproject.toml", *(ROOT / "jaxopt_ms").rglob("*.py")]
               if literal.search(p.read_text())]
    assert written == [Path("jaxopt_ms/__init__.py")]


def _mypy(path: Path, cache: Path) -> subprocess.CompletedProcess:
    # The checkout's package (MYPYPATH) with its py.typed annotations; optax, chex and friends ship no types.
    # Only the user's file is reported: the library's internals are not what this checks.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "", "--cache-dir", str(cache), "--follow-imports=silent",
         "--ignore-missing-imports", "--no-error-summary", "--hide-error-context", str(path)],
        cwd=cache.parent, capture_output=True, text=True, env={"MYPYPATH": str(ROOT), "PATH": ""})


def test_type_checker_accepts_the_public_api_and_rejects_misuse(tmp_path):
    pytest.importorskip("mypy")
    cache = tmp_path / "mypy_cache"
    good = _mypy(TYPING / "public_api_usage.py", cache)
    assert good.returncode == 0, good.stdout + good.stderr
    misuse = tmp_path / "misuse.py"
    misuse.write_text(
        "import jaxopt_ms\n"
        "from jaxopt_ms import dynamic_lr, schedules\n"
        "count: int = jaxopt_ms.current_lr(None)\n"
        "name: str = schedules.cosine_decay(0.01, 0.1, 100)\n"
        "steps: dict = dynamic_lr.warmup_lr(0.1, 20, 5, 2)\n")
    bad = _mypy(misuse, cache)
    reported = sorted(int(n) for n in re.findall(r"misuse\.py:(\d+): error", bad.stdout))
    assert bad.returncode == 1 and reported == [3, 4, 5], bad.stdout + bad.stderr
