"""Interlocks: the conditions under which a command may be sent, from the drivers' own reports.

A rule table per (device, action), read by one short function: each rule is a small named
predicate over the drivers' latest retained states, with the text an operator reads when it
refuses. Pure data and pure functions: easy to test, to review against the hardware, and to show
in the docs. Unknown state (a driver never heard from, or not known to be online) counts as an
open interlock: no news is not good news.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.contract import (
    ArmState,
    BayState,
    DoorState,
    RackState,
    SafetyState,
    VehicleState,
)
from controller.devices import Devices


@dataclass(frozen=True)
class Readings:
    """What the drivers last reported (``None``: nothing yet), as the rules read it."""

    arm: ArmState | None
    bay: BayState | None
    door: DoorState | None
    vehicle: VehicleState | None
    safety: SafetyState | None
    rack: RackState | None = None
    #: Drivers not known to be online (offline, or never heard from).
    offline: tuple[str, ...] = ()

    @classmethod
    def of(cls, devices: Devices) -> Readings:
        return cls(
            arm=devices.arm,
            bay=devices.bay,
            door=devices.door,
            vehicle=devices.vehicle,
            safety=devices.safety,
            rack=devices.rack,
            offline=tuple(devices.offline()),
        )


@dataclass(frozen=True)
class Step:
    """One driver action with its arguments, as a swap or an operator asks for it."""

    device: str
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)


Check = Callable[[Readings, Step], bool]


def always(r: Readings, s: Step) -> bool:
    return True


@dataclass(frozen=True)
class Interlock:
    """One rule: while ``applies``, the command may go only if ``holds``; else ``refusal``
    (which may name ``{device}`` and ``{others_offline}``) is one reason it may not."""

    refusal: str
    holds: Check
    applies: Check = always

    def reason(self, r: Readings, s: Step) -> str | None:
        """Why this rule forbids ``s`` now; ``None`` when it allows it."""
        if not self.applies(r, s) or self.holds(r, s):
            return None
        others = ", ".join(d for d in r.offline if d != s.device)
        return self.refusal.format(device=s.device, others_offline=others)


# ---- predicates: each reads one thing; unknown state never holds ------------------------------
def _safety_known(r: Readings, s: Step) -> bool:
    return r.safety is not None


def _estop_released(r: Readings, s: Step) -> bool:
    return r.safety is None or not r.safety.estop_pressed  # unknown: _safety_known refuses


def _curtain_intact(r: Readings, s: Step) -> bool:
    return r.safety is None or not r.safety.light_curtain_broken


def _driver_online(r: Readings, s: Step) -> bool:
    return s.device not in r.offline


def _others_online(r: Readings, s: Step) -> bool:
    return all(d == s.device for d in r.offline)


def _arm_known(r: Readings, s: Step) -> bool:
    return r.arm is not None


def _bay_known(r: Readings, s: Step) -> bool:
    return r.bay is not None


def _arm_at_vehicle(r: Readings, s: Step) -> bool:
    return r.arm is not None and r.arm.position == "vehicle"


def _arm_away_from_vehicle(r: Readings, s: Step) -> bool:
    return not _arm_at_vehicle(r, s)


def _moving_to_vehicle(r: Readings, s: Step) -> bool:
    return s.args.get("target") == "vehicle"


def _crossing_door(r: Readings, s: Step) -> bool:
    """The arm passes the door plane when it goes to the vehicle from elsewhere, or back."""
    return _moving_to_vehicle(r, s) != _arm_at_vehicle(r, s)


def _door_open(r: Readings, s: Step) -> bool:
    return r.door is not None and r.door.position == "open"


def _vehicle_secured(r: Readings, s: Step) -> bool:
    return r.bay is not None and r.bay.secured


def _vehicle_stopped(r: Readings, s: Step) -> bool:
    return r.bay is not None and r.bay.vehicle is not None and r.bay.vehicle.stopped


def _hv_off(r: Readings, s: Step) -> bool:
    return r.vehicle is not None and r.vehicle.hv_on is False


def _hv_on(r: Readings, s: Step) -> bool:
    return r.vehicle is not None and r.vehicle.hv_on is True


def _locks_not_closed(r: Readings, s: Step) -> bool:
    return r.bay is None or not r.bay.pack_locked  # unknown bay: _vehicle_secured refuses


def _locks_not_open(r: Readings, s: Step) -> bool:
    return r.bay is None or r.bay.pack_locked is not False  # unknown bay: _bay_known refuses


def _arm_clear_of_doorway(r: Readings, s: Step) -> bool:
    arm = r.arm
    return arm is not None and arm.position not in ("vehicle", "moving") and not arm.busy


# ---- the tables --------------------------------------------------------------------------------
#: Every command, motion or not: the safety chain is ok and the driver is online.
ANY_COMMAND: tuple[Interlock, ...] = (
    Interlock("safety relay state unknown", _safety_known),
    Interlock("e-stop pressed", _estop_released),
    Interlock("light curtain broken", _curtain_intact),
    Interlock("{device} driver offline", _driver_online),
)
#: Every motion: the other drivers are online too (their states are the interlocks' inputs).
_ANY_MOTION = (Interlock("driver(s) offline: {others_offline}", _others_online),)
_SECURED = "vehicle not secured in the bay"
_HV_OFF = "vehicle high voltage not confirmed off"
_ARM_UNKNOWN = Interlock("arm state unknown", _arm_known)
#: Lifting or lowering at the vehicle: secured, HV off, and the locks not holding the pack.
_AT_VEHICLE = (
    _ARM_UNKNOWN,
    Interlock(_SECURED, _vehicle_secured, applies=_arm_at_vehicle),
    Interlock(_HV_OFF, _hv_off, applies=_arm_at_vehicle),
    Interlock("pack locks closed", _locks_not_closed, applies=_arm_at_vehicle),
)

#: The rules of each motion action, besides :data:`ANY_COMMAND`.
INTERLOCKS: dict[tuple[str, str], tuple[Interlock, ...]] = {
    ("arm", "move"): (
        *_ANY_MOTION,
        _ARM_UNKNOWN,
        Interlock("door not open: the arm would pass through it", _door_open, _crossing_door),
        Interlock(_SECURED, _vehicle_secured, applies=_moving_to_vehicle),
        Interlock(_HV_OFF, _hv_off, applies=_moving_to_vehicle),
    ),
    ("arm", "lift"): (*_ANY_MOTION, *_AT_VEHICLE),
    ("arm", "lower"): (*_ANY_MOTION, *_AT_VEHICLE),
    ("bay", "secure"): (*_ANY_MOTION, Interlock("no vehicle stopped in the bay", _vehicle_stopped)),
    ("bay", "unlock"): (
        *_ANY_MOTION,
        Interlock(_SECURED, _vehicle_secured),
        Interlock(_HV_OFF, _hv_off),
    ),
    ("bay", "lock"): (*_ANY_MOTION, Interlock(_SECURED, _vehicle_secured)),
    ("bay", "release"): (
        *_ANY_MOTION,
        _ARM_UNKNOWN,
        Interlock("bay state unknown", _bay_known),
        Interlock("arm is at the vehicle", _arm_away_from_vehicle),
        Interlock("pack locks open", _locks_not_open),
        # a truck leaves only with its pack locked and its high voltage back on
        Interlock("vehicle high voltage not confirmed on", _hv_on),
    ),
    ("door", "open"): _ANY_MOTION,
    ("door", "close"): (
        *_ANY_MOTION,
        Interlock("arm may be in the doorway", _arm_clear_of_doorway),
    ),
    ("rack", "dock"): _ANY_MOTION,
    ("rack", "undock"): _ANY_MOTION,
}


def refusals(readings: Readings, step: Step) -> list[str]:
    """The open interlocks that forbid ``step`` given ``readings``; empty when it may go."""
    rules = (*ANY_COMMAND, *INTERLOCKS.get((step.device, step.action), ()))
    return [reason for rule in rules if (reason := rule.reason(readings, step)) is not None]


def for_motion(devices: Devices, device: str, action: str, args: dict[str, Any]) -> list[str]:
    """Open interlocks that forbid ``device.action(args)`` now; empty when it may go."""
    return refusals(Readings.of(devices), Step(device, action, args))
