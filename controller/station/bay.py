"""The bay's situation, read from the drivers' last reported states.

A cut-short swap leaves the hardware somewhere between two phases: a truck clamped with its pack
unlocked, a pack in the gripper, the door open. This module says, from the sensors alone, where
everything is and what is not in its normal place, in words an operator can act on. It never
asks the journal: the journal says where packs *should* be, the sensors where things *are*, and
a plan to get a truck out must start from where things are.
"""

from __future__ import annotations

from controller.contract import ArmState, BayState, DoorState, RackState, VehicleState
from controller.contract.bay import BaySituation
from controller.devices import Devices


def read_bay(
    *,
    arm: ArmState | None,
    bay: BayState | None,
    door: DoorState | None,
    rack: RackState | None,
    vehicle: VehicleState | None,
) -> BaySituation:
    """The situation the states describe (``None``: the device's state is not known)."""
    states = {"arm": arm, "bay": bay, "door": door, "rack": rack, "vehicle": vehicle}
    unknown = [name for name, state in states.items() if state is None]
    truck = _truck(bay, vehicle)
    undocked = _undocked(rack)
    not_normal = [
        f"{name} state unknown (never reported, or its driver is offline)" for name in unknown
    ]
    not_normal += _truck_problems(bay, vehicle)
    not_normal += _station_problems(arm, door, undocked)
    return BaySituation(
        **truck,
        door=door.position if door else None,
        arm_position=arm.position if arm else None,
        gripper=arm.holding.id if arm and arm.holding else None,
        undocked_slots=undocked,
        unknown=unknown,
        not_normal=not_normal,
        normal=not not_normal,
    )


def _truck(bay: BayState | None, vehicle: VehicleState | None) -> dict[str, object]:
    link = vehicle if vehicle is not None and vehicle.connected else None
    return {
        "truck_in_bay": bay is not None and bay.vehicle is not None,
        "vehicle_id": link.vehicle_id if link else None,
        "secured": bay.secured if bay else None,
        "pack_on_truck": link.pack.id if link and link.pack else None,
        "pack_locked": bay.pack_locked if bay else None,
        "hv_on": link.hv_on if link else None,
    }


def _truck_problems(bay: BayState | None, vehicle: VehicleState | None) -> list[str]:
    """A truck may wait in the bay (arrived, not yet clamped); it may not be left clamped, or
    without a locked pack and HV on."""
    if bay is None or bay.vehicle is None:
        return []
    name = f"truck {vehicle.vehicle_id}" if vehicle and vehicle.vehicle_id else "the truck"
    link = vehicle if vehicle is not None and vehicle.connected else None
    checks = (
        (bay.secured, f"{name} is clamped in the bay"),
        (link is not None and link.pack is None, f"{name} has no pack"),
        (link is not None and link.hv_on is False, f"{name}'s HV is off"),
        (bay.pack_locked is False, f"{name}'s pack locks are open"),
        (bool(bay.fault), f"the bay reports a fault: {bay.fault}"),
    )
    return [text for failed, text in checks if failed]


def _station_problems(
    arm: ArmState | None, door: DoorState | None, undocked: list[int]
) -> list[str]:
    found = []
    if door is not None and door.position != "closed":
        found.append(f"the door is {door.position}")
    if arm is not None:
        if arm.holding is not None:
            found.append(f"the gripper holds pack {arm.holding.id}")
        if arm.position != "home":
            found.append(f"the arm is at {arm.position}, not home")
        if arm.fault:
            found.append(f"the arm reports a fault: {arm.fault}")
    found += [f"slot {n} holds a pack that is not docked (not charging)" for n in undocked]
    return found


def _undocked(rack: RackState | None) -> list[int]:
    if rack is None:
        return []
    return sorted(s.slot for s in rack.slots if s.pack is not None and not s.docked)


class BayWatch:
    """The bay's situation, re-read whenever a driver reports, so the status can carry it and
    be republished only when it changed (a rack that reports every charge tick changes the
    situation only when a slot docks or a pack moves)."""

    def __init__(self, devices: Devices) -> None:
        self._devices = devices
        self.situation = self._read()

    def update(self) -> bool:
        """Read the situation again; True if it changed."""
        now = self._read()
        changed = now != self.situation
        self.situation = now
        return changed

    def _read(self) -> BaySituation:
        """From the drivers online now: an offline driver's last state is not known to hold."""
        d = self._devices

        def live(name: str) -> bool:
            return d[name].online is True

        return read_bay(
            arm=d.arm if live("arm") else None,
            bay=d.bay if live("bay") else None,
            door=d.door if live("door") else None,
            rack=d.rack if live("rack") else None,
            vehicle=d.vehicle if live("vehicle") else None,
        )
