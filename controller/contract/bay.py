"""The bay's situation as the sensors report it, and the recovery plans proposed from it.

Both are part of the operator contract (the status carries the situation; ``swapctl recover``
and the console show the plans), so they are pure data here; the station computes them
(:mod:`controller.station.bay`, :mod:`controller.station.recovery_plan`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from controller.contract.common import Part


class BaySituation(Part):
    """What the drivers' sensors say about the bay, the arm, the door and the rack, and what
    of it is not where it belongs when no swap is running.

    ``normal`` is what every production command waits for: no truck clamped, the truck's pack
    (if any) on it and locked with HV on, the door closed, the arm home with an empty gripper,
    every pack in the rack docked, and every device's state known.
    """

    truck_in_bay: bool = Field(description="The bay's sensors see a vehicle")
    vehicle_id: str | None = Field(default=None, description="From the vehicle link")
    secured: bool | None = Field(default=None, description="The bay clamps the truck")
    pack_on_truck: str | None = Field(default=None, description="Pack id the truck's BMS reports")
    pack_locked: bool | None = Field(default=None, description="None when no truck is in the bay")
    hv_on: bool | None = None
    door: str | None = Field(default=None, description="'open', 'closed', 'moving', 'stopped'")
    arm_position: str | None = None
    gripper: str | None = Field(default=None, description="Pack id in the gripper")
    undocked_slots: list[int] = Field(
        default_factory=list, description="Slots holding a pack that is not docked (not charging)"
    )
    unknown: list[str] = Field(
        default_factory=list,
        description="Devices whose state is not known (never reported, offline)",
    )
    not_normal: list[str] = Field(
        default_factory=list, description="What is not in its normal place, in plain words"
    )

    normal: bool = Field(description="Nothing in not_normal: every production command may go")

    @model_validator(mode="after")
    def _normal_means_nothing_out_of_place(self) -> BaySituation:
        if self.normal != (not self.not_normal):
            raise ValueError("normal must be true exactly when not_normal is empty")
        return self


class RecoveryStep(Part):
    """One driver action of a recovery plan, and why it is needed."""

    device: str
    action: str
    args: dict[str, Any] = Field(default_factory=dict)
    why: str


class RecoveryPlan(Part):
    """A way out of a cut-short swap, computed from the sensors.

    ``finish`` gives the truck a charged pack; ``give_back`` returns the truck's own pack. Both
    end with the pack locked, HV on, the arm home, the door closed and the truck released: a
    truck never leaves with an unlocked pack or HV off.
    """

    name: Literal["finish", "give_back"]
    summary: str
    steps: list[RecoveryStep]
    pack_for_truck: str | None = Field(default=None, description="The pack the truck leaves with")


class RecoveryProposal(Part):
    """The ways out of a bay that is not normal (in the status while no swap runs)."""

    swap_id: str | None = Field(default=None, description="The swap that was cut short")
    own_pack: str | None = Field(default=None, description="The pack the truck arrived with")
    plans: list[RecoveryPlan] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="Plan name -> why there is no such plan now"
    )
