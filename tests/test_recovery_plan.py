"""The bay's situation and the recovery plans, from driver states a cut-short swap leaves.

These are pure functions of the drivers' states, so the tests build the states a swap cut short
in each phase leaves (as the simulator reports them) and check two things about every plan: it
gets the truck out with the right pack, and replayed step by step on a model of the hardware it
never does what the interlocks forbid (an independent re-statement of the rules, not the
controller's own interlock code, so a plan and the interlocks cannot agree on the same mistake).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from controller.config import load_config
from controller.contract import (
    ArmState,
    BayState,
    DoorState,
    PackInfo,
    RackSlotState,
    RackState,
    VehicleState,
)
from controller.contract.bay import RecoveryPlan
from controller.contract.drivers import VehicleInBay
from controller.station.bay import read_bay
from controller.station.recovery_plan import propose

pytestmark = pytest.mark.timeout(10)

RACK = load_config().rack
OWN = PackInfo(id="TP-00001", type="HT-282", soc=0.25, capacity_kwh=282)
P1 = PackInfo(id="P-1001", type="HT-282", soc=0.97, capacity_kwh=282)
P2 = PackInfo(id="P-1002", type="HT-282", soc=0.95, capacity_kwh=282)
LOW = PackInfo(id="P-1005", type="HT-282", soc=0.61, capacity_kwh=282)


@dataclass
class Hardware:
    """What the drivers would report, with the rules the plans must respect."""

    truck_pack: PackInfo | None
    gripper: PackInfo | None = None
    arm_at: str = "home"
    door: str = "closed"
    secured: bool = True
    hv_on: bool | None = False
    locked: bool | None = False
    slots: dict[int, PackInfo | None] = field(default_factory=dict)
    docked: dict[int, bool] = field(default_factory=dict)
    released: bool = False

    def states(self) -> dict[str, Any]:
        rack = RackState(
            slots=[
                RackSlotState(
                    slot=s.slot,
                    pack=self.slots.get(s.slot),
                    docked=self.docked.get(s.slot, False),
                    charger_kw=s.charger_kw,
                )
                for s in RACK.slots
            ]
        )
        return {
            "arm": ArmState(position=self.arm_at, holding=self.gripper),
            "bay": BayState(
                vehicle=VehicleInBay(plate="YU-D00001", stopped=True),
                secured=self.secured,
                pack_locked=self.locked,
            ),
            "door": DoorState(position=self.door),  # type: ignore[arg-type]
            "rack": rack,
            "vehicle": VehicleState(
                connected=True, vehicle_id="CQ-T0001", hv_on=self.hv_on, pack=self.truck_pack
            ),
        }

    def run(self, plan: RecoveryPlan) -> None:
        for n, step in enumerate(plan.steps, 1):
            problem = self.apply(step.device, step.action, step.args)
            assert problem is None, f"{plan.name} step {n} {step.device}.{step.action}: {problem}"

    def apply(self, device: str, action: str, args: dict[str, Any]) -> str | None:
        at_vehicle = self.arm_at == "vehicle"
        if device == "arm" and action == "move":
            place = f"slot:{args['slot']}" if args["target"] == "slot" else args["target"]
            if (place == "vehicle") != at_vehicle and self.door != "open":
                return "the arm would cross a closed door"
            if place == "vehicle" and not (self.secured and self.hv_on is False):
                return "to the truck while not clamped or HV not off"
            self.arm_at = place
        elif device == "arm" and action in ("lift", "lower"):
            if at_vehicle and self.locked is not False:
                return "pack locks closed"
            if at_vehicle and not (self.secured and self.hv_on is False):
                return "at the truck while not clamped or HV not off"
            if action == "lift":
                if self.gripper is not None:
                    return "gripper already full"
                if at_vehicle:
                    self.gripper, self.truck_pack = self.truck_pack, None
                else:
                    slot = int(self.arm_at.split(":")[1])
                    if self.docked.get(slot):
                        return "lifting from a docked slot"
                    self.gripper, self.slots[slot] = self.slots.get(slot), None
                if self.gripper is None:
                    return "nothing to lift there"
            else:
                if self.gripper is None:
                    return "nothing in the gripper"
                if at_vehicle:
                    if self.truck_pack is not None:
                        return "the truck already has a pack"
                    self.truck_pack, self.gripper = self.gripper, None
                else:
                    slot = int(self.arm_at.split(":")[1])
                    if self.slots.get(slot) is not None:
                        return "the slot is full"
                    self.slots[slot], self.gripper = self.gripper, None
        elif device == "bay":
            if action in ("unlock", "lock") and not self.secured:
                return "truck not clamped"
            if action == "unlock" and self.hv_on is not False:
                return "unlock with HV on"
            if action == "release":
                if at_vehicle or self.locked is not True or self.hv_on is not True:
                    return "released with the arm at it, locks open or HV off"
                if self.truck_pack is None:
                    return "released without a pack"
                self.released, self.secured = True, False
            if action == "secure":
                self.secured = True
            self.locked = {"unlock": False, "lock": True}.get(action, self.locked)
        elif device == "door":
            if action == "close" and at_vehicle:
                return "closing the door on the arm"
            self.door = "open" if action == "open" else "closed"
        elif device == "rack":
            self.docked[args["slot"]] = action == "dock"
        elif device == "vehicle":
            if action in ("hv_on", "hv_off"):
                self.hv_on = action == "hv_on"
            if action == "verify" and self.truck_pack is None:
                return "verify with no pack"
        return None


def plans_for(
    hw: Hardware, own: str | None = OWN.id
) -> tuple[dict[str, RecoveryPlan], dict[str, str]]:
    plans, why_not = propose(**hw.states(), rack_config=RACK, own_pack=own)
    return {p.name: p for p in plans}, why_not


def run_both(hw: Hardware) -> dict[str, Hardware]:
    """Each plan replayed on its own copy of the hardware; the copies after."""
    plans, why_not = plans_for(hw)
    assert set(plans) == {"finish", "give_back"}, why_not
    after = {}
    for name, plan in plans.items():
        bench = replace(hw, slots=dict(hw.slots), docked=dict(hw.docked))
        bench.run(plan)
        assert bench.released and bench.locked and bench.hv_on
        assert (bench.arm_at, bench.door, bench.gripper) == ("home", "closed", None)
        assert bench.truck_pack is not None and bench.truck_pack.id == plan.pack_for_truck
        assert plan.steps[-1].action == "release"
        # nothing lost: the same packs before and after
        before = {p.id for p in (hw.truck_pack, hw.gripper, *hw.slots.values()) if p}
        now = {p.id for p in (bench.truck_pack, bench.gripper, *bench.slots.values()) if p}
        assert before == now
        # every pack left in the rack is docked (charging)
        assert all(bench.docked.get(n) for n, p in bench.slots.items() if p)
        after[name] = bench
    assert after["finish"].truck_pack.soc >= RACK.swappable_soc  # type: ignore[union-attr]
    assert after["give_back"].truck_pack.id == OWN.id  # type: ignore[union-attr]
    return after


def hardware(
    truck_pack: PackInfo | None, rack: dict[int, PackInfo | None] | None = None, **kw: Any
) -> Hardware:
    """The bench with slots 1, 2 (charged) and 5 (not) filled and docked, changed by ``rack``."""
    slots: dict[int, PackInfo | None] = {1: P1, 2: P2, 5: LOW} | (rack or {})
    docked = {n: p is not None for n, p in slots.items()}
    return Hardware(truck_pack=truck_pack, slots=slots, docked=docked, **kw)


def test_estop_in_fetch_the_issue_s_stranded_truck() -> None:
    """The issue's case: truck clamped, no pack, HV off, locks open, door open, own pack stowed
    in slot 7, the charged pack lifted from slot 1 into the gripper."""
    hw = hardware(None, {1: None, 7: OWN}, gripper=P1, arm_at="slot:1", door="open")
    situation = read_bay(**hw.states())
    assert not situation.normal
    assert "truck CQ-T0001 is clamped in the bay" in situation.not_normal
    assert "truck CQ-T0001 has no pack" in situation.not_normal
    assert "the gripper holds pack P-1001" in situation.not_normal
    after = run_both(hw)
    assert after["finish"].truck_pack == P1  # straight from the gripper


def test_cut_in_stow_with_the_truck_s_pack_in_the_gripper() -> None:
    hw = hardware(None, None, gripper=OWN, arm_at="rail:9", door="open")
    plans, _ = plans_for(hw)
    give_back = [(s.device, s.action) for s in plans["give_back"].steps]
    assert give_back[:2] == [("arm", "move"), ("arm", "lower")]  # straight back onto the truck
    run_both(hw)


def test_a_slot_undocked_for_the_fetch_is_docked_again() -> None:
    """Cut in stow: the fetch slot was undocked in prepare; whichever plan runs, its pack must
    end up charging again."""
    hw = hardware(None, None, gripper=OWN, arm_at="rail:9", door="open")
    hw.docked[1] = False
    after = run_both(hw)
    assert after["give_back"].docked[1]


def test_cut_before_remove_with_the_pack_still_on_the_truck() -> None:
    hw = hardware(OWN, None, arm_at="vehicle", door="open")
    plans, _ = plans_for(hw)
    assert [s.action for s in plans["give_back"].steps[:3]] == ["lock", "hv_on", "verify"]
    run_both(hw)


def test_a_lying_driver_said_lifted_but_the_pack_is_still_on_the_truck() -> None:
    """arm.lift answered done without lifting: the sensors still see the pack on the truck."""
    hw = hardware(OWN, None, arm_at="vehicle", door="open", locked=False)
    run_both(hw)


def test_a_new_pack_inserted_but_not_locked_when_the_swap_was_cut() -> None:
    hw = hardware(P1, {1: None, 7: OWN}, arm_at="vehicle", door="open")
    after = run_both(hw)
    assert after["give_back"].slots[1] == P1 or P1 in after["give_back"].slots.values()


def test_truck_released_with_hv_on_and_locked_only() -> None:
    """A truck already clamped at rest with HV on and locked: plans only release it."""
    hw = hardware(OWN, None, hv_on=True, locked=True)
    plans, _ = plans_for(hw)
    assert [s.action for s in plans["give_back"].steps] == ["verify", "release"]
    run_both(hw)


def test_no_charged_pack_no_finish_plan_and_says_why() -> None:
    hw = hardware(None, {1: None, 2: None}, gripper=OWN, arm_at="vehicle", door="open")
    plans, why_not = plans_for(hw)
    assert set(plans) == {"give_back"}
    assert why_not["finish"] == "no charged HT-282 pack (at least 90%) in the rack"


def test_unknown_own_pack_no_give_back_plan() -> None:
    hw = hardware(None, None, gripper=OWN, arm_at="vehicle", door="open")
    plans, why_not = plans_for(hw, own=None)
    assert set(plans) == {"finish"}
    assert "own pack is not known" in why_not["give_back"]


def test_vehicle_link_down_no_plan_at_all() -> None:
    hw = hardware(OWN)
    states = hw.states()
    states["vehicle"] = VehicleState(connected=False)
    plans, why_not = propose(**states, rack_config=RACK, own_pack=OWN.id)
    assert plans == [] and "vehicle link is down" in why_not["finish"]


def test_the_situation_at_rest_is_normal_and_unknown_state_is_not() -> None:
    hw = hardware(OWN, None, secured=False, hv_on=True, locked=True)
    states = hw.states()
    assert read_bay(**states).normal  # a truck waiting to be served is normal
    assert read_bay(**states).model_dump()["normal"] is True  # and it is on the wire
    unknown = read_bay(**(states | {"door": None}))
    assert not unknown.normal and unknown.unknown == ["door"]
    undocked = replace(hw, docked={**hw.docked, 2: False})
    assert read_bay(**undocked.states()).not_normal == [
        "slot 2 holds a pack that is not docked (not charging)"
    ]


def test_the_documented_status_shows_what_the_station_reads_from_the_example_states() -> None:
    """docs/mqtt-api.md's status example carries a bay situation: it is exactly what the
    station makes of the example driver states (one moment in the middle of stow)."""
    from controller.contract.examples import example_payloads

    ex = example_payloads()
    states = {name: ex[f"{name.capitalize()}State"][0] for name in ("arm", "bay", "door", "rack")}
    situation = read_bay(**states, vehicle=ex["VehicleState"][0])  # type: ignore[arg-type]
    assert ex["Status"][0].bay == situation  # type: ignore[union-attr]
