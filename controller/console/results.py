"""The ``result`` of a reply in words: reconcile's preview or changes, an alarm history.

One wording for the console's log and swapctl's output, so an operator reads the same lines
wherever a preview is shown before it is confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.contract.results import AlarmHistory, AlarmOccurrence, ReconcileReport


def _t(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def reconcile_lines(report: ReconcileReport) -> list[str]:
    """Each pack: journal -> sensors, and what reconcile does (did) about it."""
    if not report.changes:
        return ["the journal agrees with the sensors: nothing to reconcile"]
    head = f"reconciled by {report.by or '(no user)'}:" if report.applied else "reconcile would:"
    lines = [head]
    for c in report.changes:
        seen = ", ".join(c.sensors) or "nowhere"
        if c.action == "left":
            verb = "leave"
            tail = f"  ({c.why})"
        else:
            verb = "adopt" if c.action == "adopt" else "record gone"
            tail = f"  ({c.why})" if c.why else ""
        lines.append(f"  {verb:<11} {c.pack_id}: journal {c.ledger or '-'} -> {c.to or '-'}"
                     f"  [sensors: {seen}]{tail}")  # fmt: skip
    after = "consistent" if report.consistent_after else "still NOT consistent (see leave)"
    lines.append(f"afterwards the journal is {after}")
    return lines


def occurrence_line(o: AlarmOccurrence) -> str:
    a = o.alarm
    parts = [f"{a.id} {a.severity.value} {a.code}: raised {_t(a.raised_at)}"]
    if o.acknowledged_at:
        parts.append(f"acked {_t(o.acknowledged_at)} by {o.acknowledged_by or '(no user)'}")
    for s in o.shelves:
        ended = f", unshelved {_t(s.unshelved_at)}" if s.unshelved_at else ""
        if s.unshelved_at and s.unshelved_by:
            ended += f" by {s.unshelved_by}"
        parts.append(
            f"shelved {_t(s.shelved_at)} by {s.shelved_by or '(no user)'} until {_t(s.until)}"
            f" ({s.reason}){ended}"
        )
    parts.append(f"cleared {_t(o.cleared_at)}" if o.cleared_at else "still active")
    return "; ".join(parts) + f" | {a.text}"


def history_lines(history: AlarmHistory) -> list[str]:
    lines = [f"alarms from {_t(history.since)} to {_t(history.until)} (UTC):"]
    lines += [f"  {occurrence_line(o)}" for o in history.alarms] or ["  none"]
    if history.truncated:
        lines.append("  (more than one reply holds: the newest are left out; narrow the range)")
    return lines


def result_lines(cmd: str, result: Mapping[str, Any] | None) -> list[str]:
    """The lines for a reply's ``result`` (none for commands without one, or one unreadable)."""
    if not result:
        return []
    try:
        if cmd == "reconcile":
            return reconcile_lines(ReconcileReport.model_validate(result))
        if cmd == "alarm_history":
            return history_lines(AlarmHistory.model_validate(result))
    except ValidationError as exc:
        return [f"unreadable result: {exc.errors()[0]['msg']}"]
    return []
