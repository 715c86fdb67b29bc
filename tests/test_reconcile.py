"""``reconcile``: the documented way out when the journal contradicts the sensors (issue #10).

The restart story end to end on Mosquitto (a fresh simulated world against an old journal:
alarm, preview, confirmed reconcile journaled with who did it, consistent, alarm gone after
ack, a truck swapped), the cases reconcile must not decide by itself (ambiguous, nowhere, a
place still taken) on a real ledger and journal, and its refusal while a swap runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.bus import Bus
from controller.cli.demo import compare_with_world
from controller.clock import Clock
from controller.console import OperatorClient
from controller.contract import ArmState, Mode, PackInfo, RackSlotState, RackState, VehicleState
from controller.contract.results import ReconcileReport
from controller.inventory import PackLedger
from controller.station import reconcile
from controller.station.alarms import AlarmBook
from controller.store import Store
from tests.brokers import Mosquitto
from tests.harness import running_station, station_config
from tests.waits import until

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def operator(url: str, station_id: str, user: str) -> AsyncIterator[OperatorClient]:
    """An operator logged in as ``user`` (the test broker lets any name in): its commands go
    to ``cmd/<user>``, so the controller records who sent them."""
    op = OperatorClient(Bus(url, client_id=f"{station_id}-{user}", username=user), station_id,
                        username=user)  # fmt: skip
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


async def test_a_fresh_world_against_an_old_journal_is_reconciled_by_an_operator(
    mosquitto: Mosquitto, station_id: str, tmp_path: Path
) -> None:
    url = mosquitto.url
    cfg = station_config(station_id, database=str(tmp_path / "station.db"))
    async with running_station(url, cfg) as st:
        await st.sim.arrive(1)
        assert (await st.next_swap(30)).result == "completed"
        await st.wait_world_settled()
    async with running_station(url, cfg, start=False) as st:  # a fresh world, the old journal
        station, ledger = st.controller.station, st.controller.ledger
        await until(
            lambda: st.operator.inventory is not None and not st.operator.inventory.consistent,
            "the inventory says it is not consistent",
        )
        [alarm] = [a for a in station.alarms.active() if a.code == "inventory_mismatch"]
        assert "swapctl reconcile" in alarm.hint and "ack (this alarm)" in alarm.hint
        world = dict(st.sim.world.locations)
        before = dict(ledger.locations)
        async with operator(url, station_id, "li-wei") as op:
            reply = await op.command("reconcile", {}, timeout_s=5)
            assert reply is not None and reply.ok, reply
            preview = ReconcileReport.model_validate(reply.result)
            assert not preview.applied and preview.consistent_after
            assert ledger.locations == before  # a preview changes nothing
            # every pack where the two disagree, journal place -> the sensors' (the world's)
            changed = {c.pack_id: c for c in preview.changes}
            departed = {p for p, loc in before.items() if loc.startswith("departed:")}
            disagree = {
                p
                for p in before.keys() | world.keys()
                if before.get(p) != world.get(p) and not (p in departed and p not in world)
            }
            assert set(changed) == disagree and disagree, (changed, before, world)
            for c in preview.changes:
                assert c.ledger == before.get(c.pack_id)
                assert c.to == world.get(c.pack_id, reconcile.GONE), c
            assert any(c.action == "gone" for c in preview.changes)  # the truck's old pack
            reply = await op.command("reconcile", {"adopt": "all"}, timeout_s=5)
            assert reply is not None and reply.ok, reply
            done = ReconcileReport.model_validate(reply.result)
        assert done.applied and done.by == "li-wei" and done.consistent_after
        assert done.changes == preview.changes
        for c in done.changes:  # journaled, with who did it
            [last] = station.store.location_history(c.pack_id, 1)
            assert (last.location, last.previous) == (c.to, c.ledger)
            assert last.reason.startswith("reconcile by li-wei"), last.reason
        assert compare_with_world(st.controller, world) == []
        await until(
            lambda: st.operator.inventory is not None and st.operator.inventory.consistent,
            "the inventory republished as consistent",
        )
        # the alarm returned to normal, unacknowledged: listed until an operator acks it
        listed = station.alarms.alarms[alarm.id]
        assert not listed.active and not listed.acknowledged and listed.cleared_at is not None
        assert (await st.command("ack", alarm_id=alarm.id)).ok
        assert alarm.id not in station.alarms.alarms
        reply = await st.command("start")
        assert reply.ok, reply.error
        await st.sim.arrive(1)
        record = await st.next_swap(30)
        assert record.result == "completed", record


def _pack(pack_id: str) -> PackInfo:
    return PackInfo(id=pack_id, type="HT-282", soc=0.95, capacity_kwh=282)


def _rack(packs: dict[int, str]) -> RackState:
    return RackState(
        slots=[
            RackSlotState(slot=n, pack=_pack(packs[n]) if n in packs else None, charger_kw=240)
            for n in range(1, 9)
        ]
    )


def test_ambiguous_nowhere_and_taken_places_are_left_and_named() -> None:
    """On a real ledger and journal: what reconcile adopts, writes off and leaves alone."""
    cfg = station_config("reconcile-unit")
    clock = Clock()
    with Store.open(None) as store:
        ledger = PackLedger(cfg.rack, journal=store, clock=clock)
        journal_says = {
            "P-A": "slot:1",  # sensors: slot 2 (moved while we were away) -> adopt
            "P-B": "slot:3",  # sensors: slots 4 and 5 (a duplicated id) -> ambiguous, left
            "P-C": "slot:6",  # sensors: nowhere -> gone from the station
            "P-D": "unknown",  # sensors: nowhere -> never written off: left
            "P-E": "slot:7",  # sensors: the gripper -> adopt
        }
        store.seed_packs(journal_says, clock.now())
        # P-F, unknown to the journal, sits in slot 3: the place P-B still holds -> left
        sensors = (
            _rack({2: "P-A", 4: "P-B", 5: "P-B", 3: "P-F"}),
            ArmState(position="home", holding=_pack("P-E")),
            VehicleState(connected=False),
        )
        ledger.seed(*sensors)
        by_pack = {c.pack_id: c for c in reconcile.plan(ledger, sensors)}
        assert (by_pack["P-A"].action, by_pack["P-A"].to) == ("adopt", "slot:2")
        assert (by_pack["P-E"].action, by_pack["P-E"].to) == ("adopt", "gripper")
        assert (by_pack["P-C"].action, by_pack["P-C"].to) == ("gone", reconcile.GONE)
        assert by_pack["P-B"].action == "left" and "2 places" in by_pack["P-B"].why
        assert by_pack["P-D"].action == "left" and "set_location" in by_pack["P-D"].why
        assert (
            by_pack["P-F"].action == "left" and "slot:3 would still hold P-B" in by_pack["P-F"].why
        )
        # only the chosen packs: another pack's change is left, named as not chosen
        chosen = reconcile.plan(ledger, sensors, frozenset({"P-A"}))
        assert [c.pack_id for c in chosen if c.action != "left"] == ["P-A"]

        raised: list[str] = []
        alarms = AlarmBook(clock, lambda a: raised.append(a.id), journal=store,
                           on_change=lambda: None)  # fmt: skip
        mismatch = alarms.raise_("inventory_mismatch", "journal and sensors disagree")
        republished: list[None] = []
        done = reconcile.apply(ledger, sensors, alarms, by="li-wei", chosen=None,
                               inventory_changed=lambda: republished.append(None))  # fmt: skip
        assert done.applied and not done.consistent_after and republished
        assert store.pack_locations() == {
            "P-A": "slot:2", "P-B": "slot:3", "P-C": reconcile.GONE, "P-D": "unknown",
            "P-E": "gripper",
        }  # fmt: skip
        [gone] = store.location_history("P-C", 1)
        assert gone.reason == (
            "reconcile by li-wei: the sensors see it nowhere and it is not on the truck in the bay"
        )
        # disagreements remain (P-B, P-F): the alarm's condition holds, it stays active
        assert [a.id for a in alarms.active()] == [mismatch.id]


async def test_reconcile_is_refused_while_a_swap_runs_and_without_sensors(
    mosquitto: Mosquitto, station_id: str
) -> None:
    cfg = station_config(station_id, time_scale=50)
    async with running_station(mosquitto.url, cfg) as st:
        station = st.controller.station
        await st.sim.arrive(1)
        await st.wait_phase("remove")
        reply = await st.command("reconcile", adopt="all")
        assert not reply.ok and "not valid in mode execute" in reply.error, reply.error
        assert (await st.command("hold")).ok
        await st.wait_mode(Mode.held)
        reply = await st.command("reconcile")
        assert not reply.ok and "not valid in mode held" in reply.error, reply.error
        assert (await st.command("resume")).ok
        assert (await st.next_swap(60)).result == "completed"
        assert (await st.command("stop")).ok
        await st.wait_world_settled()
        # at rest, but the arm's driver is away: its sensors are not believed
        await st.sim.disconnect("arm")
        await until(lambda: st.controller.devices["arm"].online is False, "the arm offline")
        reply = await st.command("reconcile")
        assert not reply.ok and "not online or not reported: arm" in reply.error, reply.error
        await st.sim.reconnect("arm")
        await until(lambda: st.controller.devices["arm"].online is True, "the arm back")
        reply = await st.command("reconcile")
        assert reply.ok and ReconcileReport.model_validate(reply.result).changes == []
        assert station.mode is Mode.idle
