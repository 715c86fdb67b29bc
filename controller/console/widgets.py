"""The console's panels: each draws one part of the :class:`ConsoleModel`, and says how fresh it is.

Every panel is redrawn from the model on a short timer (ages and the swap clock move even when
no message arrives). A panel whose data is not live gets the ``-stale`` class (faded text, a
dashed yellow border) and a subtitle saying why and as of when; live panels say ``live``.
"""

from __future__ import annotations

from typing import TypeVar

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from textual.widgets import RichLog, Static

from controller.console.model import ConsoleModel, LogEntry, Stamped, Timeline
from controller.contract import DEVICES, PHASE_PLAN, Mode, PackInfo, Severity, SwapRecord
from controller.contract.phases import PLAN_OF, describe_plan

T = TypeVar("T")

MODE_STYLE: dict[Mode, str] = {
    Mode.idle: "bold white on grey37",
    Mode.execute: "bold white on green4",
    Mode.held: "bold black on yellow",
    Mode.suspended: "bold black on dark_orange",
    Mode.aborting: "bold white on red3",
    Mode.aborted: "bold white on red3",
    Mode.stopped: "bold white on grey37",
    Mode.estopped: "bold white on red1 blink",
    Mode.maintenance: "bold white on blue",
}
STALE_BADGE = "bold black on grey50"
SEVERITY_STYLE: dict[Severity, str] = {
    Severity.warning: "yellow",
    Severity.error: "red",
    Severity.critical: "bold red",
    Severity.fatal: "bold white on red",
}
LOG_STYLE: dict[str, str] = {
    "info": "white",
    "sent": "cyan",
    "ok": "green",
    "refused": "bold red",
    "error": "red",
    "audit": "magenta",
    "alarm": "bold yellow",
}


Freshness = tuple[bool, str]


def freshness(model: ConsoleModel, item: Stamped[T] | None, *, from_controller: bool) -> Freshness:
    """Whether a panel's data is stale, and its subtitle: ``live``, or why not and as of when."""
    if item is None:
        return (False, "no data yet") if model.connected else (True, "STALE: disconnected")
    age = model.age_s(item) or 0.0
    as_of = f"as of {model.wall_time_of(item):%H:%M:%S} ({age:.0f} s ago)"
    if not model.connected:
        return True, f"STALE: disconnected, {as_of}"
    if item.epoch != model.epoch:
        return True, f"STALE: not re-sent since reconnect, {as_of}"
    if from_controller and not model.controller_online:
        return True, f"STALE: controller offline, {as_of}"
    return False, "live"


def soc_bar(soc: float, width: int = 10) -> Text:
    filled = max(0, min(width, round(soc * width)))
    style = "green" if soc >= 0.9 else "yellow" if soc >= 0.3 else "red"
    return Text("█" * filled, style) + Text("░" * (width - filled), "grey30") + Text(f" {soc:4.0%}")


def _pack_line(pack: PackInfo | None) -> Text:
    if pack is None:
        return Text("-", "dim")
    return Text(f"{pack.id} ") + soc_bar(pack.soc, 8)


class Panelled(Static):
    """A panel with a title and a freshness subtitle, marked ``-stale`` when not live."""

    TITLE = ""
    _key: object = None

    def on_mount(self) -> None:
        self.border_title = self.TITLE

    def unchanged(self, *key: object) -> bool:
        """Whether what this panel would draw is the same as last time (then skip drawing:
        repainting seven panels several times a second costs more CPU than a station)."""
        if key == self._key:
            return True
        self._key = key
        return False

    def show(self, body: RenderableType, fresh: Freshness) -> None:
        stale, subtitle = fresh
        self.set_class(stale, "-stale")
        self.border_subtitle = subtitle
        self.update(body)


class StationBar(Panelled):
    """Connection, controller, mode, phase and reason, queue, alarms, and the status's age."""

    TITLE = "station"

    def draw(self, model: ConsoleModel, broker: str) -> None:
        item = model.status
        fresh = freshness(model, item, from_controller=True)
        age, down = model.age_s(item), model.disconnected_for_s()
        if self.unchanged(
            item,
            fresh,
            model.connected,
            model.controller_online,
            model.controller,
            round(age or 0, 1),
            round(down or 0),
        ):
            return
        line = Text()
        if model.connected:
            line.append(" CONNECTED ", "bold white on green4")
        else:
            line.append(f" DISCONNECTED {down or 0:.0f} s ", "bold white on red1")
            line.append(f" reconnecting to {broker} ", "red")
        line.append("  controller ")
        if model.controller_online:
            line.append("online", "green")
        elif model.controller is not None and model.is_live(model.controller):
            line.append("OFFLINE", "bold red")
        else:
            line.append("unknown", "yellow")
        second = Text()
        if item is None:
            second.append("no status received", "yellow")
        else:
            s = item.value
            if fresh[0]:  # stale: no colour that could pass for the station's present state
                second.append("LAST KNOWN ", "bold yellow")
            badge = STALE_BADGE if fresh[0] else MODE_STYLE.get(s.mode, "bold")
            second.append(f" {s.mode.value.upper()} ", badge)
            second.append(f"  phase {s.phase.value if s.phase else '-'}", "bold")
            if s.reason:
                second.append(f"  ({s.reason})", "yellow")
            second.append(f"   queue {s.queue_length}   alarms ")
            second.append(str(s.active_alarms), "bold red" if s.active_alarms else "green")
            second.append(f"   swaps done {s.swaps_completed}")
            second.append(f"   status {age or 0:.1f} s old", "dim")
        self.show(Group(line, second), fresh)


class SwapPanel(Panelled):
    """The running swap: elapsed against the budget, the timeline of the phase plan's phases,
    and the plan's steps of the phase under way."""

    TITLE = "swap"

    def draw(self, model: ConsoleModel) -> None:
        item = model.status
        line = model.timeline
        fresh = freshness(model, item, from_controller=True)
        elapsed, running = model.elapsed_s(), model.phase_elapsed_s()
        if self.unchanged(
            item,
            fresh,
            line.swap_id,
            line.vehicle_id,
            tuple(line.durations.items()),
            line.current,
            line.record,
            None if elapsed is None else round(elapsed, 1),
            None if running is None else round(running, 1),
        ):
            return
        budget = item.value.budget_s if item else 180.0
        steps = Text()  # a line even between swaps, so the panels below do not jump
        if line.record is None and line.current in PLAN_OF:
            plan = PLAN_OF[line.current]
            steps.append(f"{plan.phase.value} steps: {describe_plan(plan)}", "dim")
        head = _swap_head(line, elapsed or 0.0, budget, stale=fresh[0])
        self.show(Group(head, _timeline(line, running or 0.0, stale=fresh[0]), steps), fresh)


def _swap_head(line: Timeline, elapsed: float, budget: float, *, stale: bool) -> Text:
    """Which swap, and its clock against the budget; after it, its result and verdict."""
    head = Text()
    if line.swap_id is None:
        head.append("no swap yet", "dim")
    elif line.record is not None:
        head.append_text(_swap_result(line.record))
    else:
        head.append(f"swap {line.swap_id}  vehicle {line.vehicle_id or '?'}  ")
        head.append_text(_budget_bar(elapsed, budget, stale=stale))
    return head


def _swap_result(r: SwapRecord) -> Text:
    head = Text(f"last swap {r.swap_id}  vehicle {r.vehicle_id or '?'}  ")
    head.append(f"{r.result}", "green" if r.result == "completed" else "bold red")
    head.append(f" after {r.duration_s:.1f} s of {r.budget_s:.0f} s  ")
    if r.result == "completed":
        head.append(*(("in budget", "green") if r.in_budget else ("OVER BUDGET", "bold red")))
    elif r.reason:
        head.append(r.reason, "red")
    return head


def _timeline(line: Timeline, running: float, *, stale: bool) -> Table:
    """One column per phase of the plan: seconds it took, the running one, or pending."""
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
    cells: list[Text] = []
    for plan in PHASE_PLAN:
        state = line.state_of(plan.phase)
        title_style = "bold" if state == "current" else "dim"
        table.add_column(Text(plan.phase.value, title_style), justify="center")
        if state == "done":
            took = line.durations.get(plan.phase)
            cells.append(Text(f"{took:.1f} s" if took is not None else "done", "green"))
        elif state == "current":
            style = STALE_BADGE if stale else "bold black on yellow"
            cells.append(Text(f"> {running:.1f} s", style))
        else:
            cells.append(Text("·", "grey42"))
    table.add_row(*cells)
    return table


def _budget_bar(elapsed: float, budget: float, width: int = 40, *, stale: bool = False) -> Text:
    fraction = elapsed / budget if budget else 0.0
    filled = max(0, min(width, round(fraction * width)))
    style = "green" if fraction < 0.75 else "yellow" if fraction <= 1.0 else "bold red"
    if stale:
        style = "grey50"
    return (
        Text("█" * filled, style)
        + Text("░" * (width - filled), "grey30")
        + Text(f" {elapsed:6.1f} s / {budget:.0f} s", style)
    )


class RackPanel(Panelled):
    """The rack as a grid of slots, then the gripper and the vehicle in the bay."""

    TITLE = "rack"
    CARD_WIDTH = 22

    def draw(self, model: ConsoleModel) -> None:
        item = model.inventory
        fresh = freshness(model, item, from_controller=True)
        if self.unchanged(item, fresh, self.size.width):
            return
        if item is None:
            self.show(Text("no inventory received", "yellow"), fresh)
            return
        inv = item.value
        columns = max(1, (self.size.width - 2) // self.CARD_WIDTH) if self.size.width else 4
        grid = Table.grid(padding=(0, 0))
        for _ in range(columns):
            grid.add_column(width=self.CARD_WIDTH)
        cards = [
            self._card(s.slot, s.pack, s.charging_kw, s.out_of_service, s.docked) for s in inv.slots
        ]
        for i in range(0, len(cards), columns):
            grid.add_row(*cards[i : i + columns])
        tail = Text("gripper ")
        tail.append_text(_pack_line(inv.gripper))
        tail.append(f"    vehicle {inv.vehicle_id or '-'} ")
        tail.append_text(_pack_line(inv.vehicle))
        parts: list[RenderableType] = [grid, tail]
        if not inv.consistent or inv.problems:
            parts.append(
                Text("INVENTORY: " + "; ".join(inv.problems or ["inconsistent"]), "bold red")
            )
        self.show(Group(*parts), fresh)

    @staticmethod
    def _card(slot: int, pack: PackInfo | None, kw: float, oos: bool, docked: bool) -> Panel:
        if pack is None:
            body: RenderableType = Text("empty\n\n", "dim")
        else:
            body = Group(
                Text(pack.id, "bold"),
                soc_bar(pack.soc),
                Text(
                    f"{kw:3.0f} kW {pack.temperature_c:3.0f}°C ♥{pack.health:.0%}",
                    "cyan" if kw > 0 else "white",
                ),
            )
        title = f"slot {slot}" + ("" if docked or pack is None else " undocked")
        if oos:
            return Panel(
                body, title=f"slot {slot} OUT OF SERVICE", border_style="red", title_align="left"
            )
        return Panel(body, title=title, border_style="grey50", title_align="left")


class LivenessPanel(Panelled):
    """The controller and every driver: online, offline, or not known."""

    TITLE = "liveness"

    def draw(self, model: ConsoleModel) -> None:
        fresh = (
            (False, "live")
            if model.connected
            else freshness(model, model.controller, from_controller=False)
        )
        if self.unchanged(fresh, model.epoch, model.controller, tuple(model.drivers.items())):
            return
        table = Table.grid(padding=(0, 2))
        table.add_column()
        table.add_column()
        rows = [("controller", model.controller)] + [(d, model.drivers.get(d)) for d in DEVICES]
        rows += sorted((d, s) for d, s in model.drivers.items() if d not in DEVICES)
        for name, item in rows:
            if item is None:
                state = Text("unknown", "yellow")
            elif not model.is_live(item):
                state = Text(f"{'online' if item.value else 'offline'}?", "dim")
            elif item.value:
                state = Text("● online", "green")
            else:
                state = Text("● OFFLINE", "bold red")
            table.add_row(name, state)
        self.show(table, fresh)


class AlarmsPanel(Panelled):
    """The alarm list as ISA-18.2 has it: active (acknowledged or not), returned to normal
    but not yet acknowledged (``RTN``), and the shelved ones apart, dimmed, with their time."""

    TITLE = "alarms"

    def draw(self, model: ConsoleModel) -> None:
        item = model.alarms
        fresh = freshness(model, item, from_controller=True)
        if self.unchanged(item, fresh):
            return
        if item is None or not (item.value.alarms or item.value.shelved):
            body: RenderableType = Text(
                "no active alarms" if item else "no alarms received", "green" if item else "yellow"
            )
        else:
            table = Table(box=None, expand=True, show_header=False, padding=(0, 1))
            table.add_column(no_wrap=True)
            table.add_column(ratio=1)
            for a in reversed(item.value.alarms):
                sev = Text(a.severity.value.upper(), SEVERITY_STYLE.get(a.severity, "red"))
                if not a.active:
                    sev.append(" RTN", "green")
                if a.acknowledged:
                    sev.append(" ack", "dim")
                what = Text(f"{a.id} {a.code}: {a.text}")
                if a.hint:
                    what.append(f"\n-> {a.hint}", "italic cyan")
                table.add_row(sev, what)
            for a in item.value.shelved:
                until = a.shelved_until.strftime("%H:%M") if a.shelved_until else "?"
                table.add_row(
                    Text(f"SHELVED {until}", "dim magenta"),
                    Text(f"{a.id} {a.code}: {a.text} (by {a.shelved_by or '-'}: "
                         f"{a.shelve_reason or ''})", "dim"),
                )  # fmt: skip
            body = table
        self.show(body, fresh)


class HistoryPanel(Panelled):
    TITLE = "recent swaps"

    def draw(self, model: ConsoleModel) -> None:
        item = model.history
        fresh = freshness(model, item, from_controller=True)
        if self.unchanged(item, fresh):
            return
        table = Table(box=None, expand=True, padding=(0, 1))
        for name in ("swap", "vehicle", "result", "secs", "out", "in"):
            table.add_column(name, no_wrap=True)
        for r in reversed(item.value.swaps if item else []):
            table.add_row(
                r.swap_id.rsplit("-", 1)[-1],
                r.vehicle_id or "-",
                Text(r.result, "green" if r.result == "completed" else "red"),
                Text(f"{r.duration_s:.1f}", "green" if r.in_budget else "bold red"),
                f"{r.pack_out.id} {r.pack_out.soc:.0%}" if r.pack_out else "-",
                f"{r.pack_in.id} {r.pack_in.soc:.0%}" if r.pack_in else "-",
            )
        body: RenderableType = table if item and item.value.swaps else Text("no swaps yet", "dim")
        self.show(body, fresh)


class LogPanel(RichLog):
    """Replies, refusals with their reasons, the audit trail, alarms, and connection changes."""

    _shown = 0  # how many of the model's log entries are on screen

    def on_mount(self) -> None:
        self.border_title = "log"

    def draw(self, model: ConsoleModel) -> None:
        new = model.log_total - self._shown
        if new <= 0:
            return
        for entry in list(model.log)[-min(new, len(model.log)) :]:
            self.write(_log_line(entry))
        self._shown = model.log_total


def _log_line(entry: LogEntry) -> Text:
    return Text(f"{entry.at:%H:%M:%S} ", "dim") + Text(entry.text, LOG_STYLE.get(entry.kind, ""))
