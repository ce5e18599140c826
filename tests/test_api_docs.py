"""The API reference: every public name has a docstring, optimizers document their reference and an example, and
the committed docs/api.md is what scripts/gen_api_docs.py makes from the current code."""

import importlib.util
import inspect
from pathlib import Path

import pytest

import jaxopt_ms
from jaxopt_ms import optimizers

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts" / "gen_api_docs.py")
gen_api_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_api_docs)

PUBLIC = gen_api_docs.public_names(jaxopt_ms)


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_name_has_a_docstring(name, obj):
    doc = gen_api_docs.own_docstring(obj)
    assert doc and len(doc.strip()) > 20, f"{name} needs a docstring (purpose, formula, reference)"


@pytest.mark.parametrize("name", optimizers.__all__)
def test_optimizer_docstring_gives_reference_and_example(name):
    doc = inspect.getdoc(getattr(jaxopt_ms, name))
    assert "Reference" in doc and "MindSpore" in doc, f"jaxopt_ms.{name}: say which MindSpore class it reproduces"
    assert "Example" in doc and ">>> " in doc, f"jaxopt_ms.{name}: add an Example that runs as written"


def test_docstring_markdown_conversion():
    doc = """Does a thing with ``x``, see :func:`jaxopt_ms.adam`.

        m = b1 m + (1 - b1) g

    Args:
        x: the input,
            continued.
        a, b: two more.

    Example:
        >>> f(1)
        2
    """
    text = gen_api_docs.docstring_to_markdown(doc)
    assert "Does a thing with `x`, see `jaxopt_ms.adam`." in text
    assert "```text\nm = b1 m + (1 - b1) g\n```" in text
    assert "- `x`: the input, continued.\n- `a, b`: two more." in text
    assert "```python\n>>> f(1)\n2\n```" in text


def test_committed_api_reference_is_current():
    expected = gen_api_docs.render(jaxopt_ms)
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == expected, "docs/api.md is out of date: run python scripts/gen_api_docs.py and commit it"


def test_returns_description_stays_one_bullet():
    doc = """Thing.

    Returns:
        A long description that wraps
        onto a second line.
    """
    text = gen_api_docs.docstring_to_markdown(doc)
    assert "- A long description that wraps onto a second line." in text
    assert "- onto" not in text


API_MD = gen_api_docs.render(jaxopt_ms)


def test_contents_links_every_section_and_name_to_one_anchor():
    import re

    anchors = re.findall(r'<a id="([^"]+)"></a>', API_MD)
    assert len(anchors) == len(set(anchors)), "two headings share an anchor"
    contents = API_MD.split("## Contents", 1)[1].split('<a id="', 1)[0]
    links = set(re.findall(r"\]\(#([^)]+)\)", contents))
    assert links <= set(anchors), f"contents links to missing anchors: {sorted(links - set(anchors))}"
    # Every documented name and every ## / ### section is reachable from the contents.
    headed = set(re.findall(r'<a id="([^"]+)"></a>\n#', API_MD))
    assert headed == set(anchors) and headed <= links, sorted(headed - links)
    assert {q for q, _ in PUBLIC} - set(anchors) <= {f"jaxopt_ms.{n}" for n in
                                                     gen_api_docs._documented_elsewhere(jaxopt_ms)}


def test_each_module_documented_once_and_no_private_module():
    import re

    sections = re.findall(r"^#{2,3} `([^`]+)`$", API_MD, flags=re.M)
    assert len(sections) == len(set(sections)), sorted(s for s in sections if sections.count(s) > 1)
    assert not [s for s in sections if any(p.startswith("_") for p in s.split("."))]
    assert "jaxopt_ms._flat" not in API_MD
    headings = re.findall(r"^#### .*?`([\w.]+)[(`]", API_MD, flags=re.M)
    assert len(headings) == len(set(headings)), sorted(h for h in headings if headings.count(h) > 1)
