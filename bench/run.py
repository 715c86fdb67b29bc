"""swapstation benchmarks: ``make bench`` -> JSON on stdout and in ``--out``.

Numbers are compared as ratios within one run (absolute times depend on the machine and its
load). Measured:

- ``mqtt_rtt``: QoS 1 publish -> receive round trip on Mosquitto, with TCP_NODELAY on both
  sides (what the Bus and our shipped configs do) vs. plain aiomqtt against a default Mosquitto.
- ``driver_command``: one driver command through the controller's proxy to a simulated driver
  and back (accepted + done), embedded broker vs. Mosquitto.
- ``swap``: a whole simulated swap at several time scales: station-time duration (the nominal
  swap is ~125 s; the rest is real-time MQTT cost magnified by the scale) and real seconds.
- ``journal``: a journalled pack move (intent + confirmation) on disk, synchronous=FULL vs NORMAL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from controller.embedded_broker import EmbeddedBroker
from controller.store import Store
from tests.brokers import Mosquitto
from tests.harness import running_station, station_config


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _summary(us: list[float]) -> dict[str, float]:
    return {
        "p50_us": round(statistics.median(us), 1),
        "p99_us": round(_pct(us, 99), 1),
        "n": len(us),
    }


async def _request_reply(port: int, n: int, *, nodelay: bool) -> list[float]:
    """Our real pattern: a command out, its result back (two QoS 1 hops each way)."""
    opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if nodelay else None
    async with (
        aiomqtt.Client("127.0.0.1", port, identifier="req", socket_options=opts) as req,
        aiomqtt.Client("127.0.0.1", port, identifier="rep", socket_options=opts) as rep,
    ):
        await rep.subscribe("bench/req", qos=1)
        await req.subscribe("bench/rep", qos=1)

        answered = 0
        all_answered = asyncio.Event()

        async def responder() -> None:
            nonlocal answered
            async for message in rep.messages:
                await rep.publish("bench/rep", message.payload, qos=1)
                answered += 1
                if answered == n:
                    all_answered.set()

        task = asyncio.create_task(responder())
        replies = req.messages
        out = []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                await req.publish("bench/req", b"x", qos=1)
                await anext(replies)
                out.append((time.perf_counter() - t0) * 1e6)
            # cancelling the responder while it waits for a PUBACK would leave aiomqtt's
            # disconnect waiting forever: let it finish its last reply first
            await asyncio.wait_for(all_answered.wait(), 10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        return out


async def bench_mqtt_rtt(n: int) -> dict[str, Any]:
    tuned = Mosquitto()
    plain = Mosquitto()
    plain.conf.write_text(plain.conf.read_text().replace("set_tcp_nodelay true\n", ""))
    tuned.start()
    plain.start()
    try:
        fast = await _request_reply(tuned.port, n, nodelay=True)
        slow = await _request_reply(plain.port, max(20, n // 10), nodelay=False)
    finally:
        tuned.cleanup()
        plain.cleanup()
    result: dict[str, Any] = {
        "pattern": "request/reply, QoS 1, loopback",
        "nodelay_both_sides": _summary(fast),
        "defaults": _summary(slow),
    }
    result["speedup_p50"] = round(
        result["defaults"]["p50_us"] / result["nodelay_both_sides"]["p50_us"], 1
    )
    return result


async def bench_driver_command(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mosq = Mosquitto()
    mosq.start()
    try:
        async with EmbeddedBroker() as emb:
            for name, url in (("embedded", emb.url), ("mosquitto", mosq.url)):
                cfg = station_config(f"bench-{name}", time_scale=10000)
                async with running_station(url, cfg, start=False) as st:
                    dev = st.controller.devices["safety"]
                    for _ in range(10):
                        await dev.command("stop")
                    us = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        await dev.command("stop")
                        us.append((time.perf_counter() - t0) * 1e6)
                    out[name] = _summary(us)
    finally:
        mosq.cleanup()
    out["embedded_over_mosquitto_p50"] = round(
        out["embedded"]["p50_us"] / out["mosquitto"]["p50_us"], 2
    )
    return out


async def bench_swap(scales: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mosq = Mosquitto()
    mosq.start()
    try:
        for scale in scales:
            cfg = station_config(f"bench-swap-{int(scale)}", time_scale=scale)
            async with running_station(mosq.url, cfg) as st:
                t0 = time.perf_counter()
                await st.sim.arrive(1)
                record = await st.next_swap(600)
                out[f"x{scale:g}"] = {
                    "result": record.result,
                    "station_s": record.duration_s,
                    "real_s": round(time.perf_counter() - t0, 3),
                    "commands": st.controller.station.sent_total,
                }
    finally:
        mosq.cleanup()
    base = out[f"x{scales[0]:g}"]["station_s"]
    for value in out.values():
        value["station_s_over_slowest_scale"] = round(value["station_s"] / base, 3)
    return out


def bench_journal(n: int) -> dict[str, Any]:
    from controller.clock import Clock

    clock = Clock()
    out: dict[str, Any] = {}
    for mode in ("FULL", "NORMAL"):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(os.path.join(tmp, "j.sqlite3"))
            if mode == "NORMAL":  # for the comparison only; the product always uses FULL
                store._db.conn.execute("PRAGMA synchronous=NORMAL")
            store.seed_packs({"P-1": "slot:1"}, clock.now())
            us = []
            here, there = "slot:1", "gripper"
            for _ in range(n):
                t0 = time.perf_counter()
                move = store.begin_move("P-1", here, there, at=clock.now())
                store.confirm_move(move, clock.now())
                us.append((time.perf_counter() - t0) * 1e6)
                here, there = there, here
            store.close()
        out[f"synchronous_{mode}"] = _summary(us)
    out["full_over_normal_p50"] = round(
        out["synchronous_FULL"]["p50_us"] / out["synchronous_NORMAL"]["p50_us"], 2
    )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "when": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "host": socket.gethostname(),
        },
        "mqtt_rtt": await bench_mqtt_rtt(args.n),
        "driver_command": await bench_driver_command(args.n),
        "swap": await bench_swap([10.0, 50.0, 200.0]),
        "journal": bench_journal(args.n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("-n", type=int, default=300, help="samples per latency measurement")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
