"""Finishing a cut-short swap by hand: maintenance commands behind the same interlocks."""

from __future__ import annotations

import asyncio

import pytest

from controller.cli.demo import compare_with_world
from controller.contract import Mode
from tests.brokers import Mosquitto
from tests.harness import StationUnderTest, running_station, station_config
from tests.waits import until

pytestmark = pytest.mark.timeout(90)


async def manual(st: StationUnderTest, device: str, action: str, **args: object) -> None:
    reply = await st.command("manual", device=device, action=action, args=args)
    assert reply.ok, f"{device}.{action}: {reply.error}"


async def test_operator_finishes_an_estopped_swap_by_hand(
    embedded_broker: object, station_id: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, time_scale=100)
    async with running_station(url, cfg) as st:
        station = st.controller.station
        await st.sim.arrive(1)
        await st.wait_phase("stow")  # the depleted pack is in the gripper
        assert (await st.command("estop")).ok
        await st.wait_mode(Mode.estopped)
        out_pack = station.ledger.at("gripper")
        assert out_pack is not None

        # manual moves are refused outside maintenance
        reply = await st.command("manual", device="arm", action="move", args={"target": "home"})
        assert not reply.ok and "maintenance" in reply.error
        assert (await st.command("clear")).ok
        assert (await st.command("maintenance")).ok

        # the same interlocks hold in maintenance: no arm to the vehicle unless it is secured
        # and its HV is off, which it is here; the door must be open (it is, since prepare)
        reply = await st.command("manual", device="bay", action="release")
        assert not reply.ok and "pack locks open" in reply.error

        # stow the depleted pack, fetch a charged one, put it in the truck, release it
        free = station.ledger.choose_free("HT-282")
        charged = station.ledger.choose_charged("HT-282", exclude={free} if free else None)
        assert free is not None and charged is not None
        await manual(st, "arm", "move", target="slot", slot=free)
        await manual(st, "arm", "lower")
        assert station.ledger.locations[out_pack] == f"slot:{free}"
        await manual(st, "rack", "dock", slot=free)
        await manual(st, "rack", "undock", slot=charged)
        await manual(st, "arm", "move", target="slot", slot=charged)
        await manual(st, "arm", "lift")
        in_pack = station.ledger.at("gripper")
        await manual(st, "arm", "move", target="vehicle")
        await manual(st, "arm", "lower")
        vehicle_id = st.controller.devices.vehicle.vehicle_id  # type: ignore[union-attr]
        assert station.ledger.locations[in_pack] == f"vehicle:{vehicle_id}"  # type: ignore[index]
        await manual(st, "bay", "lock")
        await manual(st, "vehicle", "hv_on")
        await manual(st, "arm", "move", target="home")
        await manual(st, "door", "close")
        await manual(st, "bay", "release")
        # every hand move went through the journal: ledger and world agree
        await st.sim.flush()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []

        assert (await st.command("leave_maintenance")).ok
        assert (await st.command("reset")).ok
        assert station.mode is Mode.idle
        # the truck drives out with the new pack; the ledger records it as departed
        ok = await st.controller.devices.wait_until(
            lambda: (bay := st.controller.devices.bay) is not None and bay.vehicle is None, 10
        )
        assert ok


async def test_set_location_records_an_operators_finding(
    embedded_broker: object, station_id: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, time_scale=100)
    async with running_station(url, cfg, start=False) as st:
        station = st.controller.station
        pack = station.ledger.at("slot:1")
        assert pack is not None
        reply = await st.command("set_location", pack_id=pack, location="unknown")
        assert not reply.ok and "maintenance" in reply.error
        assert (await st.command("maintenance")).ok
        assert (await st.command("set_location", pack_id=pack, location="unknown")).ok
        # with a pack unknown the station will not start
        assert (await st.command("leave_maintenance")).ok
        assert (await st.command("reset")).ok
        reply = await st.command("start")
        assert not reply.ok and "unknown" in reply.error
        # the operator inspects and records it back; a place that is taken is refused
        assert (await st.command("maintenance")).ok
        reply = await st.command("set_location", pack_id=pack, location="slot:2")
        assert not reply.ok and "already holds" in reply.error
        assert (await st.command("set_location", pack_id=pack, location="slot:1")).ok
        assert (await st.command("leave_maintenance")).ok
        assert (await st.command("reset")).ok
        assert (await st.command("start")).ok
        await asyncio.sleep(0)
        # the journal remembers who said what: it is in the store's location history
        history = station.store.location_history(pack)
        assert any("operator" in (h.reason or "") for h in history)


async def _arm_over_a_pack(st: StationUnderTest) -> tuple[str, int]:
    """Maintenance, the arm at the first full slot, undocked: (the pack there, a free slot)."""
    assert (await st.command("maintenance")).ok
    ledger = st.controller.station.ledger
    slot = next(s for s in range(1, 13) if ledger.at(f"slot:{s}"))
    free = next(s for s in range(1, 13) if not ledger.at(f"slot:{s}"))
    await manual(st, "rack", "undock", slot=slot)
    await manual(st, "arm", "move", target="slot", slot=slot)
    return ledger.at(f"slot:{slot}") or "", free


@pytest.mark.parametrize(
    ("action", "kind", "expected"),
    [
        ("lift", "disconnect", "unknown"),  # lifted, but the arm that would say so is offline
        ("lower", "disconnect", "slot"),  # the rack reports the pack set down
        ("lower", "hang", "gripper"),  # nothing moved; the arm was told to stop
    ],
)
async def test_a_manual_move_that_never_ends_leaves_the_pack_where_the_sensors_say(
    mosquitto: Mosquitto, station_id: str, action: str, kind: str, expected: str
) -> None:
    """The stateful test once ended with the ledger and the world disagreeing after a manual
    move under a hang or disconnect fault: the ledger now takes the sensors' word (an offline
    driver's last report is not one), or ``unknown`` with an alarm, and never the intent."""
    cfg = station_config(station_id, time_scale=100)
    async with running_station(mosquitto.url, cfg, start=False) as st:
        ledger = st.controller.station.ledger
        pack, free = await _arm_over_a_pack(st)
        if action == "lower":
            await manual(st, "arm", "lift")
            await manual(st, "arm", "move", target="slot", slot=free)
        st.sim.inject(f"arm.{action}:{kind}")
        reply = await st.command("manual", device="arm", action=action)
        assert not reply.ok and "no result" in reply.error
        where = {"unknown": "unknown", "slot": f"slot:{free}", "gripper": "gripper"}[expected]
        assert ledger.locations[pack] == where
        alarms = [a.code for a in st.controller.station.alarms.active()]
        assert ("pack_location_unknown" in alarms) == (where == "unknown")
        if where != "unknown":
            await st.sim.flush()
            assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
        # back online, the next arm action reads the sensors again: the pack is found
        await st.sim.reconnect("arm")
        devices = st.controller.devices
        assert await devices.wait_until(lambda: not devices.offline(), 5)
        await until(st.controller_heard_every_driver, "the arm's state republished on reconnect")
        await manual(st, "arm", "stop")
        await st.sim.flush()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
        journaled = st.controller.station.store.location_history(pack)[0]  # newest first
        assert journaled.location == ledger.locations[pack]


async def test_a_manual_lower_on_a_stale_arm_position_follows_the_sensors(
    mosquitto: Mosquitto, station_id: str
) -> None:
    """The place a manual lower acts on comes from the arm's last report; a driver that just
    came back may not have republished it yet. The journal then names the wrong slot as the
    intent, and the sensors correct it (the stateful test's 'controller slot:7, world slot:1')."""
    cfg = station_config(station_id, time_scale=100)
    async with running_station(mosquitto.url, cfg, start=False) as st:
        ledger = st.controller.station.ledger
        pack, free = await _arm_over_a_pack(st)
        await manual(st, "arm", "lift")
        await manual(st, "arm", "move", target="slot", slot=free)
        stale = next(s for s in range(free + 1, 13) if not ledger.at(f"slot:{s}"))
        proxy = st.controller.devices["arm"]
        assert proxy.state is not None
        proxy.state = proxy.state.model_copy(update={"position": f"slot:{stale}"})
        await manual(st, "arm", "lower")
        assert ledger.locations[pack] == f"slot:{free}"
        await st.sim.flush()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
        newest = st.controller.station.store.location_history(pack)[0]
        assert newest.location == f"slot:{free}" and "manual arm.lower" in newest.reason
