"""Hardware-driver payloads: commands, results and the retained state of each device.

A driver receives a :class:`DriverCommand` on ``drivers/<device>/cmd``, answers ``accepted`` at
once (or ``failed`` if it refuses), then ``done`` or ``failed`` when the action ends, each a
:class:`DriverResult` on ``drivers/<device>/result`` echoing the command id. A command id seen
twice is executed once: the driver repeats its last answer for that id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from controller.contract.common import Id, Message, PackInfo, Part

#: Actions each driver understands, with the arguments they take.
DRIVER_ACTIONS: dict[str, dict[str, str]] = {
    "arm": {
        "move": "target: 'home' | 'vehicle' | 'slot'; slot: int when target is 'slot'",
        "lift": "pick up the pack at the arm's position (vehicle or slot)",
        "lower": "put the held pack down at the arm's position (vehicle or slot)",
        "stop": "halt any motion and hold position (make safe)",
    },
    "bay": {
        "secure": "clamp the vehicle in position (fails if it is out of tolerance)",
        "unlock": "open the pack locks on the vehicle",
        "lock": "close the pack locks on the vehicle",
        "release": "unclamp the vehicle so it may drive out",
        "stop": "halt any motion (make safe)",
    },
    "door": {
        "open": "open the door between bay and rack",
        "close": "close it",
        "stop": "halt the door (make safe)",
    },
    "rack": {
        "dock": "slot: int; connect the pack in the slot to its charger",
        "undock": "slot: int; disconnect the pack so the arm may lift it",
        "stop": "stop charging moves (make safe)",
    },
    "vehicle": {
        "identify": "read vehicle id and pack from the vehicle link; data: vehicle_id, pack",
        "hv_off": "ask the vehicle to open its high-voltage contactors",
        "hv_on": "ask the vehicle to close them again",
        "verify": "BMS check of the new pack; data: pack",
        "stop": "no-op acknowledgement (make safe)",
    },
    "safety": {
        "stop": "no-op acknowledgement; the relay itself owns the e-stop",
    },
}

#: Actions that move something. The controller checks interlocks before each of these.
MOTION_ACTIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("arm", "move"),
        ("arm", "lift"),
        ("arm", "lower"),
        ("bay", "secure"),
        ("bay", "unlock"),
        ("bay", "lock"),
        ("bay", "release"),
        ("door", "open"),
        ("door", "close"),
        ("rack", "dock"),
        ("rack", "undock"),
    }
)


#: Error codes a driver puts in a ``failed`` result, and what each means. A driver may use
#: others; the controller treats every failure the same way and shows the code to operators.
DRIVER_ERROR_CODES: dict[str, str] = {
    "bad_request": "the command payload could not be read",
    "unknown_action": "the driver has no such action",
    "bad_args": "the arguments are missing or wrong",
    "busy": "another action is under way",
    "impossible": "physically impossible now (e.g. lift while holding a pack)",
    "estop": "the e-stop is pressed",
    "light_curtain": "the light curtain is broken",
    "stopped": "the action was halted by a stop command",
    "pack_dropped": "the arm lost the pack",
    "verify_failed": "the vehicle's BMS did not confirm the pack",
    "injected_fault": "simulator only: a fault injected on purpose",
}


class DriverCommand(Message):
    """``drivers/<device>/cmd``: a command from the controller to a driver."""

    id: Id
    action: str = Field(min_length=1, max_length=32)
    args: dict[str, Any] = Field(default_factory=dict)


class DriverResult(Message):
    """``drivers/<device>/result``: ``accepted``, then ``done`` or ``failed``, echoing the id."""

    id: Id
    device: str
    action: str
    status: Literal["accepted", "done", "failed"]
    error_code: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, max_length=1000)
    data: dict[str, Any] = Field(default_factory=dict)


class IdentifyData(Part):
    """``data`` of a ``done`` result of ``vehicle.identify``."""

    vehicle_id: str = Field(min_length=1, max_length=64)
    pack: PackInfo | None


class VerifyData(Part):
    """``data`` of a ``done`` result of ``vehicle.verify``: the pack the BMS now reports."""

    pack: PackInfo


# ---- retained device states ---------------------------------------------------------------


class ArmState(Message):
    device: Literal["arm"] = "arm"
    position: str = Field(
        description="'home', 'vehicle', 'slot:<n>', 'moving', or 'rail:<m>' (halted between)"
    )
    target: str | None = None
    holding: PackInfo | None = None
    busy: bool = False
    fault: str | None = None


class VehicleInBay(Part):
    """The truck the bay's sensors see (identity comes from the vehicle link)."""

    plate: str | None = None
    stopped: bool = False
    queued_s: float | None = None
    manoeuvre_s: float | None = None
    position_error_mm: float | None = None


class BayState(Message):
    device: Literal["bay"] = "bay"
    vehicle: VehicleInBay | None = None
    secured: bool = False
    pack_locked: bool | None = Field(default=None, description="None when no vehicle is in the bay")
    queue_length: int = Field(default=0, ge=0)
    busy: bool = False
    fault: str | None = None


class DoorState(Message):
    device: Literal["door"] = "door"
    position: Literal["open", "closed", "moving", "stopped"] = Field(
        description="'stopped': halted part-way"
    )
    busy: bool = False
    fault: str | None = None


class RackSlotState(Part):
    slot: int = Field(ge=1)
    pack: PackInfo | None = None
    docked: bool = False
    charger_kw: float = Field(ge=0)
    charging_kw: float = Field(default=0.0, ge=0)
    out_of_service: bool = False


class RackState(Message):
    device: Literal["rack"] = "rack"
    slots: list[RackSlotState]
    busy: bool = False
    fault: str | None = None


class VehicleState(Message):
    device: Literal["vehicle"] = "vehicle"
    connected: bool = Field(description="Vehicle link up with a truck in the bay")
    vehicle_id: str | None = None
    hv_on: bool | None = None
    pack: PackInfo | None = Field(default=None, description="Pack the BMS reports on the vehicle")
    busy: bool = False
    fault: str | None = None


class SafetyState(Message):
    device: Literal["safety"] = "safety"
    estop_pressed: bool
    light_curtain_broken: bool = False

    @property
    def ok(self) -> bool:
        return not (self.estop_pressed or self.light_curtain_broken)


DeviceState = Annotated[
    ArmState | BayState | DoorState | RackState | VehicleState | SafetyState,
    Field(discriminator="device"),
]
DeviceStateAdapter: TypeAdapter[DeviceState] = TypeAdapter(DeviceState)


# ---- simulator-only -----------------------------------------------------------------------


class SimControl(Message):
    """``sim/control``: drive the simulated world (not part of a real station's contract).

    ``op`` is one of: ``estop`` (args: pressed: bool), ``light_curtain`` (args: broken: bool),
    ``arrive`` (args: count: int), ``inject`` (args: spec: "device.action:kind").
    """

    id: Id | None = None
    op: str = Field(min_length=1, max_length=32)
    args: dict[str, Any] = Field(default_factory=dict)


class WorldPack(Part):
    pack: PackInfo
    location: str = Field(
        description="'slot:<n>', 'gripper', 'vehicle:<vehicle_id>', or 'floor' (dropped)"
    )


class SimWorld(Message):
    """``sim/world`` (retained): where every simulated pack physically is (tests' ground truth)."""

    packs: list[WorldPack]
    departed: list[WorldPack] = Field(default_factory=list, description="Left on trucks")
