"""Losing the broker, and restarting the controller: nothing unsafe, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import pytest

from controller.app import Controller
from controller.cli.demo import compare_with_world
from controller.contract import AlarmRaised, Mode
from tests.brokers import Mosquitto
from tests.harness import running_station, station_config

pytestmark = pytest.mark.timeout(90)


async def test_broker_killed_mid_swap_holds_then_operator_resumes(station_id: str) -> None:
    broker = Mosquitto()
    broker.start()
    try:
        cfg = station_config(station_id, time_scale=50)
        async with running_station(broker.url, cfg) as st:
            await st.sim.arrive(1)
            await st.wait_phase("stow")
            broker.kill()
            # the controller notices, holds the swap and sends nothing more
            await st.wait_mode(Mode.held)
            assert st.controller.station.reason == "broker connection lost"
            sent_while_away = st.controller.station.sent_total
            await asyncio.sleep(1.0)  # measures: nothing sent in 50 station s without a broker
            assert st.controller.station.sent_total == sent_while_away
            broker.start()
            await st.controller.bus.wait_connected(15)
            assert await st.controller.devices.wait_until(
                lambda: not st.controller.devices.offline(), 15
            )
            await st.operator.bus.wait_connected(15)
            # held, and it stays held until the operator says so
            await asyncio.sleep(0.5)  # measures: no mode change meanwhile
            assert st.controller.station.mode is Mode.held
            reply = await st.command("resume")
            assert reply.ok, reply.error
            record = await st.next_swap(60)
            assert record.result == "completed", record.reason
            assert record.held_s > 0
            # nothing was commanded twice: each (device, action) count is what one swap needs
            counts = Counter((d, a) for _, d, a in st.controller.station.sent)
            assert counts[("arm", "lift")] == 2 and counts[("arm", "lower")] == 2
            assert counts[("bay", "secure")] == 1 and counts[("bay", "release")] == 1
            await st.sim.flush()
            assert await st.controller.devices.wait_until(
                lambda: (bay := st.controller.devices.bay) is not None and bay.vehicle is None, 15
            )
            assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
    finally:
        broker.cleanup()


async def test_restart_mid_swap_comes_up_aborted_with_recovery_alarm(
    embedded_broker: object, station_id: str, tmp_path: object
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    db = str(tmp_path / "station.sqlite3")  # type: ignore[operator]
    cfg = station_config(station_id, database=db)
    async with running_station(url, cfg) as st:
        await st.sim.arrive(1)
        await st.wait_phase("stow")
        # the controller dies (no orderly abort): stop its tasks and connection, keep the sim
        await st.controller.station.shutdown()
        await st.controller.bus.kill()
        st.controller.store.close()
        sent_before = st.controller.station.sent_total
        # a new controller process on the same journal
        second = Controller(cfg, url=url, clock=st.clock, client_id=f"ctl2-{station_id}")
        await second.start()
        try:
            await second.wait_ready(10)
            assert second.station.mode is Mode.aborted
            alarms = [a for a in second.station.alarms.active() if a.code == "recovery_needed"]
            assert alarms, second.station.alarms.active()
            assert "was in flight" in alarms[0].text
            # it never moves on its own
            await asyncio.sleep(0.5)  # measures: nothing is sent meanwhile
            assert second.station.sent_total == 0
            assert st.controller.station.sent_total == sent_before
            # it refuses to start until cleared and reset
            with pytest.raises(Exception, match="not valid in mode aborted"):
                await second.commands.execute("start", {})
            # the alarm, raised before the new controller had connected, also came as an event
            raised = await st.wait_events(AlarmRaised, timeout_s=5)
            assert any(e.alarm.code == "recovery_needed" for e in raised), raised
        finally:
            await second.stop()


async def test_a_damaged_journal_comes_up_aborted_with_an_alarm(
    embedded_broker: object, station_id: str, tmp_path: object
) -> None:
    """The start-up check: a journal whose current pack locations disagree with their log (a
    torn write, a hand edit) is not trusted; the controller comes up aborted and says why."""
    url = embedded_broker.url  # type: ignore[attr-defined]
    db = str(tmp_path / "station.sqlite3")  # type: ignore[operator]
    cfg = station_config(station_id, database=db)
    async with running_station(url, cfg, start=False) as st:
        assert st.controller.station.mode is Mode.idle  # positive control: a sound journal
        await st.controller.station.shutdown()
        await st.controller.bus.kill()
        st.controller.store.close()
        with sqlite3.connect(db) as raw:  # the damage: one pack's current place edited by hand
            raw.execute("UPDATE pack_location SET location = 'slot:99' WHERE pack_id = 'P-1001'")
        second = Controller(cfg, url=url, clock=st.clock, client_id=f"ctl2-{station_id}")
        await second.start()
        try:
            assert second.station.mode is Mode.aborted
            [alarm] = [a for a in second.station.alarms.active() if a.code == "journal_damaged"]
            assert "pack P-1001: pack_location says 'slot:99'" in alarm.text
            assert alarm.severity.value == "critical"
            with pytest.raises(Exception, match="not valid in mode aborted"):
                await second.commands.execute("start", {})
        finally:
            await second.stop()
