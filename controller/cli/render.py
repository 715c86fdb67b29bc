"""Human output of swapctl: tables and the live progress line. (Printing is the CLI's job.)"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from controller.contract import (
    SWAP_PHASES,
    Alarms,
    Event,
    History,
    Inventory,
    ModeChanged,
    PhaseChanged,
    Status,
    SwapFinished,
    SwapRecord,
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def pack_text(pack: object) -> str:
    if pack is None:
        return "-"
    pid = getattr(pack, "id", "?")
    soc = getattr(pack, "soc", 0.0)
    return f"{pid} ({soc:.0%})"


def swaps_table(records: Sequence[SwapRecord]) -> str:
    rows = []
    for r in records:
        rows.append(
            [
                r.swap_id.rsplit("-", 1)[-1],
                r.vehicle_id or "-",
                pack_text(r.pack_out),
                pack_text(r.pack_in),
                f"{r.duration_s:6.1f}",
                "yes" if r.in_budget else "NO",
                r.result,
            ]
        )
    main = table(["swap", "vehicle", "pack out", "pack in", "secs", "in budget", "result"], rows)
    phase_rows = [
        [r.swap_id.rsplit("-", 1)[-1]] + [f"{r.phases.get(p.value, 0):.1f}" for p in SWAP_PHASES]
        for r in records
    ]
    phases = table(["swap"] + [p.value for p in SWAP_PHASES], phase_rows)
    return f"{main}\n\nSeconds per phase:\n{phases}"


def status_text(status: Status | None, controller_online: bool | None) -> str:
    if status is None:
        return "no status published (is the controller running?)"
    lines = [
        f"station     {status.station}   controller {'online' if controller_online else 'OFFLINE'}",
        f"mode        {status.mode.value}" + (f"  ({status.reason})" if status.reason else ""),
        f"phase       {status.phase.value if status.phase else '-'}",
        f"swap        {status.swap_id or '-'}   vehicle {status.vehicle_id or '-'}",
    ]
    if status.elapsed_s is not None:
        lines.append(f"elapsed     {status.elapsed_s:.1f} s of {status.budget_s:.0f} s budget")
    lines.append(
        f"queue       {status.queue_length}   alarms {status.active_alarms}   "
        f"swaps done {status.swaps_completed}"
    )
    lines.append(f"as of       {status.ts.isoformat()}")
    return "\n".join(lines)


def _controller_note(controller_online: bool | None) -> str:
    """Retained data outlives its publisher: say so when the controller is not online."""
    if controller_online:
        return ""
    return "\n(controller OFFLINE: this is the last state it published, not live)"


def inventory_table(inv: Inventory, controller_online: bool | None) -> str:
    rows = []
    for s in inv.slots:
        p = s.pack
        rows.append(
            [
                str(s.slot),
                p.id if p else "-",
                f"{_bar(p.soc, 10)} {p.soc:4.0%}" if p else "",
                f"{s.charging_kw:.0f}/{s.charger_kw:.0f}",
                f"{p.temperature_c:.0f}" if p else "",
                f"{p.health:.0%}" if p else "",
                "OUT OF SERVICE" if s.out_of_service else ("docked" if s.docked else "-"),
            ]
        )
    out = [table(["slot", "pack", "soc", "kW", "degC", "health", "state"], rows), ""]
    out.append(f"gripper     {pack_text(inv.gripper)}")
    out.append(f"vehicle     {inv.vehicle_id or '-'}  {pack_text(inv.vehicle)}")
    out.append(f"swappable   at or above {inv.swappable_soc:.0%}")
    if inv.consistent and not inv.problems:
        out.append("consistent  every pack in exactly one place")
    else:
        out.append("PROBLEMS    " + "; ".join(inv.problems or ["inconsistent"]))
    return "\n".join(out) + _controller_note(controller_online)


def alarms_table(alarms: Alarms, controller_online: bool | None) -> str:
    if not alarms.alarms:
        return "no active alarms" + _controller_note(controller_online)
    rows = [
        [
            a.id,
            a.severity.value,
            a.code,
            "yes" if a.acknowledged else "no",
            a.raised_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.text,
        ]
        for a in alarms.alarms
    ]
    out = [table(["id", "severity", "code", "acked", "raised (UTC)", "text"], rows)]
    hints = [f"  {a.id}: {a.hint}" for a in alarms.alarms if a.hint]
    if hints:
        out += ["", "What to do:", *hints]
    return "\n".join(out) + _controller_note(controller_online)


def history_text(history: History, controller_online: bool | None) -> str:
    if not history.swaps:
        return "no swaps yet" + _controller_note(controller_online)
    return swaps_table(history.swaps) + _controller_note(controller_online)


class Progress:
    """A live progress line per swap: phase and elapsed against the budget."""

    def __init__(self, budget_s: float, out: TextIO | None = None) -> None:
        self.budget_s = budget_s
        self.out = out or sys.stdout
        self.live = self.out.isatty()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseChanged) and event.phase is not None and event.swap_id:
            if event.phase.value == "waiting":
                return
            elapsed = event.elapsed_s or 0.0
            bar = _bar(elapsed / self.budget_s)
            text = (
                f"{event.swap_id.rsplit('-', 1)[-1]}  {event.phase.value:<9} {bar} "
                f"{elapsed:6.1f} s / {self.budget_s:.0f} s"
            )
            self._emit(text, final=False)
        elif isinstance(event, SwapFinished):
            r = event.record
            verdict = (
                "in budget"
                if r.in_budget
                else "OVER BUDGET"
                if r.result == "completed"
                else r.result.upper()
            )
            bar = _bar(r.duration_s / self.budget_s)
            self._emit(
                f"{r.swap_id.rsplit('-', 1)[-1]}  {r.result:<9} {bar} "
                f"{r.duration_s:6.1f} s / {self.budget_s:.0f} s  {verdict}  ({r.vehicle_id})",
                final=True,
            )
        elif isinstance(event, ModeChanged):
            self._emit(
                f"mode {event.previous.value} -> {event.mode.value}"
                + (f" ({event.reason})" if event.reason else ""),
                final=True,
            )

    def _emit(self, text: str, *, final: bool) -> None:
        if self.live:
            self.out.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.out.write(text + "\n")
        self.out.flush()


def _bar(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"
