"""Operator-facing payloads: commands and replies, status, events, inventory."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from controller.contract.bay import BaySituation, RecoveryProposal
from controller.contract.common import AlarmInfo, Id, Message, PackInfo, Part
from controller.contract.drivers import RackSlotState
from controller.contract.phases import Phase


class Mode(StrEnum):
    """Station modes, after PackML (ISA-TR88)."""

    idle = "idle"
    execute = "execute"
    held = "held"
    suspended = "suspended"
    aborting = "aborting"
    aborted = "aborted"
    stopped = "stopped"
    estopped = "estopped"
    maintenance = "maintenance"


class OperatorCommand(Message):
    """``swap/<station>/cmd``: a command from an operator. ``v`` and ``ts`` may be omitted.

    Any ``cmd`` and any ``args`` object can be read, so that every readable command is
    recorded and answered alike; the station refuses an unknown ``cmd`` or ``args`` that do
    not fit the command (the command table in :mod:`controller.contract.commands`)."""

    id: Id = Field(description="Unique per command; the reply echoes it")
    cmd: str = Field(min_length=1, max_length=64, description="An operator command's name")
    args: dict[str, Any] = Field(
        default_factory=dict, description="The command's arguments (none for most)"
    )


class Reply(Message):
    """``swap/<station>/reply``: exactly one per operator command."""

    id: str = Field(max_length=256, description="The command id, echoed ('' if unreadable)")
    ok: bool
    error: str | None = None
    cmd: str | None = None
    mode: Mode | None = Field(default=None, description="Station mode after the command")
    result: dict[str, Any] | None = Field(
        default=None,
        description="What a command that says more than ok found or did (reconcile: a "
        "ReconcileReport; alarm_history: an AlarmHistory); not repeated for a repeated id",
    )


class Status(Message):
    """``swap/<station>/status`` (retained)."""

    station: str
    mode: Mode
    phase: Phase | None = None
    swap_id: str | None = None
    vehicle_id: str | None = None
    elapsed_s: float | None = Field(default=None, description="Swap time so far, station seconds")
    budget_s: float
    phase_elapsed_s: float | None = None
    phase_deadline_s: float | None = None
    queue_length: int = Field(ge=0)
    active_alarms: int = Field(ge=0)
    swaps_completed: int = Field(default=0, ge=0)
    time_scale: float = Field(default=1.0, gt=0)
    reason: str | None = Field(default=None, description="Why the station is in this mode")
    bay: BaySituation | None = Field(
        default=None, description="The bay, arm, door and rack as the sensors report them"
    )
    recovery: RecoveryProposal | None = Field(
        default=None, description="Plans out of a bay that is not normal (no swap running)"
    )


#: A slot as the inventory shows it: the rack driver's slot model (one model for one thing),
#: with the pack the controller's ledger places there.
SlotInfo = RackSlotState


class Inventory(Message):
    """``swap/<station>/inventory`` (retained): every slot and pack the station knows of."""

    station: str
    slots: list[SlotInfo]
    gripper: PackInfo | None = None
    vehicle: PackInfo | None = Field(default=None, description="Pack on the vehicle in the bay")
    vehicle_id: str | None = None
    swappable_soc: float = Field(ge=0, le=1)
    consistent: bool = Field(description="Every pack is in exactly one place")
    problems: list[str] = Field(default_factory=list)


# ---- events ------------------------------------------------------------------------------


class PhaseChanged(Message):
    kind: Literal["phase_changed"] = "phase_changed"
    station: str
    swap_id: str | None
    phase: Phase | None
    previous: Phase | None
    elapsed_s: float | None = None
    previous_phase_s: float | None = Field(
        default=None, description="Seconds the previous phase took"
    )


class ModeChanged(Message):
    kind: Literal["mode_changed"] = "mode_changed"
    station: str
    mode: Mode
    previous: Mode
    reason: str | None = None


class AlarmRaised(Message):
    kind: Literal["alarm"] = "alarm"
    station: str
    alarm: AlarmInfo


class VehicleArrived(Message):
    kind: Literal["vehicle_arrived"] = "vehicle_arrived"
    station: str
    swap_id: str | None = Field(default=None, description="The swap this truck starts")
    plate: str | None = Field(default=None, description="Licence plate, as the bay reads it")
    vehicle_id: str | None = Field(
        default=None,
        description="The vehicle link's id; unknown (null) until the identify phase reads it",
    )
    queued_s: float | None = Field(
        default=None, description="Time queueing before entering the bay"
    )
    manoeuvre_s: float | None = Field(default=None, description="Entering to stopped in the bay")


SwapResult = Literal["completed", "aborted", "estopped"]


class SwapRecord(Part):
    swap_id: str
    vehicle_id: str | None
    result: SwapResult
    duration_s: float
    budget_s: float
    in_budget: bool
    phases: dict[str, float]
    pack_out: PackInfo | None
    pack_in: PackInfo | None
    queued_s: float | None = None
    manoeuvre_s: float | None = None
    held_s: float = 0.0
    reason: str | None = None
    started_at: AwareDatetime
    ended_at: AwareDatetime
    recovery: Literal["finish", "give_back"] | None = Field(
        default=None,
        description="Cut short, then recovered: 'finish' (the truck left with pack_in, a charged"
        " pack) or 'give_back' (with its own pack)",
    )


class SwapFinished(Message):
    kind: Literal["swap_finished"] = "swap_finished"
    station: str
    record: SwapRecord


class ErrorEvent(Message):
    """Bad input on a subscribed topic: what was wrong, and that nothing changed."""

    kind: Literal["error"] = "error"
    station: str
    source: str = Field(description="Who noticed: controller, a driver id, or simulator")
    topic: str
    error: str
    payload_excerpt: str = Field(default="", max_length=200)


class CommandHandled(Message):
    """The audit trail: an operator command, who sent it, and what became of it."""

    kind: Literal["command"] = "command"
    station: str
    id: str
    cmd: str
    args: dict[str, Any] = Field(default_factory=dict)
    sender: str | None = Field(default=None, description="Broker user, from cmd/<user>")
    ok: bool
    error: str | None = None


Event = Annotated[
    PhaseChanged
    | ModeChanged
    | AlarmRaised
    | VehicleArrived
    | SwapFinished
    | ErrorEvent
    | CommandHandled,
    Field(discriminator="kind"),
]
EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)


class Alarms(Message):
    """``swap/<station>/alarms`` (retained): the alarm list, oldest first: active alarms and
    those that returned to normal unacknowledged (``active`` false); shelved ones apart."""

    station: str
    alarms: list[AlarmInfo]
    shelved: list[AlarmInfo] = Field(
        default_factory=list, description="Shelved alarms (not annunciated until unshelved)"
    )


class History(Message):
    """``swap/<station>/history`` (retained): the most recent swaps, oldest first."""

    station: str
    swaps: list[SwapRecord]
