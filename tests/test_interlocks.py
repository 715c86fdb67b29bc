"""The interlock and post-condition tables, rule by rule, over the contract's own state models.

Pure: the rules read :class:`Readings` (the drivers' latest states), so every case here is a
situation written as real contract messages. The station-level tests (test_station,
test_maintenance, the fault matrix, the state machine) check the same rules in use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from controller.contract import (
    DRIVER_ACTIONS,
    MOTION_ACTIONS,
    ArmState,
    BayState,
    DoorState,
    RackSlotState,
    RackState,
    SafetyState,
    VehicleInBay,
    VehicleState,
)
from controller.station.interlocks import ANY_COMMAND, INTERLOCKS, Readings, Step, refusals
from controller.station.postconditions import POSTCONDITIONS, unmet_in

pytestmark = pytest.mark.timeout(30)

TRUCK = VehicleInBay(plate="CQ-T0001", stopped=True)


def readings(**changes: Any) -> Readings:
    """The middle of a swap with nothing wrong: the truck stopped, secured, HV off, its pack
    unlocked; the door open, the arm home; every driver online."""
    nominal = Readings(
        arm=ArmState(position="home"),
        bay=BayState(vehicle=TRUCK, secured=True, pack_locked=False),
        door=DoorState(position="open"),
        vehicle=VehicleState(connected=True, vehicle_id="CQ-T0001", hv_on=False),
        safety=SafetyState(estop_pressed=False),
        rack=RackState(
            slots=[
                RackSlotState(slot=1, docked=True, charger_kw=240),
                RackSlotState(slot=2, docked=False, charger_kw=240),
            ]
        ),
    )
    return replace(nominal, **changes)


AT_VEHICLE = ArmState(position="vehicle")
LOCKED = BayState(vehicle=TRUCK, secured=True, pack_locked=True)
#: The truck ready to leave: pack locked, high voltage back on.
HV_BACK_ON = VehicleState(connected=True, vehicle_id="CQ-T0001", hv_on=True)

#: For each motion: a situation and arguments in which it may go.
MAY_GO: dict[tuple[str, str], tuple[Readings, dict[str, Any]]] = {
    ("arm", "move"): (readings(), {"target": "vehicle"}),
    ("arm", "lift"): (readings(arm=AT_VEHICLE), {}),
    ("arm", "lower"): (readings(arm=AT_VEHICLE), {}),
    ("bay", "secure"): (readings(bay=BayState(vehicle=TRUCK)), {}),
    ("bay", "unlock"): (readings(bay=LOCKED), {}),
    ("bay", "lock"): (readings(), {}),
    ("bay", "release"): (readings(bay=LOCKED, vehicle=HV_BACK_ON), {}),
    ("door", "open"): (readings(door=DoorState(position="closed")), {}),
    ("door", "close"): (readings(), {}),
    ("rack", "dock"): (readings(), {"slot": 2}),
    ("rack", "undock"): (readings(), {"slot": 1}),
}

#: (device, action, args, what is wrong, the refusal it must give): at least one per rule.
REFUSED: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("door", "open", {}, {"safety": None}, "safety relay state unknown"),
    ("door", "open", {}, {"safety": SafetyState(estop_pressed=True)}, "e-stop pressed"),
    (
        "door",
        "open",
        {},
        {"safety": SafetyState(estop_pressed=False, light_curtain_broken=True)},
        "light curtain broken",
    ),
    ("door", "open", {}, {"offline": ("door",)}, "door driver offline"),
    ("door", "open", {}, {"offline": ("arm", "rack")}, "driver(s) offline: arm, rack"),
    ("arm", "move", {"target": "home"}, {"arm": None}, "arm state unknown"),
    (
        "arm",
        "move",
        {"target": "vehicle"},
        {"door": DoorState(position="closed")},
        "door not open: the arm would pass through it",
    ),
    (
        "arm",
        "move",
        {"target": "slot", "slot": 3},
        {"arm": AT_VEHICLE, "door": None},
        "door not open: the arm would pass through it",
    ),
    (
        "arm",
        "move",
        {"target": "vehicle"},
        {"bay": BayState(vehicle=TRUCK)},
        "vehicle not secured in the bay",
    ),
    (
        "arm",
        "move",
        {"target": "vehicle"},
        {"vehicle": VehicleState(connected=True, hv_on=None)},
        "vehicle high voltage not confirmed off",
    ),
    ("arm", "lift", {}, {"arm": None}, "arm state unknown"),
    ("arm", "lift", {}, {"arm": AT_VEHICLE, "bay": None}, "vehicle not secured in the bay"),
    (
        "arm",
        "lift",
        {},
        {"arm": AT_VEHICLE, "vehicle": VehicleState(connected=True, hv_on=True)},
        "vehicle high voltage not confirmed off",
    ),
    ("arm", "lift", {}, {"arm": AT_VEHICLE, "bay": LOCKED}, "pack locks closed"),
    ("arm", "lower", {}, {"arm": None}, "arm state unknown"),
    ("arm", "lower", {}, {"arm": AT_VEHICLE, "bay": None}, "vehicle not secured in the bay"),
    (
        "arm",
        "lower",
        {},
        {"arm": AT_VEHICLE, "vehicle": None},
        "vehicle high voltage not confirmed off",
    ),
    ("arm", "lower", {}, {"arm": AT_VEHICLE, "bay": LOCKED}, "pack locks closed"),
    (
        "bay",
        "secure",
        {},
        {"bay": BayState(vehicle=VehicleInBay(plate="X", stopped=False))},
        "no vehicle stopped in the bay",
    ),
    ("bay", "unlock", {}, {"bay": BayState(vehicle=TRUCK)}, "vehicle not secured in the bay"),
    ("bay", "unlock", {}, {"vehicle": None}, "vehicle high voltage not confirmed off"),
    ("bay", "lock", {}, {"bay": None}, "vehicle not secured in the bay"),
    (
        "bay",
        "release",
        {},
        {"arm": None, "bay": LOCKED, "vehicle": HV_BACK_ON},
        "arm state unknown",
    ),
    ("bay", "release", {}, {"bay": None, "vehicle": HV_BACK_ON}, "bay state unknown"),
    (
        "bay",
        "release",
        {},
        {"arm": AT_VEHICLE, "bay": LOCKED, "vehicle": HV_BACK_ON},
        "arm is at the vehicle",
    ),
    ("bay", "release", {}, {"bay": readings().bay, "vehicle": HV_BACK_ON}, "pack locks open"),
    (
        "bay",
        "release",
        {},
        {"vehicle": readings().vehicle},
        "vehicle high voltage not confirmed on",
    ),
    (
        "bay",
        "release",
        {},
        {"bay": LOCKED, "vehicle": None},
        "vehicle high voltage not confirmed on",
    ),
    ("door", "close", {}, {"arm": AT_VEHICLE}, "arm may be in the doorway"),
    ("door", "close", {}, {"arm": ArmState(position="moving")}, "arm may be in the doorway"),
    (
        "door",
        "close",
        {},
        {"arm": ArmState(position="home", busy=True)},
        "arm may be in the doorway",
    ),
    ("door", "close", {}, {"arm": None}, "arm may be in the doorway"),
]


def test_every_motion_of_the_contract_has_interlock_rules() -> None:
    assert set(INTERLOCKS) == set(MOTION_ACTIONS) == set(MAY_GO)
    for motion, rules in INTERLOCKS.items():
        assert rules, motion
        # every motion also needs the other drivers online: their states are the rules' inputs
        assert any("offline" in rule.refusal for rule in rules), motion


@pytest.mark.parametrize("motion", sorted(MOTION_ACTIONS), ids="{0[0]}.{0[1]}".format)
def test_a_motion_goes_when_nothing_is_wrong(motion: tuple[str, str]) -> None:
    situation, args = MAY_GO[motion]
    assert refusals(situation, Step(*motion, args)) == []


@pytest.mark.parametrize(
    ("device", "action", "args", "wrong", "text"),
    REFUSED,
    ids=[f"{d}.{a}:{t}" for d, a, _, _, t in REFUSED],
)
def test_a_rule_refuses_with_its_own_text(
    device: str, action: str, args: dict[str, Any], wrong: dict[str, Any], text: str
) -> None:
    situation, _ = MAY_GO[(device, action)]
    assert text in refusals(replace(situation, **wrong), Step(device, action, args))


def test_every_rule_has_a_case_that_shows_its_text_in_a_refusal() -> None:
    """A rule added to a table without a case above fails here, naming its text. The rules
    every command or every motion shares are shown once, for ``door.open``."""
    covered = {(d, a, text) for d, a, _, _, text in REFUSED}
    shared = {id(rule) for rule in (*ANY_COMMAND, *INTERLOCKS[("door", "open")])}
    for rule in (*ANY_COMMAND, *INTERLOCKS[("door", "open")]):
        text = rule.refusal.format(device="door", others_offline="arm, rack")
        assert ("door", "open", text) in covered, text
    for (device, action), rules in INTERLOCKS.items():
        for rule in rules:
            if id(rule) not in shared:
                assert (device, action, rule.refusal) in covered, (device, action, rule.refusal)


@pytest.mark.parametrize("motion", sorted(MOTION_ACTIONS), ids="{0[0]}.{0[1]}".format)
def test_no_news_is_not_good_news(motion: tuple[str, str]) -> None:
    """Before any driver has reported (a controller just started), no motion may go, and an
    online driver whose state never came counts as open wherever a rule reads it."""
    _, args = MAY_GO[motion]
    never = Readings(arm=None, bay=None, door=None, vehicle=None, safety=None, rack=None)
    assert refusals(never, Step(*motion, args))
    assert refusals(replace(never, offline=tuple(DRIVER_ACTIONS)), Step(*motion, args))


def test_the_bay_releases_only_with_the_arm_and_locks_known() -> None:
    """The one place where unknown state used to let a motion pass: a release with no report
    from the arm (it may be at the vehicle) or the bay (its locks may be open)."""
    situation, _ = MAY_GO[("bay", "release")]
    assert refusals(replace(situation, arm=None), Step("bay", "release")) == ["arm state unknown"]
    assert refusals(replace(situation, bay=None), Step("bay", "release")) == ["bay state unknown"]


def test_a_non_motion_command_needs_only_the_safety_chain_and_its_driver() -> None:
    situation = readings(door=None, arm=None, bay=None, offline=("arm",))
    assert refusals(situation, Step("vehicle", "identify")) == []
    assert refusals(replace(situation, offline=("vehicle",)), Step("vehicle", "identify")) == [
        "vehicle driver offline"
    ]


# ---- post-conditions -------------------------------------------------------------------------
RACK_1_UNDOCKED = RackState(slots=[RackSlotState(slot=1, charger_kw=240)])
RACK_2_DOCKED = RackState(slots=[RackSlotState(slot=2, docked=True, charger_kw=240)])
HV_ON = VehicleState(connected=True, hv_on=True)
#: (the step, the states once done, the states when the driver lied, the failure it reads)
DONE: list[tuple[Step, dict[str, Any], dict[str, Any], str]] = [
    (
        Step("door", "open"),
        {},
        {"door": DoorState(position="moving")},
        "door reads moving, not open",
    ),
    (
        Step("door", "close"),
        {"door": DoorState(position="closed")},
        {},
        "door reads open, not closed",
    ),
    (Step("bay", "secure"), {}, {"bay": BayState(vehicle=TRUCK)}, "vehicle not secured"),
    (Step("bay", "release"), {"bay": BayState(vehicle=TRUCK)}, {}, "vehicle still secured"),
    (Step("bay", "unlock"), {}, {"bay": LOCKED}, "pack locks not open"),
    (Step("bay", "lock"), {"bay": LOCKED}, {}, "pack locks not closed"),
    (Step("vehicle", "hv_off"), {}, {"vehicle": HV_ON}, "vehicle HV reads True"),
    (Step("vehicle", "hv_on"), {"vehicle": HV_ON}, {}, "vehicle HV reads False"),
    (
        Step("arm", "move", {"target": "slot", "slot": 7}),
        {"arm": ArmState(position="slot:7")},
        {"arm": ArmState(position="rail:3")},
        "arm reads rail:3, not slot:7",
    ),
    (Step("rack", "dock", {"slot": 1}), {}, {"rack": RACK_1_UNDOCKED}, "slot 1 not docked"),
    (Step("rack", "undock", {"slot": 2}), {}, {"rack": RACK_2_DOCKED}, "slot 2 not undocked"),
]


def test_every_postcondition_has_a_case() -> None:
    assert {(step.device, step.action) for step, *_ in DONE} == set(POSTCONDITIONS)
    assert set(POSTCONDITIONS) <= {(d, a) for d, acts in DRIVER_ACTIONS.items() for a in acts}


@pytest.mark.parametrize(
    ("step", "done", "lied", "failure"),
    DONE,
    ids=[f"{step.device}.{step.action}" for step, *_ in DONE],
)
def test_a_done_is_believed_only_when_the_states_show_it(
    step: Step, done: dict[str, Any], lied: dict[str, Any], failure: str
) -> None:
    assert unmet_in(readings(**done), step) is None
    assert unmet_in(readings(**lied), step) == failure
    reads = POSTCONDITIONS[(step.device, step.action)].reads
    assert unmet_in(readings(**{reads: None}), step) == f"{reads} state unknown"


def test_a_slot_the_rack_does_not_report_is_never_docked() -> None:
    assert unmet_in(readings(), Step("rack", "dock", {"slot": 9})) == "slot 9 not docked"


def test_actions_without_a_postcondition_are_believed_as_reported() -> None:
    never = Readings(arm=None, bay=None, door=None, vehicle=None, safety=None, rack=None)
    for step in (Step("vehicle", "identify"), Step("arm", "lift"), Step("bay", "stop")):
        assert unmet_in(never, step) is None
