"""The charging rack: slots with chargers; a pack must be undocked before the arm may lift it.

Charging itself is physics of the world (:meth:`simulator.world.World.charge`), advanced by the
simulator's charge tick; this driver reports it (``charging_kw`` per slot) and connects or
disconnects packs from their chargers.
"""

from __future__ import annotations

from typing import Any

from controller.contract import Message, RackSlotState, RackState
from simulator.drivers.action import Action, Prepare, Refusal
from simulator.drivers.base import Driver
from simulator.world import slot_location


class RackDriver(Driver):
    device = "rack"

    def state(self) -> Message:
        w = self.world
        slots = [
            RackSlotState(
                slot=s.number,
                pack=w.slot_pack(s.number),
                docked=s.docked,
                charger_kw=s.charger_kw,
                charging_kw=s.charging_kw,
                out_of_service=s.out_of_service,
            )
            for s in sorted(w.slots.values(), key=lambda s: s.number)
        ]
        return RackState(ts=self.clock.now(), slots=slots, busy=self.busy, fault=self.fault)

    def plan_dock(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args, required=("slot",))
        return self._connect(self.slot_arg(args), docked=True)

    def plan_undock(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args, required=("slot",))
        return self._connect(self.slot_arg(args), docked=False)

    def _connect(self, number: int, *, docked: bool) -> Prepare:
        def prepare() -> Action:
            w = self.world
            if w.slot_pack(number) is None:
                raise Refusal("impossible", f"slot {number} is empty")
            if w.arm_working_at == slot_location(number):
                raise Refusal("impossible", f"the arm is working at slot {number}")
            slot = w.slots[number]

            def finish() -> dict[str, Any] | None:
                slot.docked = docked
                if not docked:
                    slot.charging_kw = 0.0
                return None

            return Action(finish=finish)

        return prepare
