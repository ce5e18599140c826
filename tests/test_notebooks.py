"""The notebooks in notebooks/: stored executed, with their outputs and figures, and still what the library prints.

Two kinds of check. On the stored files (cheap): every code cell was executed, in order, in one kernel; nothing
stored is an error, a traceback or a missing-feature message; every cell that prints has printed output and every
cell that draws has a non-blank figure. On a fresh run (nbclient, as a user would): no cell fails, and each cell
produces outputs of the same kinds as the stored ones (text, figure, value), so a stored output that the current
library would no longer print is caught.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
EXPECTED = {"quickstart", "porting_from_mindspore", "optimizer_zoo", "integration", "schedules", "mixed_precision",
            "sparse_recommender", "thor"}

# What a notebook written against a library still missing features prints: fallbacks that fire, import errors.
MISSING_FEATURE = re.compile(
    r"has no |not available|not installed|no attribute|No module named|ImportError|ModuleNotFoundError|"
    r"AttributeError|NotImplementedError|Traceback|this installation|skipping|Error:", re.IGNORECASE)
DRAWS = re.compile(r"\bplt\.(subplots|figure|plot|semilogy|imshow)\(|\bax\d?\.(plot|semilogy|barh|bar|step)\(")


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code_cells(notebook) -> list:
    return [c for c in notebook.cells if c.cell_type == "code"]


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    return output.get("data", {}).get("text/plain", "")


def _kinds(cell) -> list[str]:
    """The kinds of a cell's outputs: printed text (however the stream was chunked), a figure, a value, an error.
    Text on stderr (warnings, which vary with the platform) is not a kind; it is checked for missing features."""
    kinds: list[str] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            if output.name == "stderr":
                continue
            kind = output.name
        elif output.output_type == "error":
            kind = "error"
        elif "image/png" in output.get("data", {}):
            kind = "figure"
        else:
            kind = output.output_type  # execute_result / display_data
        if not kinds or kinds[-1] != kind or kind == "figure":
            kinds.append(kind)
    return kinds


def _blank(png_base64: str) -> bool:
    """True for an empty figure: (nearly) every pixel is the background colour."""
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(base64.b64decode(png_base64)), format="png")
    background = image[0, 0]
    differs = (abs(image - background) > 0.05).any(axis=-1)
    return differs.mean() < 0.01


def test_every_notebook_is_listed():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED
    index = (ROOT / "docs" / "index.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for stem in EXPECTED:
        assert f"`{stem}`" in index, f"docs/index.md does not list notebooks/{stem}.ipynb"
        assert re.search(rf"\b{stem}\b", readme), f"README.md does not list notebooks/{stem}.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stored_executed(path):
    cells = _code_cells(_read(path))
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: store it executed top to bottom ({counts})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_are_no_error_and_no_missing_feature(path):
    for number, cell in enumerate(_code_cells(_read(path)), 1):
        assert "error" not in _kinds(cell), f"{path.name} cell {number} stores an error"
        for output in cell.outputs:
            match = MISSING_FEATURE.search(_text(output))
            assert not match, f"{path.name} cell {number} stores {match.group(0)!r}: {_text(output)[:300]}"
        source = re.sub(r"#.*", "", cell.source)
        assert not re.search(r"\bhasattr\(jaxopt_ms|except (ImportError|ModuleNotFoundError|AttributeError)",
                             source), f"{path.name} cell {number} keeps a fallback for a feature that exists"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_cells_that_print_or_draw_have_their_output(path):
    for number, cell in enumerate(_code_cells(_read(path)), 1):
        kinds = _kinds(cell)
        source = re.sub(r"#.*", "", cell.source)
        if re.search(r"\bprint\(", source):
            assert "stdout" in kinds, f"{path.name} cell {number} prints but stores no printed output"
        if DRAWS.search(source):
            assert "figure" in kinds, f"{path.name} cell {number} draws but stores no figure"
        for output in cell.outputs:
            data = output.get("data", {})
            if "image/png" in data:
                assert not _blank(data["image/png"]), f"{path.name} cell {number} stores an empty figure"
            assert not re.search(r"with 0 Axes", data.get("text/plain", "")), f"{path.name} cell {number}"


# thor.ipynb trains a CNN and a transformer with THOR, AdamWeightDecay and Lamb (about a minute on 2 cores): its run
# is in the slow stage; its stored outputs are checked above on every run.
SLOW_TO_RUN = {"thor"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if i in SLOW_TO_RUN else p
                                  for p, i in zip(NOTEBOOKS, IDS)], ids=IDS)
def test_notebook_runs_and_prints_what_is_stored(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for module in ("sklearn", "matplotlib", "flax", "equinox"):
        pytest.importorskip(module)
    # The kernel is a subprocess: make this checkout importable there even when it is not installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    stored = _read(path)
    fresh = _read(path)
    client = nbclient.NotebookClient(fresh, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
    for number, (old, new) in enumerate(zip(_code_cells(stored), _code_cells(fresh)), 1):
        assert _kinds(new) == _kinds(old), (
            f"{path.name} cell {number} now outputs {_kinds(new)}, stored {_kinds(old)}: re-execute and store it")
        for output in new.outputs:
            match = MISSING_FEATURE.search(_text(output))
            assert not match, f"{path.name} cell {number} prints {match.group(0)!r}: {_text(output)[:300]}"
            if "image/png" in output.get("data", {}):
                assert not _blank(output.data["image/png"]), f"{path.name} cell {number} draws an empty figure"
