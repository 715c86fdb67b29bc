"""What each action's ``done`` must be visible as in the drivers' own states.

A driver's ``done`` is believed only when its sensors agree: a door reported open must read
open, an arm reported at slot 7 must read ``slot:7``. This catches a driver that lies (or a
sensor that fails) at the step where it happens, instead of three steps later. Pack moves
(arm lift and lower) are checked against the pack sensors by the sequencer itself.

A table per (device, action), like the interlocks: each expectation names the device whose
state must show it, a small predicate, and the text the ``sensor_mismatch`` failure carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.devices import Devices
from controller.station.interlocks import Check, Readings, Step


@dataclass(frozen=True)
class Expectation:
    """``device.action`` done shows as ``shows`` in ``reads``'s state; ``failure`` says what it
    shows instead (it may name ``{state.<field>}``, ``{slot}`` and ``{target}``)."""

    reads: str
    shows: Check
    failure: str

    def unmet(self, r: Readings, s: Step) -> str | None:
        state = getattr(r, self.reads)
        if state is None:
            return f"{self.reads} state unknown"
        if self.shows(r, s):
            return None
        return self.failure.format(state=state, slot=s.args.get("slot"), target=_arm_target(s))


def _arm_target(s: Step) -> str:
    """Where ``arm.move(args)`` ends, as the arm reports its position."""
    target = s.args.get("target")
    return f"slot:{s.args.get('slot')}" if target == "slot" else str(target)


def _door_open(r: Readings, s: Step) -> bool:
    return r.door is not None and r.door.position == "open"


def _door_closed(r: Readings, s: Step) -> bool:
    return r.door is not None and r.door.position == "closed"


def _secured(r: Readings, s: Step) -> bool:
    return r.bay is not None and r.bay.secured


def _not_secured(r: Readings, s: Step) -> bool:
    return r.bay is not None and not r.bay.secured


def _locks_open(r: Readings, s: Step) -> bool:
    return r.bay is not None and r.bay.pack_locked is False


def _locks_closed(r: Readings, s: Step) -> bool:
    return r.bay is not None and r.bay.pack_locked is True


def _hv_off(r: Readings, s: Step) -> bool:
    return r.vehicle is not None and r.vehicle.hv_on is False


def _hv_on(r: Readings, s: Step) -> bool:
    return r.vehicle is not None and r.vehicle.hv_on is True


def _arm_at_target(r: Readings, s: Step) -> bool:
    return r.arm is not None and r.arm.position == _arm_target(s)


def _slot_docked(r: Readings, s: Step) -> bool | None:
    """Whether the slot in ``args`` reads docked; ``None`` when the rack has no such slot."""
    slots = r.rack.slots if r.rack else []
    return next((x.docked for x in slots if x.slot == s.args.get("slot")), None)


def _docked(r: Readings, s: Step) -> bool:
    return _slot_docked(r, s) is True


def _undocked(r: Readings, s: Step) -> bool:
    return _slot_docked(r, s) is False


#: What each confirmed action must look like; actions not listed are believed as reported.
POSTCONDITIONS: dict[tuple[str, str], Expectation] = {
    ("door", "open"): Expectation("door", _door_open, "door reads {state.position}, not open"),
    ("door", "close"): Expectation("door", _door_closed, "door reads {state.position}, not closed"),
    ("bay", "secure"): Expectation("bay", _secured, "vehicle not secured"),
    ("bay", "release"): Expectation("bay", _not_secured, "vehicle still secured"),
    ("bay", "unlock"): Expectation("bay", _locks_open, "pack locks not open"),
    ("bay", "lock"): Expectation("bay", _locks_closed, "pack locks not closed"),
    ("vehicle", "hv_off"): Expectation("vehicle", _hv_off, "vehicle HV reads {state.hv_on}"),
    ("vehicle", "hv_on"): Expectation("vehicle", _hv_on, "vehicle HV reads {state.hv_on}"),
    ("arm", "move"): Expectation("arm", _arm_at_target, "arm reads {state.position}, not {target}"),
    ("rack", "dock"): Expectation("rack", _docked, "slot {slot} not docked"),
    ("rack", "undock"): Expectation("rack", _undocked, "slot {slot} not undocked"),
}


def unmet_in(readings: Readings, step: Step) -> str | None:
    """Why ``readings`` do not (yet) show ``step`` done; ``None`` when they do."""
    expectation = POSTCONDITIONS.get((step.device, step.action))
    return expectation.unmet(readings, step) if expectation else None


def unmet(devices: Devices, device: str, action: str, args: dict[str, Any]) -> str | None:
    """Why the drivers' states do not (yet) show ``device.action`` done; ``None`` when they do."""
    return unmet_in(Readings.of(devices), Step(device, action, args))
