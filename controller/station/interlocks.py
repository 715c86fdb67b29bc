"""Interlocks: the conditions under which a command may be sent, from the drivers' own reports.

Pure functions over the latest retained states: easy to test and to reason about. An unknown
state (driver never heard from) counts as an open interlock: no news is not good news.
"""

from __future__ import annotations

from typing import Any

from controller.contract import MOTION_ACTIONS
from controller.devices import Devices


def general(devices: Devices, device: str) -> list[str]:
    """Conditions for any command: the safety relay is ok and the driver is online."""
    reasons = []
    safety = devices.safety
    if safety is None:
        reasons.append("safety relay state unknown")
    else:
        if safety.estop_pressed:
            reasons.append("e-stop pressed")
        if safety.light_curtain_broken:
            reasons.append("light curtain broken")
    if devices[device].online is not True:
        reasons.append(f"{device} driver offline")
    return reasons


def for_motion(devices: Devices, device: str, action: str, args: dict[str, Any]) -> list[str]:
    """Open interlocks that forbid ``device.action(args)``; empty when it may go."""
    reasons = general(devices, device)
    if (device, action) not in MOTION_ACTIONS:
        return reasons
    offline = [d for d in devices.offline() if d != device]
    if offline:
        reasons.append(f"driver(s) offline: {', '.join(offline)}")
    arm, bay, door, vehicle = devices.arm, devices.bay, devices.door, devices.vehicle
    door_open = door is not None and door.position == "open"
    secured = bay is not None and bay.secured
    hv_off = vehicle is not None and vehicle.hv_on is False
    arm_at_vehicle = arm is not None and arm.position == "vehicle"

    if device == "arm":
        if arm is None:
            reasons.append("arm state unknown")
        target = args.get("target")
        crosses_door = action == "move" and (target == "vehicle") != arm_at_vehicle
        if crosses_door and not door_open:
            reasons.append("door not open: the arm would pass through it")
        at_or_to_vehicle = target == "vehicle" if action == "move" else arm_at_vehicle
        if at_or_to_vehicle:
            if not secured:
                reasons.append("vehicle not secured in the bay")
            if not hv_off:
                reasons.append("vehicle high voltage not confirmed off")
        if action in ("lift", "lower") and arm_at_vehicle and bay is not None and bay.pack_locked:
            reasons.append("pack locks closed")
    elif device == "bay":
        if action == "secure" and (bay is None or bay.vehicle is None or not bay.vehicle.stopped):
            reasons.append("no vehicle stopped in the bay")
        if action in ("unlock", "lock") and not secured:
            reasons.append("vehicle not secured in the bay")
        if action == "unlock" and not hv_off:
            reasons.append("vehicle high voltage not confirmed off")
        if action == "release":
            if arm_at_vehicle:
                reasons.append("arm is at the vehicle")
            if bay is not None and bay.pack_locked is False:
                reasons.append("pack locks open")
    elif (
        device == "door"
        and action == "close"
        and (arm is None or arm.position in ("vehicle", "moving") or arm.busy)
    ):
        reasons.append("arm may be in the doorway")
    return reasons
