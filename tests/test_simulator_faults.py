"""Every fault kind, injected into the simulated drivers, observed over MQTT.

What each kind must do is specified in :mod:`simulator.faults`; these tests hold the simulator
to it, one kind at a time, without a controller.
"""

from __future__ import annotations

import asyncio

import pytest

from controller.clock import Clock
from controller.config import DEFAULT_CONFIG, load_config
from controller.contract import ArmState, DoorState, DriverResult, RackState, SafetyState
from simulator import Simulator
from simulator.faults import FaultSpec
from simulator.probe import DriverProbe
from tests.test_simulator import ok, running_sim, state, truck_in_bay, truck_stopped

SCENARIOS = DEFAULT_CONFIG.parent / "scenarios"


async def test_fail_answers_injected_fault_once_and_moves_nothing(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id, faults=["arm.move:fail"]) as (sim, probe):
        result = await probe.command("arm", "move", {"target": "slot", "slot": 8})
        assert (result.status, result.error_code) == ("failed", "injected_fault")
        assert [r.status for r in probe.results[result.id]] == ["accepted", "failed"]
        assert state(probe, "arm", ArmState).position == "home"
        assert sim.world.arm_m == sim.world.home_m
        assert sim.faults.armed == []  # spent
        await ok(probe, "arm", "move", {"target": "slot", "slot": 8})


async def test_always_fires_until_cleared(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        sim.inject("rack.*:fail:always")
        for _ in range(2):
            result = await probe.command("rack", "undock", {"slot": 1})
            assert result.error_code == "injected_fault"
        assert state(probe, "rack", RackState).slots[0].docked
        sim.faults.clear()
        await ok(probe, "rack", "undock", {"slot": 1})
        assert [str(spec) for spec, _ in sim.faults.fired] == ["rack.*:fail:always"] * 2


async def test_hang_accepts_and_never_answers_until_stopped(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id, faults=["door.open:hang"]) as (sim, probe):
        hung = await probe.send("door", "open")
        await probe.wait_for(lambda: state(probe, "door", DoorState).busy)
        # measures: no answer for 60 s of station time, ten times door.open's nominal time
        await asyncio.sleep(0.2)
        assert [r.status for r in probe.results[hung]] == ["accepted"]
        busy = await probe.command("door", "open")
        assert busy.error_code == "busy"
        stop = await probe.send("door", "stop")
        answer = await probe.final(hung)
        assert (answer.status, answer.error_code) == ("failed", "stopped")
        assert (await probe.final(stop)).status == "done"
        assert sim.world.door == "closed"  # it never moved
        await ok(probe, "door", "open")


@pytest.mark.parametrize(("spec", "factor"), [("rack.dock:slow", 3.0), ("rack.dock:slow:6", 6.0)])
async def test_slow_takes_k_times_the_nominal_time(
    broker_url: str, station_id: str, spec: str, factor: float
) -> None:
    # The upper bounds allow 2 station seconds for the loop to be late waking the driver: at
    # 200x that was 10 ms, less than a loaded 2-core machine can promise; at 20x it is 100 ms.
    async with running_sim(broker_url, station_id, time_scale=20) as (sim, probe):
        await ok(probe, "rack", "undock", {"slot": 1})
        normal = took(await ok(probe, "rack", "dock", {"slot": 1}), probe)
        await ok(probe, "rack", "undock", {"slot": 1})
        sim.inject(spec)
        slow = took(await ok(probe, "rack", "dock", {"slot": 1}), probe)
        nominal = sim.config.simulator.actions["rack.dock"].nominal_s  # 4 s +- 10 %
        assert nominal * 0.9 - 0.5 <= normal < nominal * 1.1 + 2.0
        assert nominal * 0.9 * factor - 0.5 <= slow < nominal * 1.1 * factor + 2.0


def took(done: DriverResult, probe: DriverProbe) -> float:
    """Station seconds from ``accepted`` to ``done``, by the driver's own timestamps."""
    accepted = probe.results[done.id][0]
    return (done.ts - accepted.ts).total_seconds()


async def test_disconnect_fires_the_will_mid_action(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, faults=["door.open:disconnect"]) as (
        sim,
        probe,
    ):
        cmd = await probe.send("door", "open")
        await probe.wait_for(lambda: probe.online["door"] == "offline")
        await probe.wait_for(lambda: sim.world.door == "open")  # the hardware finishes the job
        assert [r.status for r in probe.results[cmd]] == ["accepted"]  # but the answer is lost
        await sim.reconnect("door")
        await probe.wait_for(lambda: probe.online["door"] == "online")
        await probe.wait_for(lambda: state(probe, "door", DoorState).position == "open")
        # asking again with the same id gets the result it could not deliver
        await probe.send("door", "open", cmd_id=cmd)
        answer = await probe.final(cmd)
        assert answer.status == "done"


async def test_lie_reports_done_but_the_world_and_sensors_disagree(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id, faults=["arm.move:lie", "rack.undock:lie"]) as (
        sim,
        probe,
    ):
        await ok(probe, "arm", "move", {"target": "slot", "slot": 8})
        assert state(probe, "arm", ArmState).position == "home"
        await ok(probe, "rack", "undock", {"slot": 1})
        assert state(probe, "rack", RackState).slots[0].docked
        assert sim.world.slots[1].docked and sim.world.arm_place() == "home"


async def test_lie_makes_verify_pass_with_the_locks_open(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        await truck_in_bay(sim, probe)
        await ok(probe, "bay", "secure")
        await ok(probe, "bay", "unlock")
        honest = await probe.command("vehicle", "verify")
        assert honest.error_code == "verify_failed"
        sim.inject("vehicle.verify:lie")
        lying = await ok(probe, "vehicle", "verify")
        assert lying.data["pack"] is not None


async def test_drop_puts_the_pack_on_the_floor(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, faults=["arm.move:drop"]) as (sim, probe):
        await ok(probe, "rack", "undock", {"slot": 1})
        await ok(probe, "arm", "move", {"target": "slot", "slot": 1})  # empty: not consumed
        assert len(sim.faults.armed) == 1
        await ok(probe, "arm", "lift")
        result = await probe.command("arm", "move", {"target": "slot", "slot": 8})
        assert (result.status, result.error_code) == ("failed", "pack_dropped")
        assert sim.world.locations["P-1001"] == "floor"
        await probe.wait_for(lambda: probe.world is not None and any(
            p.location == "floor" for p in probe.world.packs))  # fmt: skip
        arm = state(probe, "arm", ArmState)
        assert arm.holding is None and arm.fault is not None
        assert arm.position.startswith("rail:")  # halted half-way
        assert sim.world.problems() == []
        await ok(probe, "arm", "stop")
        assert state(probe, "arm", ArmState).fault is None


async def test_estop_fault_trips_the_relay_and_halts_motion(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id, time_scale=100) as (sim, probe):
        long_move = await probe.send("arm", "move", {"target": "slot", "slot": 8})
        await probe.wait_for(lambda: state(probe, "arm", ArmState).position == "moving")
        sim.inject("door.open:estop")
        result = await probe.command("door", "open")
        assert (result.status, result.error_code) == ("failed", "estop")
        halted = await probe.final(long_move)
        assert (halted.status, halted.error_code) == ("failed", "estop")
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).estop_pressed)
        assert sim.world.door == "closed"
        await sim.set_estop(False)
        await ok(probe, "door", "open")


async def test_light_curtain_fault_trips_the_relay(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, faults=["rack.undock:light_curtain"]) as (
        sim,
        probe,
    ):
        result = await probe.command("rack", "undock", {"slot": 2})
        assert (result.status, result.error_code) == ("failed", "light_curtain")
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).light_curtain_broken)
        assert not state(probe, "safety", SafetyState).estop_pressed
        refused = await probe.command("arm", "move", {"target": "slot", "slot": 2})
        assert refused.error_code == "light_curtain"
        await sim.set_light_curtain(False)
        await ok(probe, "rack", "undock", {"slot": 2})


async def test_estop_fault_lets_a_query_finish(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        await truck_in_bay(sim, probe)
        sim.inject(FaultSpec(device="vehicle", action="identify", kind="estop"))
        await ok(probe, "vehicle", "identify")  # not a motion: the relay does not stop it
        assert sim.world.estop_pressed


async def test_scenario_file_arms_faults_and_sends_trucks(broker_url: str, station_id: str) -> None:
    cfg = load_config().with_overrides(station_id=station_id, time_scale=300)
    sim = Simulator(cfg, url=broker_url, clock=Clock(300))
    scenario = sim.load_scenario(SCENARIOS / "lift-fails.yaml")
    assert scenario.arrivals == 1
    assert [str(s) for s in sim.faults.armed] == ["arm.lift:fail"]
    async with sim, DriverProbe(broker_url, station_id) as probe:
        await probe.wait_for(lambda: "bay" in probe.states and truck_stopped(probe))
        assert sim.world.bay is not None and sim.world.bay.vehicle_id == "CQ-T0001"
        result = await probe.command("vehicle", "identify")  # not the faulted action
        assert result.status == "done"


@pytest.mark.parametrize("action", ["lift", "lower"])
async def test_drop_while_lifting_or_lowering(
    broker_url: str, station_id: str, action: str
) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        await ok(probe, "rack", "undock", {"slot": 1})
        await ok(probe, "arm", "move", {"target": "slot", "slot": 1})
        if action == "lower":
            await ok(probe, "arm", "lift")
        sim.inject(f"arm.{action}:drop")
        result = await probe.command("arm", action)
        assert (result.status, result.error_code) == ("failed", "pack_dropped")
        assert sim.world.locations["P-1001"] == "floor"
        assert sim.world.slot_pack(1) is None and sim.world.gripper_pack is None
        assert state(probe, "arm", ArmState).position == "slot:1"
