"""The generated sections of the docs are what the code's tables say now (``make docs``)."""

from __future__ import annotations

import pytest

from controller.docgen import ROOT, SECTIONS, DocError, doc_files, render, stale
from controller.docgen.commands import command_names

pytestmark = pytest.mark.timeout(60)


def test_generated_docs_are_current() -> None:
    late = [str(p.relative_to(ROOT)) for p in stale()]
    assert not late, f"stale generated sections in {late}: run `make docs` and commit the result"


def test_every_section_is_in_some_doc() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in doc_files())
    for name in SECTIONS:
        assert f"<!-- generated: {name} -->\n" in text, name


def test_render_replaces_only_what_is_between_the_markers() -> None:
    doc = "before\n<!-- generated: command-names -->\nold text\n<!-- end generated -->\nafter\n"
    out = render(doc)
    marked = f"<!-- generated: command-names -->\n{command_names()}\n<!-- end generated -->"
    assert out == f"before\n{marked}\nafter\n"
    assert render(out) == out


def test_unknown_or_unclosed_sections_are_refused() -> None:
    with pytest.raises(DocError, match="unknown generated section 'nope'"):
        render("<!-- generated: nope -->\n<!-- end generated -->\n")
    with pytest.raises(DocError, match="has no"):
        render("<!-- generated: command-names -->\ntext\n")


def test_the_fault_sections_show_the_tables() -> None:
    errors, interlocks = SECTIONS["errors"](), SECTIONS["interlocks"]()
    assert "`phase_deadline`" in errors and "`journal_damaged`" in errors
    assert "`bay.release`" in interlocks and "`arm.lift`" in interlocks
