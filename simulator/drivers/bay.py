"""The bay: position sensors for the truck, the clamps that secure it, and the pack locks.

The bay owns what its sensors see: which truck is in it (plate), whether it has stopped, how
long it queued and manoeuvred (measured on this process's clock, so the durations are right
whatever the time scale), and the queue outside. Its actions refuse what the hardware would:
no clamping a truck that is still moving, no unlocking a truck that is not clamped, and no
releasing one whose locks are open or next to which the arm stands.
"""

from __future__ import annotations

from typing import Any

from controller.contract import BayState, Message, VehicleInBay
from simulator.drivers.action import Action, Prepare, Refusal
from simulator.drivers.base import Driver
from simulator.world import Truck


class BayDriver(Driver):
    device = "bay"

    def state(self) -> Message:
        w = self.world
        truck = w.bay
        vehicle = None
        if truck is not None:
            vehicle = VehicleInBay(
                plate=truck.plate,
                stopped=truck.phase == "stopped",
                queued_s=_round(truck.queued_s),
                manoeuvre_s=_round(truck.manoeuvre_s),
                position_error_mm=truck.position_error_mm,
            )
        return BayState(
            ts=self.clock.now(),
            vehicle=vehicle,
            secured=truck.secured if truck is not None else False,
            pack_locked=truck.locks_locked if truck is not None else None,
            queue_length=len(w.queue),
            busy=self.busy,
            fault=self.fault,
        )

    def _stopped_truck(self) -> Truck:
        truck = self.world.truck_stopped()
        if truck is None:
            raise Refusal("impossible", "no truck stopped in the bay")
        return truck

    def _secured_truck(self) -> Truck:
        truck = self._stopped_truck()
        if not truck.secured:
            raise Refusal("impossible", f"truck {truck.vehicle_id} is not secured")
        return truck

    def plan_secure(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            truck = self._stopped_truck()

            def finish() -> dict[str, Any] | None:
                truck.secured = True
                return None

            return Action(finish=finish)

        return prepare

    def plan_unlock(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)
        return lambda: self._set_locks(self._secured_truck(), locked=False)

    def plan_lock(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)
        return lambda: self._set_locks(self._secured_truck(), locked=True)

    def _set_locks(self, truck: Truck, *, locked: bool) -> Action:
        def finish() -> dict[str, Any] | None:
            truck.locks_locked = locked
            return None

        return Action(finish=finish)

    def plan_release(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            truck = self._stopped_truck()
            if not truck.locks_locked:
                raise Refusal("impossible", "the pack locks are open")
            if self.world.arm_on_vehicle_side():
                raise Refusal("impossible", "the arm is at the vehicle")

            def finish() -> dict[str, Any] | None:
                truck.secured = False
                truck.released = True
                truck.phase = "departing"
                return None

            return Action(finish=finish)

        return prepare


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
