"""The generated sections of the docs are what the code generates now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controller.docgen import DOCS, REGENERATE, SECTIONS, pages, regenerate, stale

pytestmark = pytest.mark.timeout(60)


def test_generated_docs_are_up_to_date() -> None:
    assert stale() == [], f"stale generated sections in docs/{stale()}: run {REGENERATE}"


def test_every_section_appears_in_the_docs() -> None:
    text = "".join(page.read_text("utf-8") for page in pages())
    for name in SECTIONS:
        assert f"<!-- generated: {name} -->" in text, name


def test_only_the_sections_change(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\nprose\n\n<!-- generated: errors -->\nold table\n<!-- end generated -->\n"
        "\nmore prose\n",
        "utf-8",
    )
    assert stale(tmp_path) == ["page.md"]
    new = regenerate(page.read_text("utf-8"))
    assert new.startswith("# Title\n\nprose\n\n<!-- generated: errors -->\n")
    assert new.endswith("<!-- end generated -->\n\nmore prose\n")
    assert "old table" not in new and "`phase_deadline`" in new
    page.write_text(new, "utf-8")
    assert stale(tmp_path) == []


def test_an_unknown_section_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        regenerate("<!-- generated: nope -->\n<!-- end generated -->", "page.md")


def test_the_check_command_says_what_to_run(tmp_path: Path) -> None:
    for page in pages():
        (tmp_path / page.name).write_text(page.read_text("utf-8"), "utf-8")
    stale_page = tmp_path / "safety.md"
    stale_page.write_text(stale_page.read_text("utf-8").replace("the phase's time is up", "stale"))
    command = [sys.executable, "-m", "controller.docgen", "--check", "--docs", str(tmp_path)]
    check = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 1 and REGENERATE in check.stderr, check.stderr
    fix = [sys.executable, "-m", "controller.docgen", "--docs", str(tmp_path)]
    subprocess.run(fix, capture_output=True, text=True, timeout=30, check=True)
    assert stale_page.read_text("utf-8") == (DOCS / "safety.md").read_text("utf-8")
