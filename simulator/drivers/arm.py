"""The robot arm: a carriage on a rail with a gripper for one 3 t pack.

Physics it refuses to break: the arm holds at most one pack; it lifts only where there is a pack
it may take (a slot whose pack is undocked, or the truck with pack locks open and HV off); it
lowers only onto a free place that takes the pack's type (an empty in-service slot, or a truck
with no pack, locks open and HV off); it crosses the door plane only while the door is open, and
it does not drive towards a truck that is manoeuvring.
"""

from __future__ import annotations

from typing import Any

from controller.contract import ArmState, Message
from simulator.drivers.action import Action, Prepare, Refusal
from simulator.drivers.base import Driver
from simulator.world import FLOOR, GRIPPER, slot_location, vehicle_location

TARGETS = ("home", "vehicle", "slot")


class ArmDriver(Driver):
    device = "arm"

    def state(self) -> Message:
        w = self.world
        return ArmState(
            ts=self.clock.now(),
            position=w.arm_place(),
            target=w.arm_moving_to,
            holding=w.gripper_pack,
            busy=self.busy,
            fault=self.fault,
        )

    # ---- move -------------------------------------------------------------------------------
    def plan_move(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args, required=("target",), optional=("slot",))
        target = args["target"]
        if target not in TARGETS:
            raise Refusal("bad_args", f"target must be one of {list(TARGETS)}, got {target!r}")
        if target == "slot":
            place = slot_location(self.slot_arg(args))
        else:
            if args.get("slot") is not None:
                raise Refusal("bad_args", f"slot is only for target 'slot', not {target!r}")
            place = target

        def prepare() -> Action:
            w = self.world
            start, end = w.arm_m, w.place_m(place)
            if w.crosses_door(start, end) and w.door != "open":
                raise Refusal("impossible", f"the door is {w.door}: the arm cannot reach {place}")
            truck = w.bay
            heading_to_truck = (end - w.door_m) * (w.vehicle_m - w.door_m) > 0
            if heading_to_truck and truck is not None and truck.phase in ("entering", "departing"):
                raise Refusal("impossible", f"truck {truck.vehicle_id} is moving in the bay")
            holding = w.gripper_pack is not None

            def begin() -> None:
                w.arm_moving_to = place
                w.arm_path = (start, end)

            def halt(progress: float) -> None:
                w.arm_m = start + (end - start) * progress
                w.arm_moving_to = None
                w.arm_path = None

            def finish() -> dict[str, Any] | None:
                halt(1.0)
                w.arm_m = end  # exactly, so the arm reads as being at the place
                return None

            def drop(progress: float) -> None:
                halt(progress)
                pack = w.gripper_pack
                if pack is not None:
                    w.move_pack(pack.id, FLOOR)

            return Action(
                finish=finish,
                begin=begin,
                halt=halt,
                on_drop=drop if holding else None,
                distance_m=abs(end - start),
            )

        return prepare

    # ---- lift ---------------------------------------------------------------------------
    def plan_lift(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            w = self.world
            held = w.gripper_pack
            if held is not None:
                raise Refusal("impossible", f"the arm already holds pack {held.id}")
            place = w.arm_place()
            if place == "vehicle":
                truck = w.truck_stopped()
                if truck is None:
                    raise Refusal("impossible", "no truck stopped in the bay")
                source = vehicle_location(truck.vehicle_id)
                if w.pack_at(source) is None:
                    raise Refusal("impossible", f"truck {truck.vehicle_id} has no pack")
                if truck.locks_locked:
                    raise Refusal("impossible", "the pack locks are locked")
                if truck.hv_on:
                    raise Refusal("impossible", "the vehicle's HV is on")
            elif place.startswith("slot:"):
                source = place
                number = int(place.removeprefix("slot:"))
                if w.pack_at(source) is None:
                    raise Refusal("impossible", f"slot {number} is empty")
                if w.slots[number].docked:
                    raise Refusal("impossible", f"the pack in slot {number} is still docked")
            else:
                raise Refusal("impossible", f"there is nothing to lift at {place}")
            pack = w.pack_at(source)
            assert pack is not None
            return self._pick_or_place(pack.id, GRIPPER, place)

        return prepare

    # ---- lower --------------------------------------------------------------------------
    def plan_lower(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            w = self.world
            pack = w.gripper_pack
            if pack is None:
                raise Refusal("impossible", "the gripper is empty")
            place = w.arm_place()
            if place == "vehicle":
                truck = w.truck_stopped()
                if truck is None:
                    raise Refusal("impossible", "no truck stopped in the bay")
                dest = vehicle_location(truck.vehicle_id)
                other = w.pack_at(dest)
                if other is not None:
                    raise Refusal("impossible", f"truck {truck.vehicle_id} has pack {other.id}")
                if truck.locks_locked:
                    raise Refusal("impossible", "the pack locks are locked")
                if truck.hv_on:
                    raise Refusal("impossible", "the vehicle's HV is on")
                if pack.type != truck.pack_type:
                    raise Refusal("impossible", f"truck takes {truck.pack_type}, not {pack.type}")
            elif place.startswith("slot:"):
                dest = place
                slot = w.slots[int(place.removeprefix("slot:"))]
                other = w.pack_at(dest)
                if other is not None:
                    raise Refusal("impossible", f"slot {slot.number} holds pack {other.id}")
                if slot.out_of_service:
                    raise Refusal("impossible", f"slot {slot.number} is out of service")
                if pack.type not in slot.pack_types:
                    raise Refusal("impossible", f"slot {slot.number} cannot hold {pack.type}")
            else:
                raise Refusal("impossible", f"there is nowhere to lower a pack at {place}")
            return self._pick_or_place(pack.id, dest, place)

        return prepare

    def _pick_or_place(self, pack_id: str, dest: str, place: str) -> Action:
        """Lift (``dest`` = gripper) or lower ``pack_id`` at ``place``."""
        w = self.world

        def begin() -> None:
            w.arm_working_at = place

        def halt(_progress: float) -> None:
            w.arm_working_at = None

        def finish() -> dict[str, Any] | None:
            w.arm_working_at = None
            w.move_pack(pack_id, dest)
            return None

        def drop(_progress: float) -> None:
            w.arm_working_at = None
            w.move_pack(pack_id, FLOOR)

        return Action(finish=finish, begin=begin, halt=halt, on_drop=drop)
