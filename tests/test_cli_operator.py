"""swapctl's operator sub-commands as a script runs them: separate processes against a station
running on Mosquitto, JSON and human output, and the documented exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from controller.contract import Mode
from controller.embedded_broker import free_port
from tests.brokers import Mosquitto
from tests.harness import running_station, station_config

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
SWAPCTL = [sys.executable, "-m", "controller.cli.main"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SWAPSTATION_MQTT_")}


async def swapctl(*args: str, timeout_s: float = 30.0) -> tuple[int, str, str]:
    """Run swapctl without blocking the loop the station runs on."""
    proc = await asyncio.create_subprocess_exec(
        *SWAPCTL,
        *args,
        cwd=ROOT,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


def at(url: str, station: str) -> tuple[str, ...]:
    return ("--broker", url, "--station", station, "--timeout", "5")


async def test_status_inventory_history_as_json_and_tables(
    mosquitto: Mosquitto, station_id: str
) -> None:
    cfg = station_config(station_id, time_scale=100)
    async with running_station(mosquitto.url, cfg) as st:
        await st.sim.arrive(1)
        record = await st.next_swap()
        where = at(mosquitto.url, station_id)
        results = await asyncio.gather(
            swapctl("status", "--json", *where),
            swapctl("status", *where),
            swapctl("inventory", "--json", *where),
            swapctl("inventory", *where),
            swapctl("history", "--json", *where),
            swapctl("history", *where),
        )
    for code, _, err in results:
        assert code == 0, err
    (_, status, _), (_, status_h, _), (_, inv, _), (_, inv_h, _), (_, hist, _), (_, hist_h, _) = (
        results
    )
    doc = json.loads(status)
    assert doc["mode"] == "execute" and doc["controller_online"] is True
    assert doc["swaps_completed"] == 1 and doc["station"] == station_id
    assert "mode        execute" in status_h
    inventory = json.loads(inv)
    assert len(inventory["slots"]) == len(cfg.rack.slots) and inventory["consistent"] is True
    assert inventory["controller_online"] is True
    assert "slot" in inv_h and "P-1002" in inv_h and "every pack in exactly one place" in inv_h
    history = json.loads(hist)
    assert [s["swap_id"] for s in history["swaps"]] == [record.swap_id]
    assert history["swaps"][0]["result"] == "completed"
    assert "Seconds per phase" in hist_h and record.swap_id.rsplit("-", 1)[-1] in hist_h


async def test_alarms_and_ack_exit_codes(mosquitto: Mosquitto, station_id: str) -> None:
    cfg = station_config(station_id, time_scale=100)
    where = at(mosquitto.url, station_id)
    async with running_station(mosquitto.url, cfg) as st:
        code, out, _ = await swapctl("alarms", *where)
        assert code == 0 and "no active alarms" in out
        reply = await st.command("estop")
        assert reply.ok
        await st.operator.wait_for(
            lambda: st.operator.alarms is not None and bool(st.operator.alarms.alarms), 5
        )
        code, out, _ = await swapctl("alarms", "--json", *where)
        assert code == 0
        alarms = json.loads(out)["alarms"]
        assert alarms and alarms[0]["severity"] == "critical" and not alarms[0]["acknowledged"]
        alarm_id = alarms[0]["id"]
        code, human, _ = await swapctl("alarms", *where)
        assert code == 0 and alarm_id in human and "What to do:" in human
        # acknowledging an alarm that does not exist is refused: exit 1, with the reason
        code, out, _ = await swapctl("alarms", "--ack", "A-nope", *where)
        assert code == 1 and "refused: ack" in out and "no active alarm" in out
        code, out, _ = await swapctl("alarms", "--ack", alarm_id, "--json", *where)
        assert code == 0 and json.loads(out)["ok"] is True
        await st.operator.wait_for(
            lambda: (
                st.operator.alarms is not None
                and all(a.acknowledged for a in st.operator.alarms.alarms)
            ),
            5,
        )
        assert st.controller.station.mode is Mode.estopped


async def test_status_watch_prints_every_change_until_interrupted(
    mosquitto: Mosquitto, station_id: str
) -> None:
    cfg = station_config(station_id, time_scale=100)
    async with running_station(mosquitto.url, cfg) as st:
        proc = await asyncio.create_subprocess_exec(
            *SWAPCTL,
            "status",
            "--watch",
            "--json",
            *at(mosquitto.url, station_id),
            cwd=ROOT,
            env=ENV,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
            assert first["mode"] == "execute"
            assert (await st.command("hold")).ok
            while True:  # one JSON document per line, one line per change
                line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
                if line["mode"] == "held":
                    break
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_nothing_to_read_no_broker_and_help(mosquitto: Mosquitto) -> None:
    nobody = at(mosquitto.url, "cli-nobody")
    nowhere = ("--broker", f"mqtt://127.0.0.1:{free_port()}", "--timeout", "0.5")
    results = await asyncio.gather(
        swapctl("history", *nobody[:-1], "0.5"),
        swapctl("inventory", "--json", *nowhere),
        swapctl("alarms", *nowhere),
        swapctl("alarms", "--ack", "all", *nobody[:-1], "0.5"),
        swapctl("status", "--help"),
        swapctl("alarms", "--help"),
        swapctl("console", "--config", "/nonexistent/station.yaml"),
    )
    (history, inventory, alarms, ack, status_help, alarms_help, console) = results
    assert history[0] == 2 and "no history published" in history[2]
    assert inventory[0] == 2 and alarms[0] == 2
    assert ack[0] == 2 and "no reply" in ack[2]
    assert status_help[0] == 0 and "Exit codes: 0 ok; 2" in " ".join(status_help[1].split())
    assert "1 the ack was refused" in " ".join(alarms_help[1].split())
    assert console[0] == 2 and "station.yaml" in console[2]


async def test_recover_shows_the_plans_and_runs_one_until_the_bay_is_normal(
    mosquitto: Mosquitto, station_id: str
) -> None:
    """The operator's way out after an e-stop in fetch, with swapctl only: recover shows the
    bay and the plans; --run without --plan is a usage error; in maintenance the finish plan,
    run one step and then the rest, brings the bay back to normal (exit 0)."""
    from tests.harness import far_deadlines
    from tests.waits import until

    cfg = station_config(station_id, time_scale=100, **far_deadlines())
    async with running_station(mosquitto.url, cfg) as st:
        await st.sim.arrive(1)
        await st.wait_phase("fetch")
        assert (await st.command("estop")).ok
        await until(lambda: not st.controller.station.halting, "the halt to finish")
        await st.wait_world_settled()
        where = at(mosquitto.url, station_id)
        code, out, err = await swapctl("recover", "--json", *where)
        assert code == 0, err
        shown = json.loads(out)
        assert shown["bay"]["normal"] is False
        assert {p["name"] for p in shown["recovery"]["plans"]} == {"finish", "give_back"}
        code, out, _ = await swapctl("recover", *where)
        assert code == 0 and "bay: NOT NORMAL" in out and "plan finish:" in out
        code, _, err = await swapctl("recover", "--run", *where)
        assert code == 2 and "--run needs --plan finish or --plan give-back" in err
        for command in ("ack", "clear", "maintenance"):
            args = {"alarm_id": "all"} if command == "ack" else {}
            assert (await st.command(command, **args)).ok
        code, out, err = await swapctl(
            "recover", "--plan", "finish", "--run", "--step", "--yes", *where, timeout_s=60
        )
        assert code == 0, out + err
        assert "bay: normal" in out
        assert st.controller.station.bay.situation.normal
