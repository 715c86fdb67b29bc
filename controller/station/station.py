"""The station: modes, the execute loop that swaps trucks, halting, and what it publishes.

Mode changes go through :class:`ModeMachine`; the swaps run in one task owned by the station
(``_execute``), which the station cancels to halt. Whatever ends a swap early (a driver failure,
a deadline, an interlock, an abort or an e-stop) ends the same way: the swap task is stopped,
every device the swap touched is told to ``stop`` (make itself safe; not a motion), an alarm is
raised, the swap is recorded, and the station sits in aborted or estopped until an operator
clears and resets it. Nothing restarts on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from controller.aio import cancel_and_wait
from controller.bus import Bus
from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import (
    AlarmInfo,
    AlarmRaised,
    Alarms,
    ErrorEvent,
    History,
    Mode,
    ModeChanged,
    Phase,
    PhaseChanged,
    Severity,
    Status,
    SwapFinished,
    SwapRecord,
    Topics,
    VehicleArrived,
)
from controller.devices import Devices
from controller.errors import SwapstationError
from controller.inventory import PackLedger
from controller.station.alarms import AlarmBook
from controller.station.gate import Halted, MotionGate
from controller.station.machine import ModeMachine, PhaseMachine
from controller.station.maintenance import HandMoves
from controller.station.outbox import Outbox
from controller.station.recovery import JournalRecovery
from controller.station.swap import SwapRun, SwapSequencer

log = logging.getLogger(__name__)

#: How many recent swaps the retained history topic carries.
HISTORY_LENGTH = 20


def first_error(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from a TaskGroup."""
    while isinstance(exc, BaseExceptionGroup):
        meaningful = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (meaningful or list(exc.exceptions))[0]
    return exc


class Station:
    """Sequencer and mode keeper of one swap station."""

    def __init__(
        self,
        config: StationConfig,
        *,
        bus: Bus,
        clock: Clock,
        devices: Devices,
        ledger: PackLedger,
        outbox: Outbox,
    ) -> None:
        self.config = config
        self.topics = Topics(config.station_id)
        self._bus = bus
        self.clock = clock
        self.devices = devices
        self.ledger = ledger
        self._outbox = outbox
        self.modes = ModeMachine(self._on_mode_change)
        self.phases = PhaseMachine(self._on_phase_change)
        self.gate = MotionGate(
            devices=devices, clock=clock, mode=lambda: self.modes.mode, steps=config.swap.steps
        )
        self.alarms = AlarmBook(
            clock, self._on_alarm, journal=ledger.journal, on_change=self.alarms_changed
        )
        self.store = ledger.journal
        self._sequencer = SwapSequencer(
            config=config,
            clock=clock,
            gate=self.gate,
            devices=devices,
            ledger=ledger,
            enter_phase=self.phases.advance,
            wait_for_pack=self._wait_for_pack,
            inventory_changed=self.inventory_changed,
        )
        self.recovery = JournalRecovery(
            devices=devices,
            ledger=ledger,
            alarms=self.alarms,
            clock=clock,
            inventory_changed=self.inventory_changed,
        )
        self.hands = HandMoves(
            devices=devices,
            ledger=ledger,
            alarms=self.alarms,
            inventory_changed=self.inventory_changed,
        )
        self.run: SwapRun | None = None
        self.records: list[SwapRecord] = []
        self.reason: str | None = None
        self._swap_seq = itertools.count(1)
        #: Trucks swapped (or being swapped) and still in the bay: plate -> vehicle id.
        self._served: dict[str, str | None] = {}
        self._execute_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._halting: asyncio.Task[None] | None = None
        self._halts_running = 0
        self._awaiting_pack: str | None = None
        self._last_phase_end: float | None = None
        #: Every command the station sent, as (station time, device, action): for tests/audit.
        self.sent: list[tuple[float, str, str]] = []
        self.swap_listeners: list[Callable[[SwapRecord], None]] = []
        #: Called with (new, previous) on every mode change, synchronously.
        self.mode_listeners: list[Callable[[Mode, Mode], None]] = []
        #: Called with each new phase, synchronously, before its first command goes out.
        self.phase_listeners: list[Callable[[Phase], None]] = []
        outbox.register_snapshot(self.topics.status, self.status)
        outbox.register_snapshot(
            self.topics.alarms,
            lambda: Alarms(ts=clock.now(), station=config.station_id, alarms=self.alarms.active()),
        )
        outbox.register_snapshot(
            self.topics.history,
            lambda: History(
                ts=clock.now(),
                station=config.station_id,
                swaps=list(reversed(self.store.swaps(HISTORY_LENGTH))),
            ),
        )
        outbox.register_snapshot(
            self.topics.inventory,
            lambda: ledger.snapshot(config.station_id, self.run.vehicle_id if self.run else None),
        )
        devices.add_listener(self._on_device_change)

    # ---- what the station publishes --------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self.modes.mode

    def status(self) -> Status:
        run, now = self.run, self.clock.monotonic()
        bay = self.devices.bay
        phase = self.phases.phase if self.mode is not Mode.idle else None
        return Status(
            ts=self.clock.now(),
            station=self.config.station_id,
            mode=self.mode,
            phase=phase,
            swap_id=run.swap_id if run else None,
            vehicle_id=(run.vehicle_id or run.plate) if run else None,
            elapsed_s=round(now - run.started, 3) if run else None,
            budget_s=self.config.swap.budget_s,
            phase_elapsed_s=(
                round(now - run.phase_started, 3) if run and run.phase_started else None
            ),
            phase_deadline_s=(
                self.config.swap.phase_deadlines_s.get(run.phase.value)
                if run and run.phase
                else None
            ),
            queue_length=bay.queue_length if bay else 0,
            active_alarms=len(self.alarms.active()),
            swaps_completed=sum(1 for r in self.records if r.result == "completed"),
            time_scale=self.clock.time_scale,
            reason=self.reason,
        )

    def _on_mode_change(self, new: Mode, previous: Mode) -> None:
        log.info("mode %s -> %s (%s)", previous.value, new.value, self.reason or "")
        self.gate.mode_changed()
        for listener in self.mode_listeners:
            listener(new, previous)
        self._outbox.event(
            self.topics.events,
            ModeChanged(
                ts=self.clock.now(),
                station=self.config.station_id,
                mode=new,
                previous=previous,
                reason=self.reason,
            ),
        )
        self._outbox.dirty(self.topics.status)

    def _on_phase_change(self, new: Phase, previous: Phase) -> None:
        for listener in self.phase_listeners:
            listener(new)
        now = self.clock.monotonic()
        run = self.run
        took = None
        if previous is not Phase.waiting and self._last_phase_end is not None:
            took = round(now - self._last_phase_end, 3)
        self._last_phase_end = now
        self._outbox.event(
            self.topics.events,
            PhaseChanged(
                ts=self.clock.now(),
                station=self.config.station_id,
                swap_id=run.swap_id if run else None,
                phase=new,
                previous=previous,
                elapsed_s=round(now - run.started, 3) if run else None,
                previous_phase_s=took,
            ),
        )
        self._outbox.dirty(self.topics.status)

    def _on_alarm(self, alarm: AlarmInfo) -> None:
        self._outbox.dirty(self.topics.alarms)
        self._outbox.event(
            self.topics.events,
            AlarmRaised(ts=self.clock.now(), station=self.config.station_id, alarm=alarm),
        )
        self._outbox.dirty(self.topics.status)

    def alarms_changed(self) -> None:
        self._outbox.dirty(self.topics.alarms)
        self._outbox.dirty(self.topics.status)

    def inventory_changed(self) -> None:
        self._outbox.dirty(self.topics.inventory)

    def record_sent(self, device: str, action: str, args: dict[str, Any]) -> None:
        self.sent.append((self.clock.monotonic(), device, action))

    # ---- reacting to the drivers -----------------------------------------------------------
    def _on_device_change(self, device: str) -> None:
        if device == "safety":
            safety = self.devices.safety
            if safety is not None and safety.estop_pressed and self.mode is not Mode.estopped:
                self.spawn_halt(Mode.estopped, "e-stop pressed on the safety relay")
            elif safety is not None and safety.light_curtain_broken and self.mode is Mode.execute:
                self.reason = "light curtain broken"
                self._spawn(self.modes.fire("hold"))
        elif device in ("rack", "arm", "vehicle") and not self.ledger.seeded:
            self.recovery.seed_and_reconcile()
        if device == "vehicle" and self.ledger.seeded:
            self._learn_truck_pack()
        if device == "rack" and self.ledger.seeded:
            rack = self.devices.rack
            if rack is not None:
                self.ledger.refresh_rack(rack)
                self.inventory_changed()
                wanted = self._awaiting_pack
                if (
                    wanted
                    and self.mode is Mode.suspended
                    and self.ledger.choose_charged(wanted) is not None
                ):
                    self.reason = None
                    self._spawn(self.modes.fire("resume"))
        elif device == "bay":
            self._outbox.dirty(self.topics.status)
            self._check_departures()
        if self.devices[device].online is False and self.mode is Mode.execute:
            self._pause(f"{device} driver offline")

    def _check_departures(self) -> None:
        """A swapped truck no longer in the bay has left with its pack. Checked on every bay
        report and when a swap ends (a truck may leave before its swap's last result arrives,
        e.g. when that result was lost with the broker)."""
        bay = self.devices.bay
        plate = bay.vehicle.plate if bay and bay.vehicle else None
        for served, vehicle_id in list(self._served.items()):
            if served != plate and (self.run is None or self.run.plate != served):
                del self._served[served]
                if vehicle_id:
                    self.ledger.depart(vehicle_id)
                self.inventory_changed()

    def _learn_truck_pack(self) -> None:
        """A truck's pack enters the ledger as soon as its vehicle link reports it (even if the
        swap is halted before ``identify`` answers), so no pack in the station goes untracked."""
        vehicle = self.devices.vehicle
        if vehicle is None or vehicle.pack is None or not vehicle.vehicle_id:
            return
        if vehicle.pack.id not in self.ledger.locations:
            self.ledger.arrive(vehicle.pack, vehicle.vehicle_id)
            self.inventory_changed()

    def broker_lost(self) -> None:
        """The bus lost the broker: stop issuing commands until an operator resumes."""
        self.devices.forget_liveness()
        if self.mode is Mode.execute:
            self._pause("broker connection lost")

    def _pause(self, reason: str) -> None:
        """Something external is missing: hold a swap under way (the operator resumes it once
        it is safe), or suspend between swaps."""
        self.reason = reason
        self._spawn(self.modes.fire("hold" if self.run is not None else "suspend"))

    async def change_mode(self, trigger: str, *, reason: str | None) -> None:
        """Fire ``trigger`` (an operator command's transition), with ``reason`` as why the
        station is now in its new mode: the status and the ``ModeChanged`` event carry it."""
        self.reason = reason
        await self.modes.fire(trigger)

    # ---- after a restart ------------------------------------------------------------------
    async def recover_from_journal(self) -> None:
        """Come up from the journal (see :meth:`JournalRecovery.recover`); halted if needed."""
        halted = self.recovery.recover()
        if halted is not None:
            self.reason = halted.reason
            await self.modes.fire("abort")
            await self.modes.fire("finish_abort")
            if halted.recovery_needed:
                self.recovery.raise_recovery_alarm(halted.reason)
        self.inventory_changed()

    # ---- maintenance: the operator's hands -------------------------------------------------
    async def manual(self, device: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One driver action by hand, in maintenance mode, behind the same interlocks."""
        return await self.hands.run(device, action, args)

    # ---- execute: swapping trucks one after another ----------------------------------------
    def start_execute(self) -> None:
        self._execute_task = asyncio.create_task(self._execute(), name="station-execute")

    async def _execute(self) -> None:
        try:
            while True:
                plate, vehicle = await self._next_vehicle()
                await self.gate.wait_for_execute()
                await self._swap(plate, vehicle)
        except Halted:
            return
        except SwapstationError as exc:
            self.spawn_halt(Mode.aborted, str(exc), error=exc)
        except Exception as exc:  # a bug must still end in a safe state
            err = first_error(exc)
            if isinstance(err, Halted):
                return
            log.exception("swap failed")
            self.spawn_halt(Mode.aborted, f"{type(err).__name__}: {err}", error=err)

    async def _next_vehicle(self) -> tuple[str, Any]:
        def ready() -> bool:
            bay = self.devices.bay
            v = bay.vehicle if bay else None
            return bool(v and v.stopped and (v.plate or "?") not in self._served)

        await self.devices.wait_until(ready, None)
        bay = self.devices.bay
        assert bay is not None and bay.vehicle is not None
        return bay.vehicle.plate or "?", bay.vehicle

    async def _swap(self, plate: str, vehicle: Any) -> None:
        n = next(self._swap_seq)
        run = SwapRun(
            swap_id=f"{self.config.station_id}-S{n:04d}",
            plate=plate,
            started=self.clock.monotonic(),
            started_at=self.clock.now(),
            queued_s=vehicle.queued_s,
            manoeuvre_s=vehicle.manoeuvre_s,
        )
        self.run, self.gate.touched, self.gate.held_s = run, set(), 0.0
        self.store.begin_swap(run.swap_id, plate, run.started_at)
        self._served[plate] = None
        self._outbox.event(
            self.topics.events,
            VehicleArrived(
                ts=self.clock.now(),
                station=self.config.station_id,
                swap_id=run.swap_id,
                plate=plate,
                queued_s=vehicle.queued_s,
                manoeuvre_s=vehicle.manoeuvre_s,
            ),
        )
        try:
            await self._sequencer.run(run)
        except BaseException as exc:
            self._served[plate] = run.vehicle_id
            err = first_error(exc)
            if isinstance(err, SwapstationError | Halted):
                raise err from None
            raise
        self._served[plate] = run.vehicle_id
        self._finish_swap("completed")
        await self.phases.end_swap()

    def _finish_swap(self, result: Any, reason: str | None = None) -> None:
        run = self.run
        if run is None:
            return
        record = run.record(
            result,
            now=self.clock.monotonic(),
            ended_at=self.clock.now(),
            budget_s=self.config.swap.budget_s,
            held_s=self.gate.held_s,
            reason=reason,
        )
        self.records.append(record)
        self.store.record_swap(record)
        self._outbox.dirty(self.topics.history)
        self.run = None
        self._check_departures()  # the truck may have left before its swap ended
        self._outbox.event(
            self.topics.events,
            SwapFinished(ts=self.clock.now(), station=self.config.station_id, record=record),
        )
        self._outbox.dirty(self.topics.status)
        self.inventory_changed()
        for listener in self.swap_listeners:
            listener(record)

    async def _wait_for_pack(self, pack_type: str) -> int:
        while (slot := self.ledger.choose_charged(pack_type)) is None:
            if self.mode is Mode.execute:
                self.reason = f"no charged {pack_type} pack (needs SoC >= "
                self.reason += f"{self.config.rack.swappable_soc:.0%}); waiting for chargers"
                self._awaiting_pack = pack_type
                await self.modes.fire("suspend")
            await self.gate.wait_for_execute()
        self._awaiting_pack = None
        return slot

    async def stop_waiting(self) -> None:
        """Leave execute between swaps: stop waiting for the next truck."""
        await self._stop_execute()

    async def publish(self, topic: str, message: BaseModel) -> None:
        """Send ``message`` now; for replies, which must not wait behind the outbox."""
        try:
            await self._bus.publish(topic, message)
        except SwapstationError as exc:
            log.warning("could not publish to %s: %s", topic, exc)

    def error_event(self, event: ErrorEvent) -> None:
        self._outbox.event(self.topics.events, event)

    def event(self, event: BaseModel) -> None:
        """Publish ``event`` on the events topic, in order, without waiting."""
        self._outbox.event(self.topics.events, event)

    # ---- halting ---------------------------------------------------------------------------
    def spawn_halt(self, target: Mode, reason: str, *, error: BaseException | None = None) -> None:
        if self._halting is not None and not self._halting.done():
            if target is Mode.estopped:  # an e-stop overrides an abort under way
                self._spawn(self._halt(target, reason, error))
            return
        self._halting = self._spawn(self._halt(target, reason, error))

    async def halt(self, target: Mode, reason: str) -> None:
        """Abort or e-stop now and return when the station is safe."""
        await self._halt(target, reason, None)

    @property
    def halting(self) -> bool:
        """An abort or e-stop is still making the station safe (its record not yet written)."""
        return self._halts_running > 0

    async def _halt(self, target: Mode, reason: str, error: BaseException | None) -> None:
        self._halts_running += 1
        try:
            await self._halt_steps(target, reason, error)
        finally:
            self._halts_running -= 1

    async def _halt_steps(self, target: Mode, reason: str, error: BaseException | None) -> None:
        self.reason = reason
        if target is Mode.estopped:
            await self.modes.fire("estop")
        elif self.modes.can("abort"):
            await self.modes.fire("abort")
        self._raise_halt_alarm(target, reason, error)
        await self._stop_execute()
        await self._make_safe(set(self.gate.touched))
        if (run := self.run) is not None:
            # Recorded first: a truck that drove off meanwhile (a release that finished as
            # its deadline passed) has taken its pack, which no sensor of ours reports now.
            self._finish_swap("estopped" if target is Mode.estopped else "aborted", reason)
            self.recovery.follow_sensors(run.pack_out, run.pack_in)
        await self.phases.end_swap()
        unknown = sorted(p for p, loc in self.ledger.locations.items() if loc == "unknown")
        if unknown:
            self.alarms.raise_(
                "pack_location_unknown",
                Severity.critical,
                f"location unknown for pack(s) {', '.join(unknown)}",
                "Inspect the bay, the arm and the rack; in maintenance, record what you find "
                "with set_location before resetting.",
            )
        if self.mode is Mode.aborting:
            await self.modes.fire("finish_abort")

    def _raise_halt_alarm(self, target: Mode, reason: str, error: BaseException | None) -> None:
        code = (getattr(error, "code", None) or type(error).__name__) if error else target.value
        if target is Mode.estopped:
            hint = (
                "Release the e-stop and check the station, then send: ack (this alarm), clear, "
                "reset. An alarm acknowledged only after the reset stays listed."
            )
            self.alarms.raise_(str(code), Severity.critical, reason, hint)
            return
        hint = (
            "Check the devices named, then send: ack (this alarm), clear, reset. Packs are "
            "where the inventory says; move them by hand in maintenance if a swap was cut short."
        )
        self.alarms.raise_(str(code), Severity.error, reason, hint)

    async def _stop_execute(self) -> None:
        task, self._execute_task = self._execute_task, None
        await cancel_and_wait(task)

    def standing_alarms(self) -> frozenset[str]:
        """Alarm codes whose condition still holds: a reset must not retire them."""
        return self.recovery.standing_alarms()

    async def make_safe(self, devices: set[str]) -> None:
        """Tell ``devices`` to stop (not a motion: always allowed)."""
        await self._make_safe(devices)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the station owns (stopped on shutdown)."""
        return self._spawn(coro)

    async def _make_safe(self, devices: set[str]) -> None:
        """Tell every device a failed swap touched to stop (not a motion: always allowed)."""

        async def stop(device: str) -> None:
            try:
                await self.devices[device].command("stop")
            except SwapstationError as exc:
                log.warning("%s did not confirm stop: %s", device, exc)

        await asyncio.gather(*(stop(d) for d in sorted(devices)))

    async def shutdown(self) -> None:
        """Stop every task the station runs (the process is ending; drivers keep their state)."""
        await self._stop_execute()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
