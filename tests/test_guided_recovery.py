"""No truck stranded: a swap cut short, then the plan the station proposes, run, and trading on.

The whole loop an operator goes through after an e-stop or an abort mid-swap, on the real
station and simulated hardware: the status says the bay is not normal and proposes plans;
`start` is refused meanwhile; in maintenance `recover` runs a plan (all at once, or a step per
command); the truck leaves with a locked pack and HV on; the cut-short swap's record says how it
ended; and the next truck is swapped in budget with every pack where the simulated world has it.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.cli.demo import compare_with_world
from controller.contract import Mode
from tests.harness import StationUnderTest, far_deadlines, running_station, station_config
from tests.waits import holds_within, until

pytestmark = pytest.mark.timeout(120)


async def ok(st: StationUnderTest, cmd: str, **args: Any) -> None:
    reply = await st.command(cmd, **args)
    assert reply.ok, f"{cmd} {args}: {reply.error}"


async def cut_short(st: StationUnderTest, phase: str, how: str) -> None:
    await st.sim.arrive(1)
    await st.wait_phase(phase)
    await ok(st, how)
    await st.wait_mode(Mode.estopped if how == "estop" else Mode.aborted)
    await until(lambda: not st.controller.station.halting, "the halt to finish")
    cut = await st.next_swap(10)  # the cut-short swap's record
    assert cut.result != "completed", cut
    await st.wait_world_settled()


@pytest.mark.parametrize(
    ("phase", "how", "plan"),
    [
        ("fetch", "estop", "finish"),
        ("stow", "abort", "give_back"),
        ("insert", "estop", "give_back"),
    ],
)
async def test_a_cut_short_swap_is_recovered_with_the_proposed_plan_and_trading_goes_on(
    embedded_broker: object, station_id: str, phase: str, how: str, plan: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    # 50x, not the usual 200x: the next swap is judged against the 180 s budget, and at 200x a
    # loaded machine's stalls of a few tens of ms already cost several station seconds.
    cfg = station_config(station_id, time_scale=50, **far_deadlines())
    async with running_station(url, cfg) as st:
        station = st.controller.station
        await cut_short(st, phase, how)
        status = station.status()
        assert status.bay is not None and not status.bay.normal
        assert any("is clamped in the bay" in w for w in status.bay.not_normal)
        proposal = status.recovery
        assert proposal is not None and {p.name for p in proposal.plans} == {"finish", "give_back"}
        assert proposal.own_pack == "TP-00001"
        await ok(st, "ack", alarm_id="all")
        await ok(st, "clear")
        await ok(st, "maintenance")
        # one step at a time, as a careful operator would, then the rest at once
        await ok(st, "recover", plan=plan, steps=1)
        await ok(st, "recover", plan=plan)
        normal = await holds_within(lambda: station.bay.situation.normal, 20)
        assert normal, f"not normal after {plan}: {station.bay.situation.not_normal}"
        await st.wait_world_settled()
        [record] = [r for r in station.store.swaps(5) if r.recovery is not None]
        assert record.recovery == plan
        expected = "TP-00001" if plan == "give_back" else None
        assert record.pack_in is not None
        if expected:
            assert record.pack_in.id == expected
        else:
            assert record.pack_in.soc >= cfg.rack.swappable_soc
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
        # and trading goes on: the next truck is swapped in budget
        await ok(st, "leave_maintenance")
        await ok(st, "ack", alarm_id="all")
        await ok(st, "reset")
        active = {a.code for a in station.alarms.active()}
        assert "truck_stranded" not in active, active  # the bay is normal: the reset retired it
        await ok(st, "start")
        await st.sim.arrive(1)
        nxt = await st.next_swap(60)
        assert nxt.result == "completed" and nxt.in_budget, nxt
        await st.wait_world_settled()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []


async def test_start_is_refused_while_a_truck_is_stranded_and_says_why(
    embedded_broker: object, station_id: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, **far_deadlines())
    async with running_station(url, cfg) as st:
        await cut_short(st, "fetch", "estop")
        [stranded] = [
            a for a in st.controller.station.alarms.active() if a.code == "truck_stranded"
        ]
        assert "truck CQ-T0001 is clamped in the bay" in stranded.text
        assert "swapctl recover" in stranded.hint
        await ok(st, "ack", alarm_id="all")
        await ok(st, "clear")
        await ok(st, "reset")
        # the reset keeps it: the truck is still stranded
        assert stranded.id in {a.id for a in st.controller.station.alarms.active()}
        reply = await st.command("start")
        assert not reply.ok
        assert "not normal: truck CQ-T0001 is clamped in the bay" in reply.error
        assert "has no pack" in reply.error
        # a plan that does not exist now is refused with why
        await ok(st, "maintenance")
        refused = await st.command("recover", plan="finish", steps=1)
        assert refused.ok or "no finish plan" in (refused.error or "")


async def test_a_lying_lift_is_a_sensor_mismatch_naming_device_action_and_pack(
    embedded_broker: object, station_id: str
) -> None:
    """The arm answers done to lift without lifting: the alarm is sensor_mismatch, naming the
    arm, the lift and the pack; the truck is left stranded and a plan gets it out."""
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id, **far_deadlines())
    async with running_station(url, cfg) as st:
        st.sim.inject("arm.lift:lie")
        await st.sim.arrive(1)
        record = await st.next_swap(30)
        assert record.result == "aborted", record
        await until(lambda: not st.controller.station.halting, "the halt to finish")
        codes = {a.code: a for a in st.controller.station.alarms.active()}
        mismatch = codes["sensor_mismatch"]
        assert "arm.lift reported done" in mismatch.text and "TP-00001" in mismatch.text
        assert "The arm reported lift done" in mismatch.hint
        assert "truck_stranded" in codes
        await st.wait_world_settled()
        assert compare_with_world(st.controller, dict(st.sim.world.locations)) == []
        assert st.controller.station.status().recovery is not None
