"""The station: modes, the execute loop that swaps trucks, reacting to the drivers, halting.

Mode changes go through :class:`ModeMachine`; the swaps run in one task owned by the station
(``_execute``), which the station cancels to halt. Whatever ends a swap early (a driver failure,
a deadline, an interlock, an abort or an e-stop) ends the same way: the swap task is stopped,
every device the swap touched is told to ``stop`` (make itself safe; not a motion), an alarm
from the error table is raised, the swap is recorded, and the station sits in aborted or
estopped until an operator clears and resets it. Nothing restarts on its own.

What it publishes is built by :class:`StationFeed`; the trucks in the bay are tracked by
:class:`TrucksInBay`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from controller.aio import cancel_and_wait
from controller.bus import Bus
from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import (
    AlarmInfo,
    Mode,
    Phase,
    Status,
    SwapRecord,
    Topics,
    VehicleInBay,
)
from controller.devices import Devices
from controller.error_table import alarm_for
from controller.errors import SwapstationError
from controller.inventory import PackLedger
from controller.station.alarms import AlarmBook
from controller.station.bay import BayWatch
from controller.station.feed import StationFeed
from controller.station.gate import Halted, MotionGate
from controller.station.guided import GuidedRecovery
from controller.station.liveness import Liveness
from controller.station.machine import ModeMachine, PhaseMachine
from controller.station.maintenance import HandMoves
from controller.station.outbox import Outbox
from controller.station.recovery import JournalRecovery
from controller.station.swap import SwapRun, SwapSequencer
from controller.station.trucks import TrucksInBay

log = logging.getLogger(__name__)

#: How many recent swap records and sent commands the station keeps in memory (the journal
#: keeps every swap; these are for the status, tests and audits of a running controller).
RECORDS_KEPT = 100
SENT_KEPT = 2000


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
        self.store = ledger.journal
        self.modes = ModeMachine(self._on_mode_change)
        self.phases = PhaseMachine(self._on_phase_change)
        self.gate = MotionGate(
            devices=devices, clock=clock, mode=lambda: self.modes.mode, steps=config.swap.steps
        )
        self.alarms = AlarmBook(
            clock, self._on_alarm, journal=ledger.journal, on_change=self.alarms_changed,
            spawn=self.spawn,
        )  # fmt: skip
        self.feed = StationFeed(
            outbox,
            self.topics,
            clock,
            status=self.status,
            alarms=self.alarms.listed,
            history=self.store.swaps,
            inventory=lambda: ledger.snapshot(
                config.station_id,
                self.run.vehicle_id if self.run else None,
                None if self.run or self.halting else (devices.rack, devices.arm, devices.vehicle),
            ),
        )
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
        #: The latest swaps' records (all of them are in the journal).
        self.records: deque[SwapRecord] = deque(maxlen=RECORDS_KEPT)
        self.swaps_completed = 0
        self.reason: str | None = None
        # Numbered on from the journal: a restarted controller must not reuse a swap id.
        self._swap_seq = itertools.count(self.store.swaps_begun() + 1)
        self.trucks = TrucksInBay(
            devices=devices, ledger=ledger, inventory_changed=self.inventory_changed
        )
        self._execute_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._halting: asyncio.Task[None] | None = None
        self._halts_running = 0
        self._awaiting_pack: str | None = None
        #: The latest commands sent, as (station time, device, action), and how many in all:
        #: for tests and audits.
        self.sent: deque[tuple[float, str, str]] = deque(maxlen=SENT_KEPT)
        self.sent_total = 0
        #: Called with (new, previous) on every mode change, synchronously.
        self.mode_listeners: list[Callable[[Mode, Mode], None]] = []
        #: Called with each new phase, synchronously, before its first command goes out.
        self.phase_listeners: list[Callable[[Phase], None]] = []
        #: What a report from each driver may change, besides its liveness.
        self._reactions: dict[str, Callable[[], None]] = {
            "safety": self._on_safety,
            "vehicle": self._on_vehicle,
            "rack": self._on_rack,
            "bay": self._on_bay,
        }
        self.bay, self.liveness = BayWatch(devices), Liveness(self.alarms)
        self.guided = GuidedRecovery(
            devices=devices, rack=config.rack, store=self.store, alarms=self.alarms,
            hands=self.manual, history_changed=self.feed.history_changed,
        )  # fmt: skip
        devices.add_listener(self._on_device_change)

    # ---- what the station publishes (built by the feed) ------------------------------------
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
            active_alarms=sum(a.active for a in self.alarms.annunciated()),
            swaps_completed=self.swaps_completed,
            time_scale=self.clock.time_scale,
            reason=self.reason,
            bay=self.bay.situation,
            recovery=None if run else self.guided.proposal(self.bay.situation),
        )

    def _on_mode_change(self, new: Mode, previous: Mode) -> None:
        log.info("mode %s -> %s (%s)", previous.value, new.value, self.reason or "")
        self.gate.mode_changed()
        for listener in self.mode_listeners:
            listener(new, previous)
        self.feed.mode_changed(new, previous, self.reason)

    def _on_phase_change(self, new: Phase, previous: Phase) -> None:
        for listener in self.phase_listeners:
            listener(new)
        self.feed.phase_changed(new, previous, self.run)

    def _on_alarm(self, alarm: AlarmInfo) -> None:
        self.feed.alarm_raised(alarm)

    def alarms_changed(self) -> None:
        self.feed.alarms_changed()

    def inventory_changed(self) -> None:
        self.feed.inventory_changed()

    def record_sent(self, device: str, action: str, args: dict[str, Any]) -> None:
        self.sent.append((self.clock.monotonic(), device, action))
        self.sent_total += 1

    # ---- reacting to the drivers -----------------------------------------------------------
    def _on_device_change(self, device: str) -> None:
        if device in ("rack", "arm", "vehicle") and not self.ledger.seeded:
            self.recovery.seed_and_reconcile()
        react = self._reactions.get(device)
        if react is not None:
            react()
        self.liveness.update(device, self.devices[device].online)
        if self.devices[device].online is False and self.mode is Mode.execute:
            self._pause(f"{device} driver offline")
        if self.bay.update():
            self.feed.status_changed()

    def _on_safety(self) -> None:
        """An e-stop halts at once, from any mode; a broken light curtain holds a swap."""
        safety = self.devices.safety
        if safety is None:
            return
        if safety.estop_pressed and self.mode is not Mode.estopped:
            self.spawn_halt(Mode.estopped, "e-stop pressed on the safety relay")
        elif safety.light_curtain_broken and self.mode is Mode.execute:
            self.reason = "light curtain broken"
            self.spawn(self.modes.fire("hold"))

    def _on_vehicle(self) -> None:
        if self.ledger.seeded:
            self.trucks.learn_pack()

    def _on_rack(self) -> None:
        """The rack's packs feed the ledger; a swap suspended for a charged pack resumes once
        one is ready (the only resume that is not an operator's: nothing was halted)."""
        rack = self.devices.rack
        if not self.ledger.seeded or rack is None:
            return
        self.ledger.refresh_rack(rack)
        self.inventory_changed()
        wanted = self._awaiting_pack
        ready = wanted is not None and self.ledger.choose_charged(wanted) is not None
        if ready and self.mode is Mode.suspended:
            self.reason = None
            self.spawn(self.modes.fire("resume"))

    def _on_bay(self) -> None:
        self.feed.status_changed()
        self.trucks.check_departures(self.run.plate if self.run else None)

    def broker_lost(self) -> None:
        """The bus lost the broker: stop issuing commands until an operator resumes."""
        self.devices.forget_liveness()
        if self.mode is Mode.execute:
            self._pause("broker connection lost")

    def _pause(self, reason: str) -> None:
        """Something external is missing: hold a swap under way (the operator resumes it once
        it is safe), or suspend between swaps."""
        self.reason = reason
        self.spawn(self.modes.fire("hold" if self.run is not None else "suspend"))

    async def change_mode(self, trigger: str, *, reason: str | None) -> None:
        """Fire ``trigger`` (an operator command's transition), with ``reason`` as why the
        station is now in its new mode: the status and the ``ModeChanged`` event carry it."""
        self.reason = reason
        await self.modes.fire(trigger)

    # ---- after a restart ------------------------------------------------------------------
    async def recover_from_journal(self) -> None:
        """Come up from the journal (see :meth:`JournalRecovery.recover`); halted if needed."""
        halted = self.recovery.recover()
        self.guided.load()
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
                plate, vehicle = await self.trucks.next_unserved()
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

    async def _swap(self, plate: str, vehicle: VehicleInBay) -> None:
        n = next(self._swap_seq)
        run = SwapRun(
            swap_id=f"{self.config.station_id}-S{n:04d}",
            plate=plate,
            started=self.clock.monotonic(),
            started_at=self.clock.now(),
            queued_s=vehicle.queued_s,
            manoeuvre_s=vehicle.manoeuvre_s,
        )
        self.run = run
        self.gate.begin_swap()
        self.store.begin_swap(run.swap_id, plate, run.started_at)
        self.trucks.served(plate, None)
        self.feed.vehicle_arrived(run)
        try:
            await self._sequencer.run(run)
        except BaseException as exc:
            self.trucks.served(plate, run.vehicle_id)
            err = first_error(exc)
            if isinstance(err, SwapstationError | Halted):
                raise err from None
            raise
        self.trucks.served(plate, run.vehicle_id)
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
        if result == "completed":
            self.swaps_completed += 1
        self.store.record_swap(record)
        self.guided.swap_ended(record)
        self.run = None
        self.trucks.check_departures(None)  # the truck may have left before its swap ended
        self.feed.swap_finished(record)

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

    def event(self, event: BaseModel) -> None:
        """Publish ``event`` on the events topic, in order, without waiting."""
        self.feed.event(event)

    # ---- halting ---------------------------------------------------------------------------
    def spawn_halt(self, target: Mode, reason: str, *, error: BaseException | None = None) -> None:
        if self._halting is not None and not self._halting.done():
            if target is Mode.estopped:  # an e-stop overrides an abort under way
                self.spawn(self._halt(target, reason, error))
            return
        self._halting = self.spawn(self._halt(target, reason, error))

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
        await self.make_safe(set(self.gate.touched))
        if (run := self.run) is not None:
            # Recorded first: a truck that drove off meanwhile (a release that finished as
            # its deadline passed) has taken its pack, which no sensor of ours reports now.
            self._finish_swap("estopped" if target is Mode.estopped else "aborted", reason)
            self.recovery.follow_sensors(run.pack_out, run.pack_in)
        await self.phases.end_swap()
        unknown = sorted(p for p, loc in self.ledger.locations.items() if loc == "unknown")
        if unknown:
            text = f"location unknown for pack(s) {', '.join(unknown)}"
            self.alarms.raise_("pack_location_unknown", text)
        self.guided.after_halt(self.bay.situation)
        if self.mode is Mode.aborting:
            await self.modes.fire("finish_abort")

    def _raise_halt_alarm(self, target: Mode, reason: str, error: BaseException | None) -> None:
        """Every halt raises one alarm with a code from the error table (never a class name):
        ``estopped``, ``aborted`` (an operator's abort), or the error's own alarm, whose hint
        names the device and action involved."""
        if target is Mode.estopped:
            self.alarms.raise_("estopped", reason)
        elif error is None:
            self.alarms.raise_("aborted", reason)
        else:
            self.alarms.raise_(*alarm_for(error, reason))

    async def _stop_execute(self) -> None:
        task, self._execute_task = self._execute_task, None
        await cancel_and_wait(task)

    def standing_alarms(self) -> frozenset[str]:
        """Alarm codes whose condition still holds: a reset must not retire them."""
        return self.recovery.standing_alarms() | self.guided.standing(self.bay.situation)

    async def make_safe(self, devices: set[str]) -> None:
        """Tell ``devices`` (those a failed swap touched) to stop: not a motion, always allowed."""

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

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the station owns (stopped on shutdown)."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
