"""The simulated drivers over real brokers, driven with raw MQTT commands (no controller).

Each test starts a :class:`Simulator` for its own station id and talks to it through a
:class:`~simulator.probe.DriverProbe`, exactly as a controller (or an integrator's tool) would:
commands on ``drivers/<device>/cmd``, answers on ``.../result``, retained state, liveness.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from controller.clock import Clock
from controller.config import load_config
from controller.contract import (
    ArmState,
    BayState,
    DoorState,
    DriverResult,
    IdentifyData,
    Message,
    RackState,
    SafetyState,
    SimControl,
    VehicleState,
    VerifyData,
)
from simulator import Simulator
from simulator.faults import FaultSpec
from simulator.probe import DriverProbe
from simulator.world import charge_power_kw

S = TypeVar("S", bound=Message)
SCALE = 300.0


@asynccontextmanager
async def running_sim(
    url: str,
    station_id: str,
    *,
    time_scale: float = SCALE,
    faults: Iterable[str | FaultSpec] = (),
) -> AsyncIterator[tuple[Simulator, DriverProbe]]:
    """A started simulator and a probe that has seen every driver's retained state."""
    cfg = load_config().with_overrides(station_id=station_id, time_scale=time_scale)
    sim = Simulator(cfg, url=url, clock=Clock(cfg.time_scale), faults=faults)
    async with sim, DriverProbe(url, station_id) as probe:
        await probe.wait_for(lambda: len(probe.states) == 6 and probe.world is not None)
        yield sim, probe


def state(probe: DriverProbe, device: str, kind: type[S]) -> S:
    value = probe.states[device]
    assert isinstance(value, kind), value
    return value


async def ok(
    probe: DriverProbe, device: str, action: str, args: dict[str, Any] | None = None
) -> DriverResult:
    result = await probe.command(device, action, args)
    assert result.status == "done", f"{device}.{action}: {result.error_code} {result.error}"
    assert [r.status for r in probe.results[result.id]] == ["accepted", "done"]
    return result


async def refused(
    probe: DriverProbe,
    device: str,
    action: str,
    args: dict[str, Any] | None = None,
    code: str = "impossible",
) -> DriverResult:
    """The command is refused at once: one ``failed`` answer, never ``accepted``."""
    result = await probe.command(device, action, args)
    assert (result.status, result.error_code) == ("failed", code), result
    assert [r.status for r in probe.results[result.id]] == ["failed"]
    return result


def truck_stopped(probe: DriverProbe) -> bool:
    bay = state(probe, "bay", BayState)
    return bay.vehicle is not None and bay.vehicle.stopped


async def truck_in_bay(sim: Simulator, probe: DriverProbe) -> str:
    [vehicle_id] = await sim.arrive(1)
    await probe.wait_for(lambda: truck_stopped(probe))
    return vehicle_id


def locations(sim: Simulator) -> dict[str, str]:
    return dict(sim.world.locations)


def physical(sim: Simulator) -> tuple[object, ...]:
    """Everything a command could change (not the state of charge, which chargers change)."""
    w = sim.world
    docked = tuple(s.docked for s in w.slots.values())
    return (locations(sim), docked, w.arm_m, w.arm_place(), w.door, w.bay, len(w.queue))


# ---- the tests --------------------------------------------------------------------------------


async def test_drivers_come_online_with_retained_state(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        assert probe.online == dict.fromkeys(
            ("arm", "bay", "door", "rack", "vehicle", "safety"), "online"
        )
        arm = state(probe, "arm", ArmState)
        assert (arm.position, arm.holding, arm.busy) == ("home", None, False)
        assert state(probe, "door", DoorState).position == "closed"
        rack = state(probe, "rack", RackState)
        assert [s.slot for s in rack.slots] == list(range(1, 9))
        assert [s.pack.id if s.pack else None for s in rack.slots] == [
            "P-1001", "P-1002", "P-1003", "P-1004", "P-1005", "P-1006", None, None,
        ]  # fmt: skip
        assert all(s.docked for s in rack.slots[:6])
        assert state(probe, "safety", SafetyState).ok
        assert not state(probe, "vehicle", VehicleState).connected
        bay = state(probe, "bay", BayState)
        assert (bay.vehicle, bay.queue_length, bay.pack_locked) == (None, 0, None)
        assert probe.world is not None and len(probe.world.packs) == 6
        assert probe.world.packs == sim.world.snapshot().packs or probe.world.departed == []
        # a clean stop says offline (the retained "online" would otherwise outlive us)
        await sim.stop()
        await probe.wait_for(lambda: set(probe.online.values()) == {"offline"})
        # and it can start again, answering each command once
        await sim.start()
        await probe.wait_for(lambda: set(probe.online.values()) == {"online"})
        await ok(probe, "door", "open")


async def test_manual_swap_sequence_conserves_packs(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, time_scale=200) as (sim, probe):
        before = set(sim.world.packs)
        vehicle_id = await truck_in_bay(sim, probe)
        truck_pack = sim.world.vehicle_pack
        assert truck_pack is not None
        bay = state(probe, "bay", BayState)
        assert bay.vehicle is not None and bay.vehicle.manoeuvre_s is not None
        # 25 s +- 20 %; at a high time scale a loaded machine adds real ms x scale on top
        assert 15 < bay.vehicle.manoeuvre_s < 120
        assert bay.vehicle.queued_s is not None and bay.vehicle.queued_s < 5

        ident = IdentifyData.model_validate((await ok(probe, "vehicle", "identify")).data)
        assert ident.vehicle_id == vehicle_id
        assert ident.pack == truck_pack
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("bay", "secure", {}),
            ("door", "open", {}),
            ("vehicle", "hv_off", {}),
            ("rack", "undock", {"slot": 1}),
            ("arm", "move", {"target": "vehicle"}),
            ("bay", "unlock", {}),
            ("arm", "lift", {}),
            ("arm", "move", {"target": "slot", "slot": 7}),
            ("arm", "lower", {}),
            ("rack", "dock", {"slot": 7}),
            ("arm", "move", {"target": "slot", "slot": 1}),
            ("arm", "lift", {}),
            ("arm", "move", {"target": "vehicle"}),
            ("arm", "lower", {}),
            ("bay", "lock", {}),
            ("vehicle", "hv_on", {}),
        ]
        for device, action, args in steps:
            await ok(probe, device, action, args)
            assert sim.world.problems() == []
        verified = VerifyData.model_validate((await ok(probe, "vehicle", "verify")).data)
        assert verified.pack.id == "P-1001" and verified.pack.soc >= 0.97  # charged meanwhile
        assert state(probe, "arm", ArmState).position == "vehicle"
        for device, action, args in [
            ("arm", "move", {"target": "home"}),
            ("door", "close", {}),
            ("bay", "release", {}),
        ]:
            await ok(probe, device, action, args)

        # the truck leaves with the charged pack; its own pack stays, docked, in slot 7
        await probe.wait_for(lambda: probe.world is not None and len(probe.world.departed) == 1)
        world = probe.world
        assert world is not None
        assert [d.pack.id for d in world.departed] == ["P-1001"]
        where = {p.pack.id: p.location for p in world.packs}
        assert where[truck_pack.id] == "slot:7"
        assert "P-1001" not in where
        every = [p.pack.id for p in world.packs] + [d.pack.id for d in world.departed]
        assert len(every) == len(set(every)) == len(before) + 1
        assert set(every) == before | {truck_pack.id}
        assert sim.world.problems() == []
        rack = state(probe, "rack", RackState)
        assert rack.slots[6].docked and rack.slots[0].pack is None
        await probe.wait_for(lambda: state(probe, "bay", BayState).vehicle is None)


async def test_impossible_commands_are_refused_and_change_nothing(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        start = locations(sim)
        await refused(probe, "vehicle", "identify")  # no truck
        await refused(probe, "bay", "secure")
        await refused(probe, "arm", "lower")  # empty gripper
        await refused(probe, "arm", "lift")  # nothing at home
        await refused(probe, "arm", "move", {"target": "vehicle"})  # door closed
        await refused(probe, "rack", "undock", {"slot": 8})  # empty slot
        await ok(probe, "arm", "move", {"target": "slot", "slot": 2})
        await refused(probe, "arm", "lift")  # slot 2 still docked
        await ok(probe, "arm", "move", {"target": "home"})
        assert locations(sim) == start

        await truck_in_bay(sim, probe)
        await refused(probe, "bay", "unlock")  # not secured
        await ok(probe, "bay", "secure")
        await ok(probe, "door", "open")
        await ok(probe, "arm", "move", {"target": "vehicle"})
        await refused(probe, "bay", "release")  # the arm is at the vehicle
        await refused(probe, "arm", "lift")  # locks locked
        await ok(probe, "bay", "unlock")
        await refused(probe, "arm", "lift")  # HV on
        await refused(probe, "vehicle", "hv_on")  # locks open
        await ok(probe, "vehicle", "hv_off")
        await ok(probe, "arm", "lift")
        await refused(probe, "arm", "lift")  # already holding
        failed = await probe.command("vehicle", "verify")  # the BMS sees no pack
        assert (failed.status, failed.error_code) == ("failed", "verify_failed")
        # the door may close behind the arm, but then the arm cannot come back
        await ok(probe, "door", "close")
        await refused(probe, "arm", "move", {"target": "home"})
        await ok(probe, "door", "open")
        await ok(probe, "arm", "move", {"target": "slot", "slot": 3})
        await refused(probe, "arm", "lower")  # slot 3 is occupied
        await refused(probe, "bay", "release")  # locks open
        # one action at a time (the first never ends by itself: a 33 ms move at 300x would be
        # over before a loaded machine delivered the second)
        sim.inject("arm.move:hang")
        first = await probe.send("arm", "move", {"target": "slot", "slot": 8})
        await probe.wait_for(lambda: state(probe, "arm", ArmState).busy)
        busy = await probe.command("arm", "move", {"target": "home"})
        assert (busy.status, busy.error_code) == ("failed", "busy")
        await ok(probe, "arm", "stop")
        assert (await probe.final(first)).error_code == "stopped"
        await ok(probe, "arm", "move", {"target": "slot", "slot": 8})
        await ok(probe, "arm", "lower")
        assert sim.world.problems() == []


async def test_duplicate_command_id_is_executed_once(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        cmd_id = await probe.send("door", "open", cmd_id="dup-1")
        assert (await probe.final(cmd_id)).status == "done"
        # the same id again, even with another action: answered with the last result only
        await probe.send("door", "close", cmd_id="dup-1")
        await probe.wait_for(lambda: len(probe.results["dup-1"]) == 3)
        await asyncio.sleep(0.1)  # measures: no further result arrives meanwhile
        assert [r.status for r in probe.results["dup-1"]] == ["accepted", "done", "done"]
        assert probe.results["dup-1"][2] == probe.results["dup-1"][1]
        assert sim.world.door == "open"
        # a redelivery while the action runs repeats "accepted" and still runs it once
        await probe.send("arm", "move", {"target": "slot", "slot": 8}, cmd_id="dup-2")
        await probe.send("arm", "move", {"target": "slot", "slot": 8}, cmd_id="dup-2")
        await probe.final("dup-2")
        await asyncio.sleep(0.1)  # measures: no further result arrives meanwhile
        assert [r.status for r in probe.results["dup-2"]] == ["accepted", "accepted", "done"]


async def test_malformed_commands_get_error_events_and_change_nothing(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        world_before = physical(sim)
        door_before = state(probe, "door", DoorState).position
        cmd = b'{"id": "%s", "action": "%s", "args": %s}'
        bad: list[tuple[str, bytes, str | None, str | None]] = [
            # device, payload, readable id, expected error code
            ("door", b"not json", None, None),
            ("door", b"", None, None),
            ("door", b"[1, 2]", None, None),
            ("door", b'{"id": 5, "action": "open"}', None, None),
            ("door", b'{"id": "m-1", "action": "open", "extra": 1}', "m-1", "bad_request"),
            ("door", b'{"id": "m-2", "action": "open", "v": 99}', "m-2", "bad_request"),
            ("arm", cmd % (b"m-3", b"fly", b"{}"), "m-3", "unknown_action"),
            ("rack", cmd % (b"m-4", b"dock", b'{"slot": "one"}'), "m-4", "bad_args"),
            ("rack", cmd % (b"m-5", b"dock", b'{"slot": 99}'), "m-5", "bad_args"),
            ("arm", cmd % (b"m-6", b"move", b'{"target": "moon"}'), "m-6", "bad_args"),
            ("arm", cmd % (b"m-7", b"lift", b'{"x": 1}'), "m-7", "bad_args"),
            ("door", cmd % (b"m-8", b"open", b'{"pad": "' + b"x" * 70_000 + b'"}'), None, None),
        ]
        for device, payload, _, _ in bad:
            await probe.send_raw(device, payload)
        await probe.wait_for(lambda: len(probe.errors) == len(bad))
        assert sorted(e.source for e in probe.errors) == sorted(d for d, *_ in bad)
        assert any("exceeds" in e.error for e in probe.errors)
        for _, _, cmd_id, code in bad:
            if cmd_id is not None:
                result = await probe.final(cmd_id)
                assert (result.status, result.error_code) == ("failed", code)
        await asyncio.sleep(0.1)  # measures: no further result arrives meanwhile
        assert sum(len(v) for v in probe.results.values()) == 7  # one per readable id only
        assert physical(sim) == world_before  # (state of charge moves on: chargers run)
        assert state(probe, "door", DoorState).position == door_before
        await ok(probe, "door", "open")  # and the driver still works


async def test_last_will_fires_on_disconnect_and_driver_comes_back(
    broker_url: str, station_id: str
) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        await sim.disconnect("arm")
        await probe.wait_for(lambda: probe.online["arm"] == "offline")
        lost = await probe.send("arm", "move", {"target": "slot", "slot": 3})
        await asyncio.sleep(0.2)  # measures: no answer comes meanwhile
        assert lost not in probe.results  # nobody listens
        await sim.reconnect("arm")
        await probe.wait_for(lambda: probe.online["arm"] == "online")
        await ok(probe, "arm", "move", {"target": "slot", "slot": 3})
        # the same over sim/control
        control = SimControl(op="disconnect", args={"device": "rack"})
        await probe.bus.publish(probe.topics.sim_control, control)
        await probe.wait_for(lambda: probe.online["rack"] == "offline")
        back = SimControl(op="reconnect", args={"device": "rack"})
        await probe.bus.publish(probe.topics.sim_control, back)
        await probe.wait_for(lambda: probe.online["rack"] == "online")
        await ok(probe, "rack", "undock", {"slot": 1})
        assert ("arm", "offline") in probe.liveness and ("rack", "offline") in probe.liveness


#: The move below takes ~13.6 station s; the stop (or e-stop) must reach the driver during it.
#: At 100x that window was 136 ms, which a loaded machine's scheduler can swallow; at 10x it is
#: 1.4 s.
HALT_SCALE = 10.0


async def test_stop_halts_the_running_motion(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, time_scale=HALT_SCALE) as (sim, probe):
        move = await probe.send("arm", "move", {"target": "slot", "slot": 8})  # ~13.6 s
        await probe.wait_for(lambda: state(probe, "arm", ArmState).position == "moving")
        await asyncio.sleep(0.1)  # lets the arm travel part of the way (any part will do)
        stop = await probe.send("arm", "stop")
        halted = await probe.final(move)
        assert (halted.status, halted.error_code) == ("failed", "stopped")
        assert (await probe.final(stop)).status == "done"
        await probe.wait_for(lambda: not state(probe, "arm", ArmState).busy)
        position = state(probe, "arm", ArmState).position
        assert position.startswith("rail:"), position  # between home and slot 8
        assert 4.0 < sim.world.arm_m < 20.0
        await ok(probe, "arm", "move", {"target": "home"})
        # stop with nothing running is a no-op that succeeds, on every driver
        for device in ("arm", "bay", "door", "rack", "vehicle", "safety"):
            await ok(probe, device, "stop")


async def test_estop_and_light_curtain_cut_motion(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, time_scale=HALT_SCALE) as (sim, probe):
        move = await probe.send("arm", "move", {"target": "slot", "slot": 8})
        await probe.wait_for(lambda: state(probe, "arm", ArmState).position == "moving")
        await sim.set_estop(True)
        halted = await probe.final(move)
        assert (halted.status, halted.error_code) == ("failed", "estop")
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).estop_pressed)
        await refused(probe, "door", "open", code="estop")
        await ok(probe, "door", "stop")  # make-safe still works
        await sim.set_estop(False)
        await sim.set_light_curtain(True)
        await refused(probe, "arm", "move", {"target": "home"}, code="light_curtain")
        await sim.set_light_curtain(False)
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).ok)
        await ok(probe, "arm", "move", {"target": "home"})


async def test_traffic_count_queue_and_departures(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        ids = await sim.arrive(3)
        assert ids == ["CQ-T0001", "CQ-T0002", "CQ-T0003"]
        await probe.wait_for(lambda: truck_stopped(probe))
        assert state(probe, "bay", BayState).queue_length == 2
        own_packs = []
        for n, vehicle_id in enumerate(ids):
            await probe.wait_for(lambda: truck_stopped(probe))
            ident = await ok(probe, "vehicle", "identify")
            assert ident.data["vehicle_id"] == vehicle_id
            own_packs.append(ident.data["pack"]["id"])
            bay = state(probe, "bay", BayState)
            assert bay.queue_length == 2 - n
            assert bay.vehicle is not None and bay.vehicle.queued_s is not None
            if n > 0:  # it waited for the trucks before it
                assert bay.vehicle.queued_s > 20
            await ok(probe, "bay", "release")  # locks still locked: it leaves with its pack
            await probe.wait_for(lambda n=n: len(sim.world.departed) == n + 1)  # type: ignore[misc]
        assert [d.pack.id for d in sim.world.departed] == own_packs
        assert len(set(own_packs)) == 3 and not set(own_packs) & set(sim.world.packs)
        assert [t.vehicle_id for t in sim.traffic.departed] == ids
        await probe.wait_for(lambda: state(probe, "bay", BayState).vehicle is None)
        assert len(sim.world.packs) == 6


async def test_traffic_rate_sends_poisson_arrivals(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        sim.start_traffic(rate_per_hour=720, count=4)  # mean gap 5 s station time
        await probe.wait_for(lambda: state(probe, "bay", BayState).queue_length == 3, 10)
        assert [t.vehicle_id for t in sim.world.queue] == ["CQ-T0002", "CQ-T0003", "CQ-T0004"]
        packs = [t.pack for t in sim.world.queue]
        traffic = sim.config.simulator.traffic
        assert all(traffic.soc_min <= p.soc <= traffic.soc_max for p in packs)
        assert all(p.type == traffic.pack_type for p in packs)


async def test_docked_packs_charge_with_taper(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id, time_scale=1000) as (sim, probe):
        await ok(probe, "rack", "undock", {"slot": 6})
        soc = {n: sim.world.slot_pack(n).soc for n in (1, 5, 6)}  # type: ignore[union-attr]
        await asyncio.sleep(0.5)  # lets the chargers run ~500 s of station time (read, not assumed)
        rack = state(probe, "rack", RackState)
        by_slot = {s.slot: s for s in rack.slots}
        # the reported power is the taper of the reported SoC (how far a loaded machine lets
        # the clock run in 0.5 s varies, so the SoC is read, not assumed), however late the
        # last charge tick came
        for n in (1, 5):
            reported = by_slot[n]
            assert reported.pack is not None
            assert reported.charging_kw == pytest.approx(
                charge_power_kw(reported.pack.soc, 240.0), abs=0.001
            )
        assert by_slot[5].charging_kw > 200  # from 61 %: at or near full power
        assert 0 < by_slot[1].charging_kw < 100  # ~97 %: tapered
        assert by_slot[6].charging_kw == 0.0 and not by_slot[6].docked
        assert by_slot[7].charging_kw == 0.0  # empty
        now = {n: sim.world.slot_pack(n).soc for n in (1, 5, 6)}  # type: ignore[union-attr]
        assert now[6] == soc[6]
        gain5, gain1 = now[5] - soc[5], now[1] - soc[1]
        assert gain5 > 0.05  # 240 kW into 282 kWh for ~500 s
        assert 0 < gain1 < gain5 / 3


async def test_sim_control_over_mqtt(broker_url: str, station_id: str) -> None:
    async with running_sim(broker_url, station_id) as (sim, probe):
        publish = probe.bus.publish
        topic = probe.topics.sim_control
        await publish(topic, SimControl(op="estop", args={"pressed": True}))
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).estop_pressed)
        await publish(topic, SimControl(op="estop", args={"pressed": False}))
        await publish(topic, SimControl(op="light_curtain", args={"broken": True}))
        await probe.wait_for(lambda: state(probe, "safety", SafetyState).light_curtain_broken)
        await publish(topic, SimControl(op="light_curtain", args={"broken": False}))
        await publish(topic, SimControl(op="arrive", args={"count": 2}))
        await probe.wait_for(lambda: truck_stopped(probe))
        assert state(probe, "bay", BayState).queue_length == 1
        await publish(topic, SimControl(op="inject", args={"spec": "door.open:fail"}))
        await probe.wait_for(lambda: len(sim.faults.armed) == 1, 5)
        failed = await probe.command("door", "open")
        assert failed.error_code == "injected_fault"
        await publish(topic, SimControl(op="inject", args={"spec": "door.open:fail:always"}))
        await publish(topic, SimControl(op="clear_faults"))
        await probe.wait_for(lambda: not sim.faults.armed and len(sim.faults.fired) == 1, 5)
        bad = [
            b"{nope",
            b'{"op": "teleport"}',
            b'{"op": "estop", "args": {"pressed": "yes"}}',
            b'{"op": "arrive", "args": {"count": 0}}',
            b'{"op": "inject", "args": {"spec": "arm.fly:fail"}}',
            b'{"op": "disconnect", "args": {"device": "toaster"}}',
        ]
        for payload in bad:
            await publish(topic, payload)
        await probe.wait_for(lambda: len(probe.errors) == len(bad))
        assert {e.source for e in probe.errors} == {"simulator"}
        assert "arm.fly:fail" in probe.errors[4].error
        assert not sim.world.estop_pressed and len(sim.world.queue) == 1


async def test_a_retained_driver_command_is_never_carried_out(
    broker_url: str, station_id: str
) -> None:
    """A command left retained on a driver's ``cmd`` topic (published while the driver was
    down, or by mistake) is stale: the driver ignores it with an error event, moves nothing
    and answers nothing; a live command afterwards works."""
    cfg = load_config().with_overrides(station_id=station_id, time_scale=SCALE)
    async with DriverProbe(broker_url, station_id) as probe:
        topic = probe.topics.driver_cmd("arm")
        stale = b'{"id": "stale-1", "action": "move", "args": {"target": "slot", "slot": 8}}'
        await probe.bus.publish(topic, stale, retain=True)
        try:
            async with Simulator(cfg, url=broker_url, clock=Clock(cfg.time_scale)) as sim:
                await probe.wait_for(lambda: any(e.topic == topic for e in probe.errors))
                error = next(e for e in probe.errors if e.topic == topic)
                assert "retained command ignored" in error.error
                assert error.source == "arm"
                await ok(probe, "arm", "move", {"target": "slot", "slot": 3})  # positive control
                assert "stale-1" not in probe.results  # the stale command was never answered
                assert sim.world.arm_m != sim.world.home_m
        finally:
            await probe.bus.publish(topic, b"", retain=True)
