"""Human output of swapctl: tables (rich) and the demo's live progress line. (Printing is the
CLI's job.)

Tables are rich renderables: columns declared with their alignment, what needs attention in red
on a terminal. ``echo`` prints them with the settings that keep the output true: never cropped
to the terminal's width, no ANSI codes in a pipe, station texts printed as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from controller.contract import (
    SWAP_PHASES,
    AlarmInfo,
    Alarms,
    Event,
    History,
    Inventory,
    ModeChanged,
    PackInfo,
    PhaseChanged,
    SlotInfo,
    Status,
    SwapFinished,
    SwapRecord,
)

#: Wider than any table: rich would otherwise fit a table to the terminal by cropping cells
#: ("13…"), which is worse than a line the terminal wraps.
_NEVER_CROP = 10_000


def echo(view: RenderableType, out: TextIO | None = None) -> None:
    """Print a human view (a table or a line) on ``out`` (default: stdout)."""
    out = out or sys.stdout
    Console(
        file=out,
        force_terminal=out.isatty(),  # colours on a terminal only, even with FORCE_COLOR set
        width=_NEVER_CROP,
        markup=False,  # bars and alarm texts hold [brackets]: not rich markup
        emoji=False,
        highlight=False,
    ).print(view)


def _table(*columns: str | Column) -> Table:
    return Table(
        *columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
    )


def _number(header: str) -> Column:
    return Column(header, justify="right")


def _alert(text: str) -> Text:
    """Something the operator must look at: red on a terminal, the same words in a pipe."""
    return Text(text, style="bold red")


def pack_text(pack: PackInfo | None) -> str:
    return "-" if pack is None else f"{pack.id} ({pack.soc:.0%})"


def _short_id(swap_id: str) -> str:
    return swap_id.rsplit("-", 1)[-1]


def swaps_table(records: Sequence[SwapRecord]) -> RenderableType:
    swaps = _table(
        "swap",
        "vehicle",
        "pack out",
        "pack in",
        _number("secs"),
        "in budget",
        "result",
    )
    for r in records:
        swaps.add_row(
            _short_id(r.swap_id),
            r.vehicle_id or "-",
            pack_text(r.pack_out),
            pack_text(r.pack_in),
            f"{r.duration_s:.1f}",
            "yes" if r.in_budget else _alert("NO"),
            r.result if r.result == "completed" else _alert(r.result),
        )
    phases = _table("swap", *(_number(p.value) for p in SWAP_PHASES))
    for r in records:
        phases.add_row(
            _short_id(r.swap_id), *(f"{r.phases.get(p.value, 0):.1f}" for p in SWAP_PHASES)
        )
    return Group(swaps, "", "Seconds per phase:", phases)


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


def _with_offline_note(view: RenderableType, controller_online: bool | None) -> RenderableType:
    """Retained data outlives its publisher: say so when the controller is not online."""
    if controller_online:
        return view
    note = _alert("(controller OFFLINE: this is the last state it published, not live)")
    return Group(view, note)


def inventory_table(inv: Inventory, controller_online: bool | None) -> RenderableType:
    slots = _table(
        _number("slot"), "pack", "soc", _number("kW"), _number("degC"), _number("health"), "state"
    )
    for slot in inv.slots:
        slots.add_row(*_slot_cells(slot))
    if inv.consistent and not inv.problems:
        verdict: str | Text = "consistent  every pack in exactly one place"
    else:
        verdict = _alert("PROBLEMS    " + "; ".join(inv.problems or ["inconsistent"]))
    view = Group(
        slots,
        "",
        f"gripper     {pack_text(inv.gripper)}",
        f"vehicle     {inv.vehicle_id or '-'}  {pack_text(inv.vehicle)}",
        f"swappable   at or above {inv.swappable_soc:.0%}",
        verdict,
    )
    return _with_offline_note(view, controller_online)


def _slot_cells(slot: SlotInfo) -> tuple[str | Text, ...]:
    pack = slot.pack
    charging = f"{slot.charging_kw:.0f}/{slot.charger_kw:.0f}"
    state = _slot_state(slot)
    if pack is None:
        return str(slot.slot), "-", "", charging, "", "", state
    soc = f"{_bar(pack.soc, 10)} {pack.soc:4.0%}"
    temperature, health = f"{pack.temperature_c:.0f}", f"{pack.health:.0%}"
    return str(slot.slot), pack.id, soc, charging, temperature, health, state


def _slot_state(slot: SlotInfo) -> str | Text:
    if slot.out_of_service:
        return _alert("OUT OF SERVICE")
    return "docked" if slot.docked else "-"


def alarms_table(alarms: Alarms, controller_online: bool | None) -> RenderableType:
    if not alarms.alarms:
        return _with_offline_note("no active alarms", controller_online)
    table = _table("id", "severity", "code", "acked", "raised (UTC)", "text")
    for a in alarms.alarms:
        table.add_row(
            a.id,
            _severity(a),
            a.code,
            "yes" if a.acknowledged else "no",
            a.raised_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.text,
        )
    hints = [f"  {a.id}: {a.hint}" for a in alarms.alarms if a.hint]
    view = Group(table, *(["", "What to do:", *hints] if hints else []))
    return _with_offline_note(view, controller_online)


def _severity(alarm: AlarmInfo) -> str | Text:
    severity = alarm.severity.value
    return severity if severity == "warning" else _alert(severity)


def history_table(history: History, controller_online: bool | None) -> RenderableType:
    view = swaps_table(history.swaps) if history.swaps else "no swaps yet"
    return _with_offline_note(view, controller_online)


class Progress:
    """A live progress line per swap: phase and elapsed against the budget."""

    def __init__(self, budget_s: float, out: TextIO | None = None) -> None:
        self.budget_s = budget_s
        self.out = out or sys.stdout
        self.live = self.out.isatty()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseChanged):
            self._phase_changed(event)
        elif isinstance(event, SwapFinished):
            self._swap_finished(event.record)
        elif isinstance(event, ModeChanged):
            reason = f" ({event.reason})" if event.reason else ""
            self._emit(f"mode {event.previous.value} -> {event.mode.value}{reason}", final=True)

    def _phase_changed(self, event: PhaseChanged) -> None:
        if event.phase is None or event.phase.value == "waiting" or not event.swap_id:
            return
        line = self._line(event.swap_id, event.phase.value, event.elapsed_s or 0.0)
        self._emit(line, final=False)

    def _swap_finished(self, r: SwapRecord) -> None:
        if r.in_budget:
            verdict = "in budget"
        else:
            verdict = "OVER BUDGET" if r.result == "completed" else r.result.upper()
        line = self._line(r.swap_id, r.result, r.duration_s)
        self._emit(f"{line}  {verdict}  ({r.vehicle_id})", final=True)

    def _line(self, swap_id: str, what: str, elapsed_s: float) -> str:
        bar = _bar(elapsed_s / self.budget_s)
        return f"{_short_id(swap_id)}  {what:<9} {bar} {elapsed_s:6.1f} s / {self.budget_s:.0f} s"

    def _emit(self, text: str, *, final: bool) -> None:
        """On a terminal the line is rewritten in place (carriage return, erase to the end of
        the line); in a pipe only finished lines are written."""
        if self.live:
            self.out.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.out.write(text + "\n")
        self.out.flush()


def _bar(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"
