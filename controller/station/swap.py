"""One swap, phase by phase: what each phase asks of which driver, and in what order.

Independent actions of a phase run concurrently in a TaskGroup (door and vehicle HV in prepare,
arm home and vehicle verify in verify). Every command goes through the :class:`MotionGate`.
Each phase runs under its deadline (station seconds, paused while held); the budget is measured
from the truck stopping in the bay to its release.
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
from controller.devices import Devices
from controller.errors import DeviceFailed, PackLost, PhaseDeadlineExceeded
from controller.inventory import GRIPPER, PackLedger, slot_location, vehicle_location
from controller.station.gate import STATE_SETTLE_S, DeadlineExpired, MotionGate

log = logging.getLogger(__name__)
D = TypeVar("D", bound=BaseModel)


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


class SwapSequencer:
    """Runs the phases of one swap against the drivers."""

    def __init__(
        self,
        *,
        config: StationConfig,
        clock: Clock,
        gate: MotionGate,
        devices: Devices,
        ledger: PackLedger,
        enter_phase: Callable[[Phase], Awaitable[None]],
        wait_for_pack: Callable[[str], Awaitable[int]],
        inventory_changed: Callable[[], None],
    ) -> None:
        self._cfg = config
        self._clock = clock
        self._gate = gate
        self._devices = devices
        self._ledger = ledger
        self._enter_phase = enter_phase
        self._wait_for_pack = wait_for_pack
        self._inventory_changed = inventory_changed

    @asynccontextmanager
    async def _phase(self, run: SwapRun, phase: Phase) -> AsyncIterator[None]:
        deadline = self._cfg.swap.phase_deadlines_s[phase.value]
        # Held (or suspended) between phases: the swap stays in the phase it finished until the
        # operator resumes, so the status and the events never show a phase that is not running.
        await self._gate.wait_for_execute()
        await self._enter_phase(phase)
        run.phase = phase
        run.phase_started = self._clock.monotonic()
        try:
            async with self._gate.deadline(deadline):
                yield
        except DeadlineExpired as exc:
            raise PhaseDeadlineExceeded(phase.value, deadline, exc.awaiting) from None
        finally:
            run.phases[phase.value] = self._clock.monotonic() - run.phase_started

    async def _move_pack(
        self, run: SwapRun, pack_id: str, src: str, dst: str, action: str, **args: Any
    ) -> None:
        """One arm action that moves a pack: journal the intent, act, check the sensors agree,
        journal the outcome. A pack whose place the sensors cannot confirm becomes ``unknown``."""
        move_id = self._ledger.begin_move(pack_id, src, dst, swap_id=run.swap_id)
        self._inventory_changed()
        try:
            await self._gate.send("arm", action, **args)
            await self._sensors_agree(pack_id, dst, action)
        except BaseException as exc:
            where = self._reported_place(pack_id)
            self._ledger.fail_move(move_id, pack_id, where, f"{action}: {exc!r}")
            self._inventory_changed()
            raise
        self._ledger.confirm_move(move_id, pack_id, dst)
        self._inventory_changed()

    def _reported_place(self, pack_id: str) -> str:
        d = self._devices
        return self._ledger.sensed_at(pack_id, d.rack, d.arm, d.vehicle)

    async def _sensors_agree(self, pack_id: str, expected: str, action: str) -> None:
        """A ``done`` is believed only when the sensors say the same (a driver may be wrong)."""
        ok = await self._devices.wait_until(
            lambda: self._reported_place(pack_id) == expected, STATE_SETTLE_S
        )
        if not ok:
            seen = self._reported_place(pack_id)
            raise PackLost(pack_id, expected, seen, f"arm.{action} reported done")

    async def _carry(self, pack_id: str, **move: Any) -> None:
        """Move the arm with a pack in the gripper. If the move fails, or the gripper no longer
        reports the pack after it, the pack is where the sensors say, or ``unknown``."""
        try:
            await self._gate.send("arm", "move", **move)
            await self._sensors_agree(pack_id, GRIPPER, "move")
        except BaseException:
            where = self._reported_place(pack_id)
            if where != GRIPPER:
                self._ledger.set_location(pack_id, where, "lost during an arm move")
                self._inventory_changed()
            raise

    async def run(self, run: SwapRun) -> None:
        send = self._gate.send
        ledger = self._ledger

        async with self._phase(run, Phase.identify):
            ident = _data(IdentifyData, "identify", await send("vehicle", "identify"))
            run.vehicle_id = ident.vehicle_id
            pack = ident.pack
            if pack is None:
                raise DeviceFailed("vehicle", "identify", "no_pack", "vehicle reports no pack")
            run.pack_out, run.pack_type = pack, pack.type
            if ledger.locations.get(pack.id) != vehicle_location(run.vehicle_id):
                ledger.arrive(pack, run.vehicle_id)
                self._inventory_changed()

        async with self._phase(run, Phase.position):
            await send("bay", "secure")

        async with self._phase(run, Phase.prepare):
            run.fetch_slot = await self._wait_for_pack(pack.type)
            run.stow_slot = ledger.choose_free(pack.type, exclude={run.fetch_slot})
            if run.stow_slot is None:
                raise DeviceFailed("rack", "stow", "rack_full", "no free slot for the pack")

            async def door_then_arm() -> None:
                await send("door", "open")
                await send("arm", "move", target="vehicle")

            async with asyncio.TaskGroup() as tg:
                tg.create_task(door_then_arm())
                tg.create_task(send("vehicle", "hv_off"))
                tg.create_task(send("rack", "undock", slot=run.fetch_slot))

        async with self._phase(run, Phase.unlock):
            await send("bay", "unlock")

        on_vehicle = vehicle_location(run.vehicle_id)
        stow, fetch = slot_location(run.stow_slot), slot_location(run.fetch_slot)
        async with self._phase(run, Phase.remove):
            await self._move_pack(run, pack.id, on_vehicle, GRIPPER, "lift")

        async with self._phase(run, Phase.stow):
            await self._carry(pack.id, target="slot", slot=run.stow_slot)
            await self._move_pack(run, pack.id, GRIPPER, stow, "lower")
            await send("rack", "dock", slot=run.stow_slot)

        async with self._phase(run, Phase.fetch):
            fresh = ledger.at(fetch)
            if fresh is None:
                raise DeviceFailed("rack", "fetch", "empty_slot", f"slot {run.fetch_slot} empty")
            run.pack_in = ledger.packs[fresh]
            await send("arm", "move", target="slot", slot=run.fetch_slot)
            await self._move_pack(run, fresh, fetch, GRIPPER, "lift")

        async with self._phase(run, Phase.insert):
            await self._carry(fresh, target="vehicle")
            await self._move_pack(run, fresh, GRIPPER, on_vehicle, "lower")

        async with self._phase(run, Phase.lock):
            await send("bay", "lock")

        async with self._phase(run, Phase.verify):

            async def vehicle_checks() -> None:
                await send("vehicle", "hv_on")
                verified = _data(VerifyData, "verify", await send("vehicle", "verify"))
                if verified.pack.id != fresh:
                    raise DeviceFailed(
                        "vehicle",
                        "verify",
                        "wrong_pack",
                        f"BMS reports {verified.pack.id!r}, inserted {fresh!r}",
                    )

            async def arm_home_door_closed() -> None:
                await send("arm", "move", target="home")
                await send("door", "close")

            async with asyncio.TaskGroup() as tg:
                tg.create_task(vehicle_checks())
                tg.create_task(arm_home_door_closed())

        async with self._phase(run, Phase.release):
            await send("bay", "release")
