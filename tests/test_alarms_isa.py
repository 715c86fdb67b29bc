"""Alarms as process-plant operators expect them (ISA-18.2 / IEC 62682): acknowledge, shelve for
a time with a reason (hidden, listed apart, back by itself), unshelve, return to normal before
acknowledgement, and the alarm history by time range, over MQTT and from the database file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.bus import Bus
from controller.clock import Clock
from controller.console import OperatorClient
from controller.contract import AlarmInfo, Severity
from controller.contract.results import AlarmHistory
from controller.station.alarms import AlarmBook, alarm_history
from controller.store import Store
from tests.brokers import Mosquitto
from tests.harness import StationUnderTest, running_station, station_config
from tests.test_cli_operator import at as cli_at
from tests.test_cli_operator import swapctl
from tests.waits import until

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def operator(url: str, station_id: str, user: str) -> AsyncIterator[OperatorClient]:
    """An operator logged in as ``user``: the controller records the name with what it does."""
    bus = Bus(url, client_id=f"{station_id}-{user}", username=user)
    op = OperatorClient(bus, station_id, username=user)
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


async def _abort_alarm(st: StationUnderTest) -> AlarmInfo:
    """An alarm to work with: an operator's abort from idle raises ``aborted``."""
    assert (await st.command("abort")).ok
    await until(st.controller.station.alarms.active, "the aborted alarm")
    [alarm] = st.controller.station.alarms.active()
    assert alarm.code == "aborted"
    return alarm


def _shown(st: StationUnderTest) -> tuple[list[str], list[str]]:
    """The published alarm list: (annunciated ids, shelved ids)."""
    alarms = st.operator.alarms
    if alarms is None:
        return [], []
    return [a.id for a in alarms.alarms], [a.id for a in alarms.shelved]


async def test_a_shelved_alarm_is_hidden_then_comes_back_by_itself(
    mosquitto: Mosquitto, station_id: str
) -> None:
    # 4 station minutes are 12 real seconds at 20x: long enough to see it shelved on a loaded
    # machine, short enough to wait for its return
    cfg = station_config(station_id, time_scale=20)
    async with running_station(mosquitto.url, cfg, start=False) as st:
        alarm = await _abort_alarm(st)
        async with operator(mosquitto.url, station_id, "li-wei") as op:
            reply = await op.command(
                "shelve", {"alarm_id": alarm.id, "minutes": 4, "reason": "known, fixing it"}
            )
        assert reply is not None and reply.ok, reply
        await until(lambda: _shown(st) == ([], [alarm.id]), "shelved: listed apart, not shown")
        assert st.operator.alarms is not None
        [shelved] = st.operator.alarms.shelved
        assert (shelved.shelved_by, shelved.shelve_reason) == ("li-wei", "known, fixing it")
        assert shelved.shelved_until is not None
        assert shelved.shelved_until - st.clock.now() <= timedelta(minutes=4)
        await until(
            lambda: st.operator.status is not None and st.operator.status.active_alarms == 0,
            "the status counts no annunciated alarm",
        )
        await until(lambda: _shown(st) == ([alarm.id], []), "back by itself", timeout_s=60)
        assert st.clock.now() >= shelved.shelved_until
        [record] = alarm_history(
            st.controller.store, alarm.raised_at, st.clock.now(), limit=10
        ).alarms
        [shelf] = record.shelves
        assert (shelf.shelved_by, shelf.reason, shelf.unshelved_by) == (
            "li-wei",
            "known, fixing it",
            None,  # the shelf time ended, nobody unshelved it
        )
        assert shelf.unshelved_at is not None and shelf.unshelved_at >= shelf.until


async def test_unshelve_and_the_refusals_of_shelve(mosquitto: Mosquitto, station_id: str) -> None:
    cfg = station_config(station_id, time_scale=20)
    async with running_station(mosquitto.url, cfg, start=False) as st:
        alarm = await _abort_alarm(st)
        refused = [
            ({"alarm_id": "A-nope", "minutes": 5, "reason": "test"}, "no alarm 'A-nope' on the"),
            ({"alarm_id": alarm.id, "minutes": 0, "reason": "test"}, "argument 'minutes'"),
            ({"alarm_id": alarm.id, "minutes": 721, "reason": "test"}, "argument 'minutes'"),
            ({"alarm_id": alarm.id, "minutes": "5", "reason": "test"}, "argument 'minutes'"),
            ({"alarm_id": alarm.id, "minutes": 5}, "missing argument 'reason'"),
        ]
        for args, named in refused:
            reply = await st.command("shelve", **args)
            assert not reply.ok and named in (reply.error or ""), (args, reply.error)
        assert st.controller.station.alarms.shelved() == []  # a refusal changes nothing
        async with operator(mosquitto.url, station_id, "wang-fang") as op:
            args = {"alarm_id": alarm.id, "minutes": 60, "reason": "sensor under repair"}
            assert (r := await op.command("shelve", args)) is not None and r.ok, r
            await until(lambda: _shown(st) == ([], [alarm.id]), "shelved")
            assert (r := await op.command("unshelve", {"alarm_id": alarm.id})) is not None and r.ok
            await until(lambda: _shown(st) == ([alarm.id], []), "unshelved: shown again")
            r = await op.command("unshelve", {"alarm_id": alarm.id})
            assert r is not None and not r.ok and "no shelved alarm" in (r.error or "")
        [record] = alarm_history(
            st.controller.store, alarm.raised_at, st.clock.now(), limit=10
        ).alarms
        [shelf] = record.shelves
        assert (shelf.shelved_by, shelf.unshelved_by) == ("wang-fang", "wang-fang")
        assert shelf.unshelved_at is not None and shelf.unshelved_at < shelf.until


async def test_an_alarm_that_returns_to_normal_stays_until_acknowledged(
    mosquitto: Mosquitto, station_id: str
) -> None:
    cfg = station_config(station_id)
    async with running_station(mosquitto.url, cfg, start=False) as st:
        station = st.controller.station

        def offline() -> list[AlarmInfo]:
            return [a for a in station.alarms.listed() if a.code == "driver_offline"]

        await st.sim.disconnect("door")
        await until(offline, "a driver_offline alarm")
        [alarm] = offline()
        await st.sim.reconnect("door")
        await until(lambda: not offline()[0].active, "returned to normal")
        [rtn] = offline()
        assert not rtn.acknowledged and rtn.cleared_at is not None  # RTN unacknowledged
        await until(lambda: _shown(st) == ([alarm.id], []), "still on the published list")
        assert st.operator.alarms is not None and not st.operator.alarms.alarms[0].active
        assert (await st.command("ack", alarm_id=alarm.id)).ok
        await until(lambda: _shown(st) == ([], []), "acknowledged: off the list")
        [record] = [r for r in station.store.alarm_history() if r.info.id == alarm.id]
        assert record.cleared_at is not None and record.acknowledged_at is not None
        # acknowledged while active, it leaves the list as soon as its condition is gone
        await st.sim.disconnect("door")
        await until(lambda: any(a.active for a in offline()), "offline again: a new alarm")
        [again] = offline()
        assert again.id != alarm.id
        assert (await st.command("ack", alarm_id=again.id)).ok
        await st.sim.reconnect("door")
        await until(lambda: not offline(), "acknowledged and back to normal: off the list")


async def test_alarm_history_by_time_range_over_mqtt_and_from_the_database(
    mosquitto: Mosquitto, station_id: str, tmp_path: Path
) -> None:
    db = tmp_path / "station.db"
    cfg = station_config(station_id, database=str(db))
    async with running_station(mosquitto.url, cfg, start=False) as st:
        before = st.clock.now()
        alarm = await _abort_alarm(st)
        async with operator(mosquitto.url, station_id, "li-wei") as op:
            # 600 station minutes: 3 real minutes at 200x, so the shelf outlasts the test
            args = {"alarm_id": alarm.id, "minutes": 600, "reason": "looking into it"}
            assert (r := await op.command("shelve", args)) is not None and r.ok
            assert (r := await op.command("ack", {"alarm_id": alarm.id})) is not None and r.ok
            reply = await op.command("alarm_history", {"since": before.isoformat()})
            assert reply is not None and reply.ok, reply
            history = AlarmHistory.model_validate(reply.result)
            [o] = history.alarms
            assert o.alarm.id == alarm.id and o.acknowledged_by == "li-wei"
            assert [(s.shelved_by, s.reason) for s in o.shelves] == [("li-wei", "looking into it")]
            assert not history.truncated and history.since == before
            # a range that ends before the alarm was raised holds nothing
            early = {
                "since": (before - timedelta(hours=2)).isoformat(),
                "until": before.isoformat(),
            }
            reply = await op.command("alarm_history", early)
            assert reply is not None and reply.ok
            assert AlarmHistory.model_validate(reply.result).alarms == []
            reply = await op.command("alarm_history", {"since": "yesterday"})
            assert reply is not None and not reply.ok and "argument 'since'" in (reply.error or "")
        where = cli_at(mosquitto.url, station_id)
        since = before.isoformat()
        code, out, err = await swapctl("alarms", "--history", "--since", since, "--json", *where)
        assert code == 0, err
        [mqtt] = json.loads(out)["alarms"]
        code, out, err = await swapctl("alarms", "--history", "--since", since, "--db", str(db))
        assert code == 0, err
        assert (
            alarm.id in out and "acked" in out and "by li-wei" in out and "looking into it" in out
        )
        code, out, err = await swapctl("alarms", "--db", str(db), "--since", since, "--json")
        assert code == 0, err
        [from_file] = json.loads(out)["alarms"]
        assert from_file == mqtt
    code, _, err = await swapctl("alarms", "--history", "--since", "soon", "--db", str(db))
    assert code == 2 and "since" in err, err
    code, _, err = await swapctl("alarms", "--history", "--since", since, "--db", "/nope.db")
    assert code == 2 and "/nope.db" in err, err


# ---- the book and the journal, without a broker -----------------------------------------
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_history_range_holds_what_was_on_the_list_then() -> None:
    with Store.open(None) as store:
        for n, raised in ((1, 0), (2, 100), (3, 300)):
            store.raise_alarm(
                AlarmInfo(id=f"A{n:05d}", code="aborted", severity=Severity.error,
                          text=f"alarm {n}", raised_at=_at(raised))
            )  # fmt: skip
        store.clear_alarm("A00001", _at(5))
        store.ack_alarm("A00001", "li-wei", _at(10))  # off the list from t=10
        store.clear_alarm("A00002", _at(150))  # returned to normal, never acknowledged

        def ids(since: float, until: float) -> list[str]:
            return [o.alarm.id for o in store.alarm_occurrences(_at(since), _at(until))]

        assert ids(0, 50) == ["A00001"]
        assert ids(11, 299) == ["A00002"]  # A00001 was off the list; A00003 not raised yet
        assert ids(11, 301) == ["A00002", "A00003"]
        assert ids(200, 400) == ["A00002", "A00003"]  # RTN unacknowledged: still listed
        [first] = store.alarm_occurrences(_at(0), _at(50))
        assert (first.acknowledged_by, first.cleared_at) == ("li-wei", _at(5))


def test_a_shelf_outlives_a_restart_and_acknowledging_a_returned_alarm_ends_it() -> None:
    with Store.open(None) as store:
        clock = Clock()
        book = AlarmBook(clock, lambda a: None, journal=store, on_change=lambda: None)
        shelved = book.raise_("aborted", "aborted by operator")
        rtn = book.raise_("driver_offline", "door driver offline", {"device": "door"})
        assert book.shelve(shelved.id, 30, "known", by="li-wei") is None
        assert book.shelve("A99999", 30, "known", by="li-wei") is not None
        book.clear_where("driver_offline", lambda a: True)
        assert [a.id for a in book.listed()] == [shelved.id, rtn.id]  # RTN: still listed
        assert [a.id for a in book.active()] == [shelved.id]
        # a restart: the list comes back from the journal, shelf and RTN state included
        again = AlarmBook(clock, lambda a: None, journal=store, on_change=lambda: None)
        again.load(store.active_alarms(include_unacknowledged=True), rtn.id)
        assert [a.id for a in again.shelved()] == [shelved.id]
        assert again.shelved()[0].shelved_by == "li-wei"
        [back] = [a for a in again.annunciated() if a.id == rtn.id]
        assert not back.active and back.cleared_at is not None
        assert again.acknowledge(rtn.id, by="wang-fang")
        assert rtn.id not in again.alarms  # returned to normal and acknowledged: normal
        assert not again.acknowledge(rtn.id, by="wang-fang")


async def test_the_console_shows_shelved_alarms_apart_and_reconcile_s_preview(
    mosquitto: Mosquitto, station_id: str
) -> None:
    from tests.test_console import console, press, ready_to_type, wait_screen

    cfg = station_config(station_id, time_scale=20)
    async with (
        running_station(mosquitto.url, cfg, start=False) as st,
        console(cfg, mosquitto.url, username="li-wei") as (app, pilot),
    ):
        alarm = await _abort_alarm(st)
        await wait_screen(pilot, lambda s: f"{alarm.id} aborted" in s)
        assert (await st.command("shelve", alarm_id=alarm.id, minutes=60, reason="checking")).ok
        # apart, dimmed, with its time, who (no broker user here: -) and why
        await wait_screen(
            pilot, lambda s: "SHELVED" in s and f"{alarm.id} aborted" in s and "(by -:" in s
        )
        # Y: reconcile; an empty answer asks for the preview, whose lines go to the log
        await press(pilot, "Y")
        await wait_screen(pilot, lambda s: "adopt: all" in s and ready_to_type(app))
        await press(pilot, "enter")
        await wait_screen(pilot, lambda s: "Send reconcile?" in s)
        await press(pilot, "y")
        await wait_screen(pilot, lambda s: "nothing to reconcile" in s)


def test_a_database_of_schema_1_is_migrated_and_keeps_its_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A station's database outlives software versions: one written before shelving existed
    gains the shelf columns and table, and its alarms read and shelve as any other."""
    from controller.store import db
    from controller.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    alarm = AlarmInfo(id="A00003", code="aborted", severity=Severity.error, text="old",
                      raised_at=_at(0))  # fmt: skip
    with monkeypatch.context() as old_software:
        old_software.setattr(db, "MIGRATIONS", MIGRATIONS[:1])
        old_software.setattr(db, "SCHEMA_VERSION", 1)
        with Store.open(path) as store:
            assert store.schema_version() == 1
            store.raise_alarm(alarm)
    with Store.open(path) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert store.active_alarms() == [alarm]
        assert store.shelve_alarm(alarm.id, _at(600), "li-wei", "after the upgrade", _at(1))
        [o] = store.alarm_occurrences(_at(0), _at(10))
        assert [(s.shelved_by, s.until) for s in o.shelves] == [("li-wei", _at(600))]
        assert o.alarm.shelved_until == _at(600)
