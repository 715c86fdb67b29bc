"""What each action's ``done`` must be visible as in the drivers' own states.

A driver's ``done`` is believed only when its sensors agree: a door reported open must read
open, an arm reported at slot 7 must read ``slot:7``. This catches a driver that lies (or a
sensor that fails) at the step where it happens, instead of three steps later. Pack moves
(arm lift and lower) are checked against the pack sensors by the sequencer itself.
"""

from __future__ import annotations

from typing import Any

from controller.devices import Devices


def unmet(devices: Devices, device: str, action: str, args: dict[str, Any]) -> str | None:
    """Why the states do not (yet) show ``device.action`` done; ``None`` when they do."""
    key = f"{device}.{action}"
    if device == "door":
        door = devices.door
        want = {"open": "open", "close": "closed"}.get(action)
        if want and (door is None or door.position != want):
            return f"door reads {door.position if door else 'nothing'}, not {want}"
    elif device == "bay":
        bay = devices.bay
        if bay is None:
            return "bay state unknown"
        checks = {
            "bay.secure": (bay.secured, "vehicle not secured"),
            "bay.release": (not bay.secured, "vehicle still secured"),
            "bay.unlock": (bay.pack_locked is False, "pack locks not open"),
            "bay.lock": (bay.pack_locked is True, "pack locks not closed"),
        }
        if key in checks and not checks[key][0]:
            return checks[key][1]
    elif device == "vehicle":
        vehicle = devices.vehicle
        want_hv = {"hv_off": False, "hv_on": True}.get(action)
        if want_hv is not None and (vehicle is None or vehicle.hv_on is not want_hv):
            return f"vehicle HV reads {vehicle.hv_on if vehicle else 'nothing'}"
    elif device == "arm" and action == "move":
        arm = devices.arm
        target = args.get("target")
        want = f"slot:{args.get('slot')}" if target == "slot" else str(target)
        if arm is None or arm.position != want:
            return f"arm reads {arm.position if arm else 'nothing'}, not {want}"
    elif device == "rack" and action in ("dock", "undock"):
        rack = devices.rack
        slot = next((s for s in rack.slots if s.slot == args.get("slot")), None) if rack else None
        if slot is None or slot.docked is not (action == "dock"):
            return f"slot {args.get('slot')} not {action}ed"
    return None
