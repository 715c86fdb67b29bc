"""Generated sections about faults: the alarm and error codes (``error_table``), and each
motion's interlocks and post-conditions (the rule tables)."""

from __future__ import annotations

from collections.abc import Sequence

from controller.error_table import ALARMS, ERRORS, PROCEDURES, UNKNOWN_DRIVER_CODE, ErrorKind
from controller.station.interlocks import ANY_COMMAND, INTERLOCKS, Interlock, always
from controller.station.postconditions import POSTCONDITIONS


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
