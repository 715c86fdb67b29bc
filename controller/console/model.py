"""The console's view-model: every MQTT message folded into what the operator should see.

Pure and synchronous (no Textual, no asyncio), so it is tested without a screen and the widgets
only draw what it says. Its one rule: **nothing stale passes for live.** Every value remembers
when it arrived (on this console's monotonic clock) and on which connection (``epoch``). A value
is live only while the console is connected and the value arrived on the current connection:
after a reconnect the broker sends every retained topic again, so a value that is not sent again
(a retained topic cleared meanwhile) stays marked stale instead of quietly looking current.
Values the controller publishes are also stale while the controller is offline.

Ages come from this console's clock, never from a payload's ``ts``: a station running at a time
scale stamps its messages in the (near) future, and the station's clock is not ours.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

from controller.console.results import result_lines
from controller.contract import (
    SWAP_PHASES,
    AlarmRaised,
    Alarms,
    CommandHandled,
    ErrorEvent,
    Event,
    EventAdapter,
    History,
    Inventory,
    Mode,
    ModeChanged,
    PayloadError,
    Phase,
    PhaseChanged,
    Reply,
    Status,
    SwapFinished,
    SwapRecord,
    Topics,
    VehicleArrived,
    decode,
    decode_as,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

LogKind = Literal["info", "sent", "ok", "refused", "error", "audit", "alarm"]

#: Modes in which the swap clock runs (the console extrapolates elapsed time between updates).
_RUNNING = frozenset({Mode.execute})


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """A value with when (console monotonic seconds) and on which connection it arrived."""

    value: T
    received: float
    epoch: int


@dataclass(frozen=True)
class LogEntry:
    at: datetime
    kind: LogKind
    text: str


@dataclass
class Timeline:
    """The phases of one swap: seconds each finished phase took, and the one under way.

    A console that joins mid-swap missed the earlier ``PhaseChanged`` events: those phases are
    shown done with an unknown duration (``None``) rather than invented.
    """

    swap_id: str | None = None
    vehicle_id: str | None = None
    durations: dict[Phase, float | None] = field(default_factory=dict)
    current: Phase | None = None
    record: SwapRecord | None = None  # set when the swap has finished

    @property
    def finished(self) -> bool:
        return self.record is not None

    def state_of(self, phase: Phase) -> Literal["done", "current", "pending"]:
        if phase in self.durations:
            return "done"
        return "current" if phase is self.current else "pending"

    def begin(self, swap_id: str, current: Phase | None) -> None:
        self.swap_id, self.current, self.record = swap_id, current, None
        self.durations = {}
        self.vehicle_id = None
        if current in SWAP_PHASES:
            for phase in SWAP_PHASES[: SWAP_PHASES.index(current)]:
                self.durations[phase] = None

    def finish(self, record: SwapRecord) -> None:
        self.swap_id, self.vehicle_id, self.record = record.swap_id, record.vehicle_id, record
        self.durations = {
            p: record.phases.get(p.value) for p in SWAP_PHASES if p.value in record.phases
        }
        self.current = None


class ConsoleModel:
    """Display state of one station, folded from its MQTT topics.

    Args:
        station_id: which station (topics are matched against its ``Topics``).
        clock: monotonic seconds (injectable for tests).
        log_size: how many log lines to keep.
    """

    def __init__(
        self,
        station_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        log_size: int = 500,
    ) -> None:
        self.topics = Topics(station_id)
        self.station_id = station_id
        self._clock = clock
        self.connected = False
        self.epoch = 0
        self.changed_at = clock()  # when the connection last went up or down
        self.status: Stamped[Status] | None = None
        self.inventory: Stamped[Inventory] | None = None
        self.alarms: Stamped[Alarms] | None = None
        self.history: Stamped[History] | None = None
        self.controller: Stamped[bool] | None = None
        self.drivers: dict[str, Stamped[bool]] = {}
        self.timeline = Timeline()
        self.log: deque[LogEntry] = deque(maxlen=log_size)
        #: Entries ever logged (the log panel appends those it has not shown yet).
        self.log_total = 0
        self._connection: int | None = None  # the bus's connection count we last saw

    # ---- connection --------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock()

    def connection_up(self) -> None:
        """A (re)connection: from now on only values that arrive again are live."""
        self.connected = True
        self.epoch += 1
        self.changed_at = self.now()
        self.note("info", "connected to the broker" if self.epoch == 1 else "reconnected")

    def connection_down(self, why: str | None = None) -> None:
        if not self.connected:
            return
        self.connected = False
        self.changed_at = self.now()
        self.note("error", "disconnected from the broker" + (f": {why}" if why else ""))

    def sync_connection(self, connected: bool, connection: int | None = None) -> None:
        """Follow the bus: ``connected`` and its count of connections so far.

        Called from the bus's connect hook (before any message of the new connection is
        dispatched) and on every redraw, so a loss or a reconnect is noticed even if a hook
        was missed; a new connection count always starts a new epoch.
        """
        if connected and (not self.connected or connection != self._connection):
            if self.connected:
                self.connection_down("reconnected meanwhile")
            self._connection = connection
            self.connection_up()
        elif not connected and self.connected:
            self.connection_down()

    # ---- freshness ---------------------------------------------------------------------------
    def is_live(self, item: Stamped[T] | None) -> bool:
        """Arrived on the current connection, and we are still connected."""
        return item is not None and self.connected and item.epoch == self.epoch

    @property
    def controller_online(self) -> bool:
        return self.is_live(self.controller) and bool(self.controller and self.controller.value)

    def from_controller_live(self, item: Stamped[T] | None) -> bool:
        """A value the controller publishes is live only while the controller is online."""
        return self.is_live(item) and self.controller_online

    def age_s(self, item: Stamped[T] | None) -> float | None:
        """Seconds since ``item`` arrived on this console."""
        return None if item is None else max(0.0, self.now() - item.received)

    def wall_time_of(self, item: Stamped[T]) -> datetime:
        """When ``item`` arrived, as local wall time (for "as of 12:03:04")."""
        return datetime.now().astimezone() - timedelta(seconds=self.now() - item.received)

    def disconnected_for_s(self) -> float | None:
        return None if self.connected else max(0.0, self.now() - self.changed_at)

    def elapsed_s(self) -> float | None:
        """Swap time so far, extrapolated from the last status while the swap clock runs live.

        The status is published on changes only; between them the console advances the swap
        clock by its own elapsed time times the station's time scale, and stops advancing the
        moment the data is not live (so a frozen number is never passed off as running).
        """
        item = self.status
        if item is None or item.value.elapsed_s is None:
            return None
        return self._advance(item, item.value.elapsed_s)

    def phase_elapsed_s(self) -> float | None:
        item = self.status
        if item is None or item.value.phase_elapsed_s is None:
            return None
        return self._advance(item, item.value.phase_elapsed_s)

    def _advance(self, item: Stamped[Status], seconds: float) -> float:
        status = item.value
        if status.mode in _RUNNING and self.from_controller_live(item):
            return seconds + (self.now() - item.received) * status.time_scale
        return seconds

    # ---- log ---------------------------------------------------------------------------------
    def note(self, kind: LogKind, text: str) -> None:
        self.log.append(LogEntry(datetime.now().astimezone(), kind, text))
        self.log_total += 1
        log.info("console: %s: %s", kind, text)

    def command_sent(self, command_id: str, cmd: str, args: dict[str, object]) -> None:
        self.note("sent", f"{cmd}{_args_text(args)} sent ({command_id})")

    def command_not_sent(self, cmd: str, why: str) -> None:
        self.note("error", f"{cmd} NOT sent: {why}")

    def command_no_reply(self, cmd: str, command_id: str, timeout_s: float) -> None:
        self.note("error", f"{cmd}: no reply within {timeout_s:g} s ({command_id})")

    def command_replied(self, reply: Reply, cmd: str) -> None:
        mode = f" (mode now {reply.mode.value})" if reply.mode else ""
        if reply.ok:
            self.note("ok", f"{cmd} ok{mode}")
            for line in result_lines(cmd, reply.result):
                self.note("info", line)
        else:
            self.note("refused", f"{cmd} REFUSED: {reply.error}{mode}")

    # ---- messages ----------------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes) -> None:
        """Fold one message in. Never raises: a bad payload becomes a log line."""
        try:
            self._fold(topic, payload)
        except PayloadError as exc:
            self.note("error", f"unreadable message on {topic}: {exc.reason}")
        except Exception:  # a display must survive anything a peer sends
            log.exception("console could not fold a message on %s", topic)

    def _stamp(self, value: T) -> Stamped[T]:
        return Stamped(value, self.now(), self.epoch)

    def _stamp_or_none(self, value: T | None) -> Stamped[T] | None:
        return None if value is None else self._stamp(value)

    def _fold(self, topic: str, payload: bytes) -> None:
        t = self.topics
        if topic == t.status:
            self._on_status(_retained(Status, payload))
        elif topic == t.inventory:
            self.inventory = self._stamp_or_none(_retained(Inventory, payload))
        elif topic == t.alarms:
            self.alarms = self._stamp_or_none(_retained(Alarms, payload))
        elif topic == t.history:
            self.history = self._stamp_or_none(_retained(History, payload))
        elif topic == t.controller:
            self._on_controller(payload)
        elif topic == t.events:
            self._on_event(decode_as(EventAdapter, payload))
        elif topic == t.reply:
            return  # replies are logged by whoever sent the command, with its name
        else:
            device = t.device_of(topic)
            if device is not None and topic == t.driver_online(device):
                self._on_driver_online(device, payload)

    def _on_status(self, status: Status | None) -> None:
        if status is None:
            self.status = None
            return
        self.status = self._stamp(status)
        line = self.timeline
        if status.swap_id and status.swap_id != line.swap_id:
            line.begin(status.swap_id, status.phase)
        if status.swap_id and status.swap_id == line.swap_id and not line.finished:
            line.vehicle_id = status.vehicle_id
            if status.phase in SWAP_PHASES:
                line.current = status.phase

    def _on_controller(self, payload: bytes) -> None:
        online = payload.strip() == b"online"
        before = self.controller.value if self.controller else None
        self.controller = self._stamp(online)
        if before is not None and before != online:
            self.note(
                "info" if online else "error", f"controller {'online' if online else 'OFFLINE'}"
            )

    def _on_driver_online(self, device: str, payload: bytes) -> None:
        online = payload.strip() == b"online"
        before = self.drivers.get(device)
        self.drivers[device] = self._stamp(online)
        if before is not None and before.value != online:
            self.note(
                "info" if online else "error",
                f"driver {device} {'online' if online else 'OFFLINE'}",
            )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PhaseChanged):
            self._on_phase(event)
        elif isinstance(event, SwapFinished):
            r = event.record
            self.timeline.finish(r)
            ok = r.result == "completed" and r.in_budget
            verdict = (
                ("in budget" if r.in_budget else "OVER BUDGET") if r.result == "completed" else ""
            )
            why = f": {r.reason}" if r.reason else ""
            self.note(
                "info" if ok else "error",
                f"swap {_short(r.swap_id)} {r.result} after {r.duration_s:.1f} s {verdict}{why}",
            )
        elif isinstance(event, ModeChanged):
            why = f" ({event.reason})" if event.reason else ""
            self.note("info", f"mode {event.previous.value} -> {event.mode.value}{why}")
        elif isinstance(event, AlarmRaised):
            a = event.alarm
            self.note("alarm", f"ALARM {a.severity.value} {a.code}: {a.text}")
        elif isinstance(event, CommandHandled):
            who = event.sender or "anonymous"
            result = "ok" if event.ok else f"refused: {event.error}"
            self.note("audit", f"{who}: {event.cmd}{_args_text(event.args)} -> {result}")
        elif isinstance(event, VehicleArrived):
            truck = event.plate or event.vehicle_id or "?"
            self.note("info", f"truck {truck} stopped in the bay (swap {event.swap_id or '?'})")
        elif isinstance(event, ErrorEvent):
            self.note("error", f"{event.source} refused input on {event.topic}: {event.error}")

    def _on_phase(self, event: PhaseChanged) -> None:
        line = self.timeline
        if event.swap_id and event.swap_id != line.swap_id:
            line.begin(event.swap_id, event.phase)
        if event.swap_id != line.swap_id or line.finished:
            return
        if event.previous in SWAP_PHASES:
            line.durations[event.previous] = event.previous_phase_s
        line.current = event.phase if event.phase in SWAP_PHASES else None


def _retained(model: type[M], payload: bytes) -> M | None:
    """An empty retained payload clears the topic: nothing to show, rather than an error."""
    return decode(model, payload) if payload else None


def _short(swap_id: str) -> str:
    return swap_id.rsplit("-", 1)[-1]


def _args_text(args: dict[str, object]) -> str:
    return f" {args}" if args else ""
