"""Sections of the docs generated from the code, so that what an operator reads cannot drift
from what the controller does.

A generated section sits in a page between two marker comments::

    <!-- generated: errors -->
    ...
    <!-- end generated -->

``python -m controller.docgen`` rewrites every section of every page under docs/ from its
source (:data:`SECTIONS`); ``python -m controller.docgen --check`` only says which are stale and
exits 1, which is what tests/test_docgen.py runs. Everything outside the markers is left as
written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.error_table import ALARMS, ERRORS, PROCEDURES, UNKNOWN_DRIVER_CODE, ErrorKind
from controller.station.interlocks import ANY_COMMAND, INTERLOCKS, Interlock, always
from controller.station.postconditions import POSTCONDITIONS

DOCS = Path(__file__).resolve().parent.parent / "docs"
REGENERATE = "python -m controller.docgen"
_SECTION = re.compile(
    r"(?P<open><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- end generated -->)",
    re.DOTALL,
)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _retried(kind: ErrorKind) -> str:
    return f"{'yes' if kind.retryable else 'no'}: {kind.why}"


def errors_section() -> str:
    """The alarm codes (severity, when, the hint) and the error codes (retried? which alarm)."""
    procedures = "\n".join(f"- *{name}*: {text}" for name, text in PROCEDURES.items())
    alarms = _table(
        ("alarm code", "severity", "raised when", "the hint: first...", "then"),
        [
            (f"`{code}`", kind.severity.value, kind.raised_when, kind.first, f"*{kind.then}*")
            for code, kind in ALARMS.items()
        ],
    )
    rows = [(f"`{code}`", kind) for code, kind in ERRORS.items()]
    rows.append(("any other driver code", UNKNOWN_DRIVER_CODE))
    errors = _table(
        ("error code", "from", "retried by a step with `retries`?", "alarm when it halts"),
        [
            (code, kind.source, _retried(kind), f"`{kind.alarm}`" if kind.alarm else "none")
            for code, kind in rows
        ],
    )
    return (
        "Alarm codes. A hint is what to look at first (`{device}`, `{action}`, `{phase}`... "
        "filled in from the error that raised it), then one of these procedures, word for "
        f"word:\n\n{procedures}\n\n{alarms}\n\n"
        "Error codes: what a failed step or a halted swap carries, whether a retry may cure it "
        "(only steps with `retries` in `swap.steps` are retried, never `arm.lift`/`arm.lower`, "
        "and each retry follows a `stop`), and the alarm it raises when it ends a swap.\n\n"
        f"{errors}\n"
    )


def _rule(rule: Interlock) -> str:
    """A rule as the docs show it: its refusal, and when it applies (from the predicate's name)."""
    if rule.applies is always:
        return f'"{rule.refusal}"'
    return f'"{rule.refusal}" (if {rule.applies.__name__.strip("_").replace("_", " ")})'


def interlocks_section() -> str:
    """Each motion's interlocks, and what its ``done`` must look like in the drivers' states."""
    every = "; ".join(_rule(rule) for rule in ANY_COMMAND)
    rows = []
    for (device, action), rules in sorted(INTERLOCKS.items()):
        expected = POSTCONDITIONS.get((device, action))
        rows.append(
            (
                f"`{device}.{action}`",
                "; ".join(_rule(rule) for rule in rules),
                f'"{expected.failure}"'
                if expected
                else "(a pack move: the pack sensors say where the pack is)",
            )
        )
    table = _table(("motion", "refused while (besides the above)", "done unless"), rows)
    return (
        f"Every command is refused while: {every}. Each motion also has its own rules "
        "(`controller/station/interlocks.py`), and its `done` is believed only when the "
        "drivers' states show it (`postconditions.py`); a rule that reads a state nobody "
        "reported counts as open.\n\n"
        f"{table}\n"
    )


#: Every generated section, by the name its markers carry.
SECTIONS: dict[str, Callable[[], str]] = {
    "errors": errors_section,
    "interlocks": interlocks_section,
}


def regenerate(text: str, where: str = "page") -> str:
    """``text`` with every generated section rewritten from its source."""

    def body(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise ValueError(
                f"{where}: unknown generated section {name!r}; known: {list(SECTIONS)}"
            )
        return match["open"] + SECTIONS[name]() + match["close"]

    return _SECTION.sub(body, text)


def pages(docs: Path = DOCS) -> list[Path]:
    """The pages that hold at least one generated section."""
    return [p for p in sorted(docs.glob("*.md")) if _SECTION.search(p.read_text("utf-8"))]


def stale(docs: Path = DOCS) -> list[str]:
    """The pages whose generated sections differ from what the code generates now."""
    out = []
    for page in pages(docs):
        text = page.read_text("utf-8")
        if regenerate(text, page.name) != text:
            out.append(page.name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Rewrite the generated sections of the docs."
    )
    parser.add_argument("--check", action="store_true", help="only report stale pages")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    if args.check:
        behind = stale(args.docs)
        for name in behind:
            sys.stderr.write(f"{name}: generated sections are stale; run {REGENERATE}\n")
        return 1 if behind else 0
    for page in pages(args.docs):
        text = page.read_text("utf-8")
        new = regenerate(text, page.name)
        if new != text:
            page.write_text(new, "utf-8")
            sys.stdout.write(f"rewrote {page}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
