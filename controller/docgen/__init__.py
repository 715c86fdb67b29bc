"""Generated sections of the docs, written from the code's own tables and checked by a test.

A generated section is a region of a markdown file between two marker lines::

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

whose content is what :data:`SECTIONS` ``[NAME]`` returns. ``make docs`` (``python -m
controller.docgen``) rewrites every such region in README.md and docs/*.md; ``--check`` only
says which files are stale. ``tests/test_docs.py`` fails when a doc is stale, so a doc cannot
drift from the table it shows. Text outside the markers is the writer's own, except JSON
examples, which :mod:`controller.docgen.examples` keeps equal to the generated payloads.

To generate another section: a function returning its markdown, one entry in :data:`SECTIONS`,
and the two marker lines where it goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from controller.docgen.commands import (
    command_modes_table,
    command_names,
    console_keys_table,
    mode_diagram_block,
    operator_commands_table,
)
from controller.docgen.examples import refresh_json_examples
from controller.docgen.faults import errors_section, interlocks_section
from controller.docgen.phases import (
    phase_diagram_block,
    phase_order,
    phase_steps_table,
    phase_table,
)

#: Section name -> the markdown it holds (without the marker lines).
SECTIONS: Mapping[str, Callable[[], str]] = {
    "command-names": command_names,
    "operator-commands": operator_commands_table,
    "command-modes": command_modes_table,
    "console-keys": console_keys_table,
    "mode-diagram": mode_diagram_block,
    "errors": errors_section,
    "interlocks": interlocks_section,
    "phases": phase_table,
    "phase-steps": phase_steps_table,
    "phase-order": phase_order,
    "phase-diagram": phase_diagram_block,
}

ROOT = Path(__file__).resolve().parents[2]
BEGIN = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->\n", re.M)
END = "<!-- end generated -->"
_REGION = re.compile(
    r"^(?P<begin><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)^(?P<end>" + END + ")$",
    re.M | re.S,
)


class DocError(ValueError):
    """A doc's markers are unusable: an unknown section, or a section that never ends."""


def doc_files(root: Path = ROOT) -> list[Path]:
    """The files whose markers are filled in: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(text: str, where: str = "text") -> str:
    """``text`` with every generated section filled in from :data:`SECTIONS`."""
    regions = list(_REGION.finditer(text))
    if len(regions) != len(BEGIN.findall(text)):
        raise DocError(f"{where}: a '<!-- generated: ... -->' line has no '{END}' after it")

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in SECTIONS:
            known = ", ".join(SECTIONS)
            raise DocError(f"{where}: unknown generated section {name!r} (known: {known})")
        return f"{match['begin']}{SECTIONS[name]().rstrip()}\n{match['end']}"

    return refresh_json_examples(_REGION.sub(fill, text))


def stale(root: Path = ROOT) -> list[Path]:
    """The doc files whose generated sections differ from what the tables say now."""
    out = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        if render(text, str(path.relative_to(root))) != text:
            out.append(path)
    return out


def write(root: Path = ROOT) -> list[Path]:
    """Fill in every generated section; returns the files that changed."""
    changed = stale(root)
    for path in changed:
        text = path.read_text(encoding="utf-8")
        path.write_text(render(text, str(path.relative_to(root))), encoding="utf-8")
    return changed
