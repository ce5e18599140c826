"""Writes docs/api.md, the API reference, from the docstrings of jaxopt_ms's public names.

    python scripts/gen_api_docs.py           # rewrite docs/api.md
    python scripts/gen_api_docs.py --check   # exit 1 if docs/api.md is not what the code gives

Public names are those of ``jaxopt_ms.__all__`` (grouped by the module that defines them) and the ``__all__`` of
each public API module (``jaxopt_ms.transforms``, ``jaxopt_ms.schedules``, ...). A name is documented once: a
top-level name that an API module also exports links to that module's entry, and names defined in a private
module (``jaxopt_ms._flat``) are documented under the public module that exports them, without the private
module's docstring. The output depends only on the code: no addresses, paths or dates, so it can be compared in a
test.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "api.md"
# Modules documented on their own (their names are reached as jaxopt_ms.<module>.<name>), in this order.
API_MODULES = ("transforms", "schedules", "dynamic_lr", "loss_scale", "sparse", "fused", "sharding",
               "mindspore_checkpoint")
SECTION_HEADERS = ("Args", "Arguments", "Returns", "Raises", "Yields", "Attributes", "Example", "Examples", "Note",
                   "Notes", "Reference", "References")
LIST_SECTIONS = ("Args", "Arguments", "Returns", "Raises", "Yields", "Attributes")
# Sections whose body is one free-text description (wrapped lines continue it), not a list of ``name: text``.
PROSE_SECTIONS = ("Returns", "Yields")


def _inline(text: str) -> str:
    """reStructuredText inline markup to Markdown: roles and double backquotes become code spans."""
    text = re.sub(r":(?:func|class|mod|data|meth|attr|obj|exc):`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return re.sub(r"::$", ":", text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def docstring_to_markdown(doc: str) -> str:
    """Google-style docstring to Markdown: sections in bold, argument lists as bullets, indented blocks and
    doctest examples as fenced code."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    section: str | None = None
    i = 0
    while i < len(lines):
        line, stripped = lines[i], lines[i].strip()
        header = stripped[:-1] if stripped.endswith(":") else None
        if header in SECTION_HEADERS and _indent(line) == 0:
            section = header
            out += ["", f"**{header}:**", ""]
            i += 1
            continue
        if stripped and _indent(line) == 0:
            section = None
        if stripped.startswith(">>>") or (stripped and _indent(line) >= 4 and section not in LIST_SECTIONS):
            base = _indent(line)
            block = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) >= base):
                if not lines[i].strip() and (i + 1 >= len(lines) or _indent(lines[i + 1]) < base
                                             or not lines[i + 1].strip()):
                    break
                block.append(lines[i][base:] if lines[i].strip() else "")
                i += 1
            language = "python" if block[0].startswith(">>>") else "text"
            out += ["", f"```{language}", *block, "```", ""]
            continue
        if section in PROSE_SECTIONS and stripped:
            if out[-1].startswith("- ") and lines[i - 1].strip():
                out[-1] += " " + _inline(stripped)
            else:
                out.append(f"- {_inline(stripped)}")
            i += 1
            continue
        if section in LIST_SECTIONS and stripped:
            if _indent(line) <= 4:
                match = re.match(r"^([\w*]+(?:\s*,\s*[\w*]+)*)(\s*\([^)]*\))?:\s*(.*)$", stripped)
                if match:
                    out.append(f"- `{match.group(1)}`{match.group(2) or ''}: {_inline(match.group(3))}")
                else:
                    out.append(f"- {_inline(stripped)}")
            else:
                out[-1] += " " + _inline(stripped)
            i += 1
            continue
        out.append(_inline(stripped))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _default(value: Any) -> str:
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value):
        return value.__qualname__
    if callable(value):
        return type(value).__name__ + "(...)"
    text = repr(value)
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def signature(obj: Any) -> str:
    """``(a, b=1, *, c=None)`` with defaults shown by name (functions) or repr (values), no annotations."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts = []
    seen_kw_only = False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not seen_kw_only:
            parts.append("*")
            seen_kw_only = True
        if p.kind is p.VAR_POSITIONAL:
            seen_kw_only = True
            parts.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            parts.append(f"{p.name}={_default(p.default)}")
    return "(" + ", ".join(parts) + ")"


def own_docstring(obj: Any) -> str | None:
    """The object's own docstring (a class's, not one it inherits or that ``NamedTuple`` makes up)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if doc and re.fullmatch(rf"{obj.__name__}\(.*\)", doc.strip()):
            return None  # namedtuple's generated "Name(field, ...)"
        return doc
    return inspect.getdoc(obj)


def _entry(qualified: str, obj: Any) -> list[str]:
    if inspect.isclass(obj):
        fields = getattr(obj, "_fields", None)
        if fields is not None:
            title = f"class `{qualified}({', '.join(fields)})`"
        elif issubclass(obj, BaseException):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            title = f"exception `{qualified}({bases})`"
        else:
            title = f"class `{qualified}{signature(obj)}`"
    else:
        title = f"`{qualified}{signature(obj)}`"
    lines = [f"#### {title}", "", docstring_to_markdown(own_docstring(obj) or "(no docstring)"), ""]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                continue
            doc = inspect.getdoc(member)
            if not doc:
                continue
            sig = "" if isinstance(member, property) else signature(member).replace("(self, ", "(").replace(
                "(self)", "()")
            lines += [f"- `{name}{sig}`: " + docstring_to_markdown(doc).replace("\n", "\n  "), ""]
    return lines


def api_modules(package: ModuleType) -> list[ModuleType]:
    """The public API modules, in documentation order."""
    return [importlib.import_module(f"{package.__name__}.{name}") for name in API_MODULES]


def public_names(package: ModuleType) -> list[tuple[str, Any]]:
    """``(qualified name, object)`` of every documented public name."""
    out = [(f"{package.__name__}.{n}", getattr(package, n)) for n in package.__all__
           if not inspect.ismodule(getattr(package, n))]
    for module in api_modules(package):
        out += [(f"{module.__name__}.{n}", getattr(module, n)) for n in getattr(module, "__all__", [])]
    return out


def _is_private(module_name: str) -> bool:
    return any(part.startswith("_") for part in module_name.split("."))


def _by_defining_module(owner: ModuleType, names: list[str]) -> dict[str, list[str]]:
    """Names grouped by the module defining them; a private module's names stay with ``owner``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        obj = getattr(owner, name)
        if not inspect.ismodule(obj):
            module_name = getattr(obj, "__module__", None) or owner.__name__
            if _is_private(module_name) or module_name not in sys.modules:
                module_name = owner.__name__
            groups.setdefault(module_name, []).append(name)
    return groups


def _sorted_modules(groups: dict[str, list[str]], owner: ModuleType) -> list[str]:
    # The owner's own names first, then optimizers, then the other defining modules alphabetically.
    return sorted(groups, key=lambda m: (m != owner.__name__, ".optimizers." not in m, m))


def _anchor(qualified: str) -> str:
    """An explicit HTML anchor: the contents links to it whatever a renderer makes of the heading."""
    return f'<a id="{qualified}"></a>'


def _documented_elsewhere(package: ModuleType) -> dict[str, str]:
    """Top-level names (by ``id`` of the object) that an API module also exports -> that module's qualified
    name, so that each object is documented once."""
    found: dict[int, str] = {}
    for module in api_modules(package):
        for n in getattr(module, "__all__", []):
            found.setdefault(id(getattr(module, n)), f"{module.__name__}.{n}")
    return {n: found[id(getattr(package, n))] for n in package.__all__ if id(getattr(package, n)) in found}


def _section(owner: ModuleType, names: list[str], prefix: str) -> list[str]:
    """One ``###`` block per defining module (its docstring: the formulas live there), then its names."""
    groups = _by_defining_module(owner, names)
    lines: list[str] = []
    for module_name in _sorted_modules(groups, owner):
        if module_name != owner.__name__:
            lines += [_anchor(module_name), f"### `{module_name}`", "",
                      docstring_to_markdown(inspect.getdoc(sys.modules[module_name]) or ""), ""]
        for name in groups[module_name]:
            lines += [_anchor(f"{prefix}.{name}"), *_entry(f"{prefix}.{name}", getattr(owner, name))]
    return lines


def _contents(package: ModuleType, top_names: list[str], aliases: dict[str, str]) -> list[str]:
    """The table of contents: each section, its defining modules, and links to every name."""
    lines = ["## Contents", ""]
    for owner, names in [(package, top_names), *[(m, list(getattr(m, "__all__", []))) for m in
                                                   api_modules(package)]]:
        lines.append(f"- [`{owner.__name__}`](#{owner.__name__})")
        groups = _by_defining_module(owner, names)
        for module_name in _sorted_modules(groups, owner):
            links = ", ".join(f"[`{n}`](#{owner.__name__}.{n})" for n in groups[module_name])
            if module_name == owner.__name__:
                lines.append(f"  - {links}")
            else:
                lines.append(f"  - [`{module_name}`](#{module_name}): {links}")
        if owner is package and aliases:
            links = ", ".join(f"[`{n}`](#{target})" for n, target in aliases.items())
            lines.append(f"  - also at the top level: {links}")
    return lines + [""]


def render(package: ModuleType) -> str:
    """The whole of docs/api.md."""
    aliases = _documented_elsewhere(package)
    top_names = [n for n in package.__all__ if n not in aliases and not inspect.ismodule(getattr(package, n))]
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python scripts/gen_api_docs.py`; do not edit by hand "
        "(`tests/test_api_docs.py` checks that it is current).",
        "",
        *_contents(package, top_names, aliases),
        _anchor(package.__name__),
        f"## `{package.__name__}`",
        "",
        docstring_to_markdown(inspect.getdoc(package) or ""),
        "",
        *_section(package, top_names, package.__name__),
    ]
    if aliases:
        lines += ["### Also exported at the top level", "",
                  *[f"- `{package.__name__}.{n}` is [`{target}`](#{target})." for n, target in aliases.items()],
                  ""]
    for module in api_modules(package):
        lines += [_anchor(module.__name__), f"## `{module.__name__}`", "",
                  docstring_to_markdown(inspect.getdoc(module) or ""), ""]
        lines += _section(module, list(getattr(module, "__all__", [])), module.__name__)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    text = render(importlib.import_module("jaxopt_ms"))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
