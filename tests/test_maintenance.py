"""Finishing a cut-short swap by hand: maintenance commands behind the same interlocks."""

from __future__ import annotations

import asyncio

import pytest

from controller.cli.demo import compare_with_world
from controller.contract import Mode
from tests.harness import StationUnderTest, running_station, station_config

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
