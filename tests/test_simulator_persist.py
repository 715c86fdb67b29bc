"""The simulated world survives a restart of the simulator, as hardware survives its drivers.

The scenario of issue #10 ("restarts are boring"): a swap, then the controller and the
simulator both stopped and started again on the same journal and world file, and the next
`start` just works: packs where the journal says, trucks numbered on, and a second swap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.demo import compare_with_world
from controller.clock import Clock
from controller.contract import PackInfo
from controller.errors import ConfigError
from simulator import persist
from simulator.traffic import Traffic
from simulator.world import Truck, World
from tests.harness import running_station, station_config
from tests.waits import until

pytestmark = pytest.mark.timeout(90)


async def test_controller_and_simulator_restarted_after_a_swap_carry_on(
    embedded_broker: object, station_id: str, tmp_path: Path
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, database=str(tmp_path / "station.db"))
    world_file = tmp_path / "world.json"
    async with running_station(url, cfg, sim_state=world_file) as st:
        await st.sim.arrive(1)
        first = await st.next_swap(30)
        assert first.result == "completed", first
        await st.wait_world_settled()
        after_first = dict(st.sim.world.locations)
    assert world_file.exists()
    # both processes gone; both started again on the same journal and world file
    async with running_station(url, cfg, sim_state=world_file) as st:
        assert dict(st.sim.world.locations) == after_first
        assert compare_with_world(st.controller, after_first) == []
        assert await st.sim.arrive(1) == ["CQ-T0002"]  # numbered on, not CQ-T0001 again
        second = await st.next_swap(30)
        assert second.result == "completed", second
        assert second.swap_id.endswith("-S0002"), second.swap_id  # the journal numbers on
        await st.wait_world_settled()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []


def test_a_cut_short_moment_is_kept_as_it_physically_was(tmp_path: Path) -> None:
    """Truck clamped with its locks open and HV off, its pack in the gripper, the door open
    and the arm on its way: restored as is, except that motions have stopped."""
    cfg = station_config("persist-unit")
    clock = Clock(cfg.time_scale)
    world = World(cfg, clock)
    traffic = Traffic(cfg, clock, world)
    [truck] = traffic.arrive(1)
    world.enter_bay(truck)
    world.stop_in_bay()
    truck.secured, truck.hv_on, truck.locks_locked = True, False, False
    own = world.vehicle_pack
    assert own is not None
    world.move_pack(own.id, "gripper")
    world.door, world.arm_m = "moving", 1.25
    path = tmp_path / "world.json"
    persist.save(world, traffic, path)

    again = World(cfg, clock)
    again_traffic = Traffic(cfg, clock, again)
    assert persist.restore(again, again_traffic, path)
    assert again.locations == world.locations
    assert again.gripper_pack == own
    assert again.door == "halted" and again.arm_m == 1.25
    assert again.bay is not None and again.bay.phase == "stopped"
    assert (again.bay.secured, again.bay.hv_on, again.bay.locks_locked) == (True, False, False)
    assert again_traffic.trucks_so_far == 1
    assert again.problems() == []


def test_a_truck_that_was_leaving_has_left_with_its_pack(tmp_path: Path) -> None:
    cfg = station_config("persist-unit")
    clock = Clock(cfg.time_scale)
    world, path = World(cfg, clock), tmp_path / "world.json"
    traffic = Traffic(cfg, clock, world)
    pack = PackInfo(id="TP-77", type="HT-282", soc=0.95, capacity_kwh=282)
    truck = Truck("CQ-T0077", "YU-D77", "HT-282", pack, joined_at=0.0)
    world.queue.append(truck)
    world.enter_bay(truck)
    truck.phase = "departing"
    persist.save(world, traffic, path)
    again = World(cfg, clock)
    persist.restore(again, Traffic(cfg, clock, again), path)
    assert again.bay is None
    assert [d.pack.id for d in again.departed] == ["TP-77"]
    assert "TP-77" not in again.packs


def test_another_station_s_world_is_refused_naming_the_file(tmp_path: Path) -> None:
    clock = Clock(1.0)
    mine, theirs = station_config("station-a"), station_config("station-b")
    path = tmp_path / "world.json"
    world = World(theirs, clock)
    persist.save(world, Traffic(theirs, clock, world), path)
    here = World(mine, clock)
    with pytest.raises(ConfigError, match="station-b") as refused:
        persist.restore(here, Traffic(mine, clock, here), path)
    assert str(path) in str(refused.value)


async def test_a_fresh_world_against_an_old_journal_is_said_everywhere(
    embedded_broker: object, station_id: str, tmp_path: Path
) -> None:
    """The issue's case: after a swap the simulator restarts with a fresh world while the
    controller keeps its journal. The inventory is not 'consistent', it names the packs, an
    inventory_mismatch alarm says so, and start is refused with the same reasons."""
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, database=str(tmp_path / "station.db"))
    async with running_station(url, cfg) as st:
        await st.sim.arrive(1)
        assert (await st.next_swap(30)).result == "completed"
        await st.wait_world_settled()
    async with running_station(url, cfg, start=False) as st:  # no world file: a fresh world
        station = st.controller.station
        await until(
            lambda: st.operator.inventory is not None and not st.operator.inventory.consistent,
            "the published inventory says it is not consistent",
        )
        inventory = st.operator.inventory
        assert inventory is not None
        assert any("ledger says" in p for p in inventory.problems), inventory.problems
        assert "inventory_mismatch" in {a.code for a in station.alarms.active()}
        reply = await st.command("start")
        assert not reply.ok and "ledger says" in (reply.error or "")
