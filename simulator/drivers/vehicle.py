"""The vehicle link: talks to the truck in the bay once it has stopped (identity, HV, BMS).

``identify`` and ``verify`` are queries: they change nothing and answer with data
(:class:`~controller.contract.IdentifyData`, :class:`~controller.contract.VerifyData`). ``hv_on`` is
refused while the pack locks are open or there is no pack (closing contactors onto nothing),
and ``verify`` fails (``verify_failed``) when the BMS sees no pack or the locks open.
"""

from __future__ import annotations

from typing import Any

from controller.contract import IdentifyData, Message, VehicleState, VerifyData
from simulator.drivers.action import Action, Prepare, Refusal
from simulator.drivers.base import Driver
from simulator.world import Truck


class VehicleDriver(Driver):
    device = "vehicle"

    def state(self) -> Message:
        w = self.world
        truck = w.truck_stopped()
        return VehicleState(
            ts=self.clock.now(),
            connected=truck is not None,
            vehicle_id=truck.vehicle_id if truck is not None else None,
            hv_on=truck.hv_on if truck is not None else None,
            pack=w.vehicle_pack if truck is not None else None,
            busy=self.busy,
            fault=self.fault,
        )

    def _truck(self) -> Truck:
        truck = self.world.truck_stopped()
        if truck is None:
            raise Refusal("impossible", "no truck stopped in the bay (vehicle link down)")
        return truck

    def plan_identify(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            truck = self._truck()

            def read() -> dict[str, Any] | None:
                data = IdentifyData(vehicle_id=truck.vehicle_id, pack=self.world.vehicle_pack)
                return data.model_dump(mode="json")

            return Action(finish=read, lie=read)

        return prepare

    def plan_hv_off(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)
        return lambda: self._set_hv(self._truck(), on=False)

    def plan_hv_on(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            truck = self._truck()
            if not truck.locks_locked:
                raise Refusal("impossible", "the pack locks are open")
            if self.world.vehicle_pack is None:
                raise Refusal("impossible", "the truck has no pack")
            return self._set_hv(truck, on=True)

        return prepare

    def _set_hv(self, truck: Truck, *, on: bool) -> Action:
        def finish() -> dict[str, Any] | None:
            truck.hv_on = on
            return None

        return Action(finish=finish)

    def plan_verify(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            truck = self._truck()

            def check() -> dict[str, Any] | None:
                pack = self.world.vehicle_pack
                if pack is None:
                    raise Refusal("verify_failed", f"truck {truck.vehicle_id} reports no pack")
                if not truck.locks_locked:
                    raise Refusal("verify_failed", "the pack locks are open")
                return VerifyData(pack=pack).model_dump(mode="json")

            def lie() -> dict[str, Any] | None:
                # whatever the BMS says, even no pack (then the data does not parse as
                # VerifyData: a lying driver is not a well-formed one)
                pack = self.world.vehicle_pack
                return {"pack": None if pack is None else pack.model_dump(mode="json")}

            return Action(finish=check, lie=lie)

        return prepare
