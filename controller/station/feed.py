"""What the station tells the world: its retained snapshots and its events, in order.

The station decides *when* something happened (a mode changed, a swap ended); this module
owns *how* that reads on the wire: which contract message, on which topic, stamped by the
station clock, and which retained snapshots it makes stale. Keeping the message-building here
keeps the station's own code about sequencing and safety.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from controller.clock import Clock
from controller.contract import (
    AlarmInfo,
    AlarmRaised,
    Alarms,
    History,
    Inventory,
    Mode,
    ModeChanged,
    Phase,
    PhaseChanged,
    Status,
    SwapFinished,
    SwapRecord,
    Topics,
    VehicleArrived,
)
from controller.station.outbox import Outbox
from controller.station.swap import SwapRun

#: How many recent swaps the retained history topic carries.
HISTORY_LENGTH = 20


class StationFeed:
    """The station's events and retained snapshots, through the outbox (never blocking).

    Args:
        outbox: publishes in order without waiting.
        topics: this station's topic names.
        clock: stamps every message.
        status, alarms, history, inventory: build the retained snapshots when they are stale
            (``alarms()`` is the whole alarm list: the shelved ones are published apart)
            (``history(n)`` gives the last ``n`` swaps, newest first).
    """

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        clock: Clock,
        *,
        status: Callable[[], Status],
        alarms: Callable[[], list[AlarmInfo]],
        history: Callable[[int], list[SwapRecord]],
        inventory: Callable[[], Inventory],
    ) -> None:
        self._outbox = outbox
        self._topics = topics
        self._clock = clock
        self._station = topics.station_id
        #: When the last phase ended (monotonic), for ``previous_phase_s``.
        self._last_phase_end: float | None = None
        outbox.register_snapshot(topics.status, status)
        outbox.register_snapshot(topics.alarms, lambda: _alarm_list(clock, self._station, alarms()))
        outbox.register_snapshot(
            topics.history,
            lambda: History(
                ts=clock.now(),
                station=self._station,
                swaps=list(reversed(history(HISTORY_LENGTH))),
            ),
        )
        outbox.register_snapshot(topics.inventory, inventory)

    # ---- stale snapshots -------------------------------------------------------------------
    def status_changed(self) -> None:
        self._outbox.dirty(self._topics.status)

    def alarms_changed(self) -> None:
        self._outbox.dirty(self._topics.alarms)
        self._outbox.dirty(self._topics.status)

    def inventory_changed(self) -> None:
        self._outbox.dirty(self._topics.inventory)

    # ---- events ----------------------------------------------------------------------------
    def event(self, event: BaseModel) -> None:
        """Publish ``event`` on the events topic, in order, without waiting."""
        self._outbox.event(self._topics.events, event)

    def mode_changed(self, new: Mode, previous: Mode, reason: str | None) -> None:
        self.event(
            ModeChanged(
                ts=self._clock.now(),
                station=self._station,
                mode=new,
                previous=previous,
                reason=reason,
            )
        )
        self.status_changed()

    def phase_changed(self, new: Phase, previous: Phase, run: SwapRun | None) -> None:
        now = self._clock.monotonic()
        took = None
        if previous is not Phase.waiting and self._last_phase_end is not None:
            took = round(now - self._last_phase_end, 3)
        self._last_phase_end = now
        self.event(
            PhaseChanged(
                ts=self._clock.now(),
                station=self._station,
                swap_id=run.swap_id if run else None,
                phase=new,
                previous=previous,
                elapsed_s=round(now - run.started, 3) if run else None,
                previous_phase_s=took,
            )
        )
        self.status_changed()

    def alarm_raised(self, alarm: AlarmInfo) -> None:
        self._outbox.dirty(self._topics.alarms)
        self.event(AlarmRaised(ts=self._clock.now(), station=self._station, alarm=alarm))
        self.status_changed()

    def vehicle_arrived(self, run: SwapRun) -> None:
        self.event(
            VehicleArrived(
                ts=self._clock.now(),
                station=self._station,
                swap_id=run.swap_id,
                plate=run.plate,
                queued_s=run.queued_s,
                manoeuvre_s=run.manoeuvre_s,
            )
        )

    def history_changed(self) -> None:
        """A swap's record changed after it ended (a recovery completed it)."""
        self._outbox.dirty(self._topics.history)

    def swap_finished(self, record: SwapRecord) -> None:
        self._outbox.dirty(self._topics.history)
        self.event(SwapFinished(ts=self._clock.now(), station=self._station, record=record))
        self.status_changed()
        self.inventory_changed()


def _alarm_list(clock: Clock, station: str, listed: list[AlarmInfo]) -> Alarms:
    """The alarm list as published: annunciated alarms, and the shelved ones apart."""
    shown = [a for a in listed if a.shelved_until is None]
    shelved = [a for a in listed if a.shelved_until is not None]
    return Alarms(ts=clock.now(), station=station, alarms=shown, shelved=shelved)
