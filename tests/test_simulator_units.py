"""The simulator's pure parts, without a broker: fault specs, scenarios, world physics."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.clock import Clock
from controller.config import DEFAULT_CONFIG, load_config
from controller.contract import MAX_PAYLOAD_BYTES, PackInfo, WorldPack, encode
from controller.errors import ConfigError
from simulator import Simulator
from simulator.faults import FaultBook, FaultSpec, parse_fault
from simulator.scenario import load_scenario
from simulator.world import FLOOR, SNAPSHOT_DEPARTED, World, charge_power_kw

SCENARIOS = DEFAULT_CONFIG.parent / "scenarios"


# ---- fault specs ------------------------------------------------------------------------------


def test_the_issue_examples_parse_as_written() -> None:
    assert parse_fault("arm.lift:fail") == FaultSpec("arm", "lift", "fail")
    assert parse_fault("bay.unlock:hang") == FaultSpec("bay", "unlock", "hang")
    assert parse_fault("rack.dock:slow") == FaultSpec("rack", "dock", "slow", factor=3.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rack.dock:slow:5", FaultSpec("rack", "dock", "slow", factor=5.0)),
        ("rack.dock:slow:2.5:always", FaultSpec("rack", "dock", "slow", 2.5, "always")),
        ("rack.dock:slow:always", FaultSpec("rack", "dock", "slow", 3.0, "always")),
        ("arm.*:disconnect", FaultSpec("arm", "*", "disconnect")),
        ("arm.lower:drop:once", FaultSpec("arm", "lower", "drop")),
        ("vehicle.verify:lie", FaultSpec("vehicle", "verify", "lie")),
        ("door.open:estop", FaultSpec("door", "open", "estop")),
        ("bay.secure:light_curtain", FaultSpec("bay", "secure", "light_curtain")),
    ],
)
def test_fault_specs_parse_and_print_back(text: str, expected: FaultSpec) -> None:
    spec = parse_fault(text)
    assert spec == expected
    assert parse_fault(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "DEVICE.ACTION:KIND"),
        ("arm.lift", "missing ':KIND'"),
        ("armlift:fail", "not DEVICE.ACTION"),
        ("robot.lift:fail", "unknown device 'robot'"),
        ("arm.fly:fail", "arm has no action 'fly'"),
        ("arm.stop:fail", "'stop' cannot be faulted"),
        ("safety.*:disconnect", "safety has no action to fault"),
        ("arm.lift:explode", "unknown kind 'explode'"),
        ("door.open:drop", "'drop' applies to the arm"),
        ("rack.dock:slow:fast", "must be a number"),
        ("rack.dock:slow:0.5", "must be > 1"),
        ("arm.lift:fail:3", "only 'slow' takes a parameter"),
        ("arm.lift:fail:always:x", "unexpected"),
    ],
)
def test_bad_fault_specs_name_the_spec_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fault(text, source="--inject")
    assert reason in str(err.value)
    assert err.value.path == "--inject"
    assert repr(text) in str(err.value)


def test_fault_book_spends_once_and_keeps_always() -> None:
    book = FaultBook(["arm.lift:fail", "door.*:slow:always"])
    assert book.take("arm", "move", "c1") is None
    assert book.take("arm", "lift", "c2") == FaultSpec("arm", "lift", "fail")
    assert book.take("arm", "lift", "c3") is None
    for n in range(3):
        assert book.take("door", "open", f"d{n}") is not None
    assert book.take("door", "stop", "d9") is None  # stop is never faulted
    assert book.take("door", "close", "d4", applies=lambda _: False) is None
    assert [cid for _, cid in book.fired] == ["c2", "d0", "d1", "d2"]
    assert [str(s) for s in book.armed] == ["door.*:slow:3:always"]


# ---- scenarios --------------------------------------------------------------------------------


def test_shipped_scenarios_load() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        scenario = load_scenario(path)
        assert scenario.description
        assert scenario.fault_specs()


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("faults: [arm.lift:fail, arm.fly:fail]", "faults[1]", "arm has no action 'fly'"),
        ("faults: arm.lift:fail", "faults", "valid list"),
        ("arrivals: -1", "arrivals", "greater than or equal"),
        ("colour: red", "colour", "Extra inputs"),
        ("- a list", "", "YAML mapping"),
        ("faults: [unclosed", "", "not valid YAML"),
    ],
)
def test_bad_scenarios_name_file_field_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert err.value.path == str(path)
    assert err.value.field == field
    assert reason in err.value.reason


# ---- the world --------------------------------------------------------------------------------


def make_world() -> World:
    return World(load_config(), Clock(1000))


def test_charging_power_tapers_above_80_percent() -> None:
    assert charge_power_kw(0.5, 240) == 240
    assert charge_power_kw(0.8, 240) == 240
    assert charge_power_kw(0.9, 240) == pytest.approx(240 * 0.55)
    assert charge_power_kw(0.9999, 240) == pytest.approx(24, rel=0.01)
    assert charge_power_kw(1.0, 240) == 0
    assert charge_power_kw(0.5, 0) == 0


def test_charging_fills_docked_packs_only() -> None:
    world = make_world()
    world.slots[6].docked = False
    for _ in range(60):  # ten minutes in 10 s ticks
        world.charge(10.0)
    socs = {n: world.slot_pack(n).soc for n in (1, 5, 6)}  # type: ignore[union-attr]
    assert socs[6] == 0.42  # undocked: no charge
    assert 0.97 < socs[1] <= 1.0  # tapering, never above 100 %
    assert socs[5] == pytest.approx(0.61 + 240 * 600 / 3600 / 282, abs=1e-3)  # full power
    assert world.slots[5].charging_kw == 240
    assert world.slots[1].charging_kw < 240 * 0.2
    assert world.slots[7].charging_kw == 0  # empty


def test_world_geometry_and_door() -> None:
    world = make_world()
    assert world.door_m == 2.0 and world.slot_m(1) == 6.0 and world.slot_m(8) == 20.0
    assert world.arm_place() == "home"
    assert world.crosses_door(world.home_m, world.vehicle_m)
    assert not world.crosses_door(world.home_m, world.slot_m(3))
    assert not world.arm_on_vehicle_side()
    world.arm_m = 1.0
    assert world.arm_place() == "rail:1.00" and world.arm_on_vehicle_side()


def test_snapshot_and_conservation() -> None:
    world = make_world()
    snap = world.snapshot()
    assert [p.location for p in snap.packs] == [f"slot:{n}" for n in range(1, 7)]
    assert world.problems() == []
    world.move_pack("P-1001", "gripper")
    with pytest.raises(ValueError, match="already holds"):
        world.move_pack("P-1002", "gripper")
    world.move_pack("P-1001", FLOOR)
    world.move_pack("P-1002", FLOOR)  # the floor holds any number
    assert world.problems() == []
    with pytest.raises(ValueError, match="already exists"):
        world.add_pack(world.packs["P-1003"], "slot:8")
    extra = PackInfo(id="X-1", type="HT-282", soc=0.5, capacity_kwh=282)
    with pytest.raises(ValueError, match="already holds"):
        world.add_pack(extra, "slot:3")


def test_snapshot_lists_recent_departures_only() -> None:
    world = make_world()
    for n in range(SNAPSHOT_DEPARTED + 50):
        pack = PackInfo(id=f"D-{n}", type="HT-282", soc=0.9, capacity_kwh=282)
        world.departed.append(WorldPack(pack=pack, location=f"vehicle:T{n}"))
    snap = world.snapshot()
    assert len(snap.departed) == SNAPSHOT_DEPARTED and snap.departed[-1].pack.id == "D-149"
    assert len(encode(snap)) < MAX_PAYLOAD_BYTES


def test_traffic_pack_type_must_be_known() -> None:
    cfg = load_config()
    data = cfg.model_dump()
    data["simulator"]["traffic"]["pack_type"] = "HT-999"
    bad = type(cfg).model_validate(data)
    with pytest.raises(ConfigError, match=r"simulator\.traffic\.pack_type"):
        Simulator(bad, url="mqtt://127.0.0.1:1", clock=Clock(1))


def test_a_late_charge_tick_charges_as_punctual_ticks_would() -> None:
    """A loaded machine wakes the charge loop late: one 600 s tick must charge (and report) as
    sixty 10 s ticks do, the taper included, and the power reported is that of the SoC now."""
    cfg = load_config()
    late, punctual = World(cfg, Clock(1.0)), World(cfg, Clock(1.0))
    slot = 1  # a pack at ~97 %: on the taper
    late.charge(600.0)
    for _ in range(60):
        punctual.charge(10.0)
    a, b = late.slot_pack(slot), punctual.slot_pack(slot)
    assert a is not None and b is not None
    assert a.soc == pytest.approx(b.soc, abs=1e-6)
    assert late.slots[slot].charging_kw == pytest.approx(charge_power_kw(a.soc, 240.0), abs=0.001)
