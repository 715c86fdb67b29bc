"""One swap, as the phase plan says: the sequencer interprets ``PHASE_PLAN`` (the contract's
``phases`` module), which says what each phase asks of which driver, in what order, and what runs
concurrently.

Every command goes through the :class:`MotionGate`. Each phase runs under its deadline (station
seconds, paused while held); the budget is measured from the truck stopping in the bay to its
release. What a phase needs beyond driver commands (reading the vehicle's identity, choosing the
slots, checking the inserted pack) is a named hook of the plan, implemented here in :data:`HOOKS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import IdentifyData, PackInfo, Phase, SwapRecord, VerifyData
from controller.contract.phases import PHASE_PLAN, Hook, Pack, PackMove, Place, Step
from controller.devices import Devices
from controller.errors import DeviceFailed, PackLost, PhaseDeadlineExceeded
from controller.inventory import GRIPPER, PackLedger, slot_location, vehicle_location
from controller.station.gate import STATE_SETTLE_S, DeadlineExpired, MotionGate

log = logging.getLogger(__name__)
D = TypeVar("D", bound=BaseModel)
T = TypeVar("T")


@dataclass
class SwapRun:
    """What the station knows about the swap under way."""

    swap_id: str
    plate: str | None
    started: float  # clock.monotonic() when the truck stopped
    started_at: datetime
    queued_s: float | None = None
    manoeuvre_s: float | None = None
    vehicle_id: str | None = None
    pack_type: str | None = None
    pack_out: PackInfo | None = None
    pack_in: PackInfo | None = None
    stow_slot: int | None = None
    fetch_slot: int | None = None
    phases: dict[str, float] = field(default_factory=dict)
    phase: Phase | None = None
    phase_started: float | None = None

    def known(self, value: T | None, what: str) -> T:
        """A fact a hook of an earlier phase or step found; missing, the plan is out of order."""
        if value is None:
            raise RuntimeError(f"swap {self.swap_id}: the plan needs the {what} before it is known")
        return value

    def slot(self, place: Place) -> int:
        """The number of the slot the swap chose for ``place`` (``stow`` or ``fetch``)."""
        chosen = {Place.stow: self.stow_slot, Place.fetch: self.fetch_slot}
        if place not in chosen:
            raise ValueError(f"{place.value} is not a rack slot")
        return self.known(chosen[place], f"{place.value} slot")

    def location(self, place: Place) -> str:
        """``place`` as the ledger names it: ``vehicle:<id>``, ``gripper``, ``slot:<n>``."""
        if place is Place.vehicle:
            return vehicle_location(self.known(self.vehicle_id, "vehicle id"))
        if place is Place.gripper:
            return GRIPPER
        return slot_location(self.slot(place))

    def pack_id(self, pack: Pack) -> str:
        info = self.pack_out if pack is Pack.outgoing else self.pack_in
        return self.known(info, f"{pack.value} pack").id

    def record(
        self,
        result: Literal["completed", "aborted", "estopped"],
        *,
        now: float,
        ended_at: datetime,
        budget_s: float,
        held_s: float,
        reason: str | None = None,
    ) -> SwapRecord:
        duration = now - self.started
        return SwapRecord(
            swap_id=self.swap_id,
            vehicle_id=self.vehicle_id or self.plate,
            result=result,
            duration_s=round(duration, 3),
            budget_s=budget_s,
            in_budget=result == "completed" and duration <= budget_s,
            phases={k: round(v, 3) for k, v in self.phases.items()},
            pack_out=self.pack_out,
            pack_in=self.pack_in,
            queued_s=self.queued_s,
            manoeuvre_s=self.manoeuvre_s,
            held_s=round(held_s, 3),
            reason=reason,
            started_at=self.started_at,
            ended_at=ended_at,
        )


def _data(model: type[D], action: str, data: dict[str, Any]) -> D:
    """A driver's result data, checked against the contract (a bad one is a device failure)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DeviceFailed("vehicle", action, "bad_result", str(exc.errors()[0]["msg"])) from None


@dataclass(kw_only=True)
class SwapSequencer:
    """Runs one swap by interpreting :data:`~controller.contract.phases.PHASE_PLAN`: one loop
    over the phases, each under its deadline, its branches concurrently and the steps of each in
    order. Driver actions go through the gate; pack moves through the ledger's journal; the
    controller's own work is the plan's named hooks (:data:`HOOKS`)."""

    config: StationConfig
    clock: Clock
    gate: MotionGate
    devices: Devices
    ledger: PackLedger
    enter_phase: Callable[[Phase], Awaitable[None]]
    #: The slot of a charged pack of this type; suspends the station until there is one.
    wait_for_pack: Callable[[str], Awaitable[int]]
    inventory_changed: Callable[[], None]

    async def run(self, run: SwapRun) -> None:
        for plan in PHASE_PLAN:
            async with self._phase(run, plan.phase):
                if plan.before is not None:
                    await HOOKS[plan.before](self, run, {})
                await self._branches(run, plan.branches)

    @asynccontextmanager
    async def _phase(self, run: SwapRun, phase: Phase) -> AsyncIterator[None]:
        deadline = self.config.swap.phase_deadlines_s[phase.value]
        # Held (or suspended) between phases: the swap stays in the phase it finished until the
        # operator resumes, so the status and the events never show a phase that is not running.
        await self.gate.wait_for_execute()
        await self.enter_phase(phase)
        run.phase = phase
        run.phase_started = self.clock.monotonic()
        try:
            async with self.gate.deadline(deadline):
                yield
        except DeadlineExpired as exc:
            raise PhaseDeadlineExceeded(phase.value, deadline, exc.awaiting) from None
        finally:
            run.phases[phase.value] = self.clock.monotonic() - run.phase_started

    async def _branches(self, run: SwapRun, branches: tuple[tuple[Step, ...], ...]) -> None:
        """One branch runs in this task; several run concurrently in a TaskGroup (whose first
        failure cancels the others)."""
        if len(branches) == 1:
            await self._steps(run, branches[0])
            return
        async with asyncio.TaskGroup() as tg:
            for branch in branches:
                tg.create_task(self._steps(run, branch))

    async def _steps(self, run: SwapRun, steps: tuple[Step, ...]) -> None:
        for step in steps:
            await self._step(run, step)

    async def _step(self, run: SwapRun, step: Step) -> None:
        args = {k: run.slot(v) if isinstance(v, Place) else v for k, v in step.args.items()}
        data: dict[str, Any] = {}
        if step.moves is not None:
            await self._move_pack(run, step.moves, step, args)
        elif step.carries is not None:
            await self._carry(run.pack_id(step.carries), step, args)
        else:
            data = await self.gate.send(step.device, step.action, **args)
        if step.then is not None:
            await HOOKS[step.then](self, run, data)

    async def _move_pack(
        self, run: SwapRun, move: PackMove, step: Step, args: dict[str, Any]
    ) -> None:
        """One arm action that moves a pack: journal the intent, act, check the sensors agree,
        journal the outcome. A pack whose place the sensors cannot confirm becomes ``unknown``."""
        pack_id, src, dst = run.pack_id(move.pack), run.location(move.src), run.location(move.dst)
        move_id = self.ledger.begin_move(pack_id, src, dst, swap_id=run.swap_id)
        self.inventory_changed()
        try:
            await self.gate.send(step.device, step.action, **args)
            await self._sensors_agree(pack_id, dst, step.action)
        except BaseException as exc:
            where = self._reported_place(pack_id)
            self.ledger.fail_move(move_id, pack_id, where, f"{step.action}: {exc!r}")
            self.inventory_changed()
            raise
        self.ledger.confirm_move(move_id, pack_id, dst)
        self.inventory_changed()

    def _reported_place(self, pack_id: str) -> str:
        d = self.devices
        return self.ledger.sensed_at(pack_id, d.rack, d.arm, d.vehicle)

    async def _sensors_agree(self, pack_id: str, expected: str, action: str) -> None:
        """A ``done`` is believed only when the sensors say the same (a driver may be wrong)."""
        ok = await self.devices.wait_until(
            lambda: self._reported_place(pack_id) == expected, STATE_SETTLE_S
        )
        if not ok:
            seen = self._reported_place(pack_id)
            raise PackLost(pack_id, expected, seen, action=action)

    async def _carry(self, pack_id: str, step: Step, args: dict[str, Any]) -> None:
        """Move the arm with a pack in the gripper. If the move fails, or the gripper no longer
        reports the pack after it, the pack is where the sensors say, or ``unknown``."""
        try:
            await self.gate.send(step.device, step.action, **args)
            await self._sensors_agree(pack_id, GRIPPER, step.action)
        except BaseException:
            where = self._reported_place(pack_id)
            if where != GRIPPER:
                self.ledger.set_location(pack_id, where, "lost during an arm move")
                self.inventory_changed()
            raise

    # ---- the plan's hooks (see HOOK_PURPOSE in the plan) -------------------------------------
    async def _record_vehicle(self, run: SwapRun, data: dict[str, Any]) -> None:
        ident = _data(IdentifyData, "identify", data)
        run.vehicle_id = ident.vehicle_id
        pack = ident.pack
        if pack is None:
            raise DeviceFailed("vehicle", "identify", "no_pack", "vehicle reports no pack")
        run.pack_out, run.pack_type = pack, pack.type
        if self.ledger.locations.get(pack.id) != vehicle_location(ident.vehicle_id):
            self.ledger.arrive(pack, ident.vehicle_id)
            self.inventory_changed()

    async def _choose_slots(self, run: SwapRun, _: dict[str, Any]) -> None:
        pack_type = run.known(run.pack_type, "pack type")
        run.fetch_slot = await self.wait_for_pack(pack_type)
        run.stow_slot = self.ledger.choose_free(pack_type, exclude={run.fetch_slot})
        if run.stow_slot is None:
            raise DeviceFailed("rack", "stow", "rack_full", "no free slot for the pack")

    async def _take_charged_pack(self, run: SwapRun, _: dict[str, Any]) -> None:
        fresh = self.ledger.at(run.location(Place.fetch))
        if fresh is None:
            raise DeviceFailed("rack", "fetch", "empty_slot", f"slot {run.fetch_slot} empty")
        run.pack_in = self.ledger.packs[fresh]

    async def _check_inserted_pack(self, run: SwapRun, data: dict[str, Any]) -> None:
        verified = _data(VerifyData, "verify", data)
        inserted = run.pack_id(Pack.incoming)
        if verified.pack.id != inserted:
            raise DeviceFailed(
                "vehicle",
                "verify",
                "wrong_pack",
                f"BMS reports {verified.pack.id!r}, inserted {inserted!r}",
            )


HookBehaviour = Callable[[SwapSequencer, SwapRun, dict[str, Any]], Awaitable[None]]

#: What each of the plan's hooks does: called with the run and the step's result data ({} for a
#: phase's ``before`` hook).
HOOKS: dict[Hook, HookBehaviour] = {
    Hook.record_vehicle: SwapSequencer._record_vehicle,
    Hook.choose_slots: SwapSequencer._choose_slots,
    Hook.take_charged_pack: SwapSequencer._take_charged_pack,
    Hook.check_inserted_pack: SwapSequencer._check_inserted_pack,
}
if _missing := set(Hook) - set(HOOKS):  # the plan names a hook nobody implements
    raise ValueError(f"no behaviour for hook(s) {sorted(_missing)}")
