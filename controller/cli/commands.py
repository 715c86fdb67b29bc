"""The coroutines behind each swapctl sub-command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from controller.app import Controller, make_bus
from controller.cli.render import status_text, swaps_table
from controller.clock import Clock
from controller.config import StationConfig
from controller.console import OperatorClient
from controller.embedded_broker import EmbeddedBroker
from controller.errors import BusError

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


async def demo(cfg: StationConfig, *, swaps: int, broker: str | None, as_json: bool) -> int:
    from controller.cli.demo import run_demo

    result = await run_demo(cfg, swaps=swaps, broker_url=broker, progress=not as_json)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print()
        print(swaps_table(result.swaps))
        print()
        print("inventory: " + ("every pack accounted for" if result.inventory_ok else "PROBLEMS"))
        for problem in result.problems:
            print(f"  - {problem}")
        completed = sum(1 for r in result.swaps if r.result == "completed" and r.in_budget)
        print(f"{completed} of {swaps} swaps completed within the {cfg.swap.budget_s:.0f} s budget")
    return EXIT_OK if result.ok and len(result.swaps) == swaps else EXIT_FAILED


async def run(cfg: StationConfig, url: str, *, embedded: bool) -> int:
    clock = Clock(cfg.time_scale)
    broker: EmbeddedBroker | None = None
    if embedded:
        port = int(url.rsplit(":", 1)[1])
        broker = EmbeddedBroker(port)
        await broker.start()
        print(f"embedded broker on {broker.url}", file=sys.stderr)
    controller = Controller(cfg, url=url, clock=clock)
    try:
        await controller.start()
        print(
            f"controller for {cfg.station_id} running against {url} "
            f"(time scale {cfg.time_scale:g}); Ctrl-C stops",
            file=sys.stderr,
        )
        await asyncio.Event().wait()
    finally:
        await controller.stop()
        if broker is not None:
            await broker.stop()
    return EXIT_OK


async def sim(
    cfg: StationConfig,
    url: str,
    *,
    arrivals: int | None,
    rate: float | None,
    inject: list[str],
    scenario: Path | None,
) -> int:
    from simulator.app import Simulator

    simulator = Simulator(
        cfg,
        url=url,
        clock=Clock(cfg.time_scale),
        bus_factory=lambda client_id, will: make_bus(cfg, url, client_id=client_id, will=will),
    )
    for spec in inject:
        simulator.inject(spec)
    if scenario is not None:
        simulator.load_scenario(scenario)
    await simulator.start()
    try:
        if arrivals:
            await simulator.arrive(arrivals)
        if rate:
            simulator.start_traffic(rate)
        print(f"simulated drivers of {cfg.station_id} on {url}; Ctrl-C stops", file=sys.stderr)
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
    return EXIT_OK


def _operator(cfg: StationConfig, url: str, station: str) -> OperatorClient:
    return OperatorClient(make_bus(cfg, url, client_id=f"swapctl-{os.getpid()}"), station)


async def status(
    cfg: StationConfig, url: str, station: str, *, as_json: bool, timeout_s: float
) -> int:
    op = _operator(cfg, url, station)
    try:
        await op.start(wait_s=timeout_s)
    except BusError as exc:
        print(f"swapctl: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        await op.wait_for(
            lambda: op.status is not None and op.controller_online is not None, timeout_s
        )
    finally:
        await op.stop()
    if op.status is None:
        print(f"swapctl: no status for station {station} on {url}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if as_json:
        data: dict[str, Any] = op.status.model_dump(mode="json")
        data["controller_online"] = op.controller_online
        print(json.dumps(data, indent=2))
    else:
        print(status_text(op.status, op.controller_online))
    return EXIT_OK


async def cmd(
    cfg: StationConfig,
    url: str,
    station: str,
    name: str,
    args: dict[str, Any],
    *,
    as_json: bool,
    timeout_s: float,
) -> int:
    op = _operator(cfg, url, station)
    try:
        await op.start(wait_s=timeout_s)
    except BusError as exc:
        print(f"swapctl: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        reply = await op.command(name, args, timeout_s=timeout_s)
    finally:
        await op.stop()
    if reply is None:
        if as_json:
            print(json.dumps({"cmd": name, "ok": None, "error": "no reply"}))
        print(f"swapctl: no reply from station {station} within {timeout_s:g} s", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if as_json:
        print(reply.model_dump_json(indent=2))
    elif reply.ok:
        print(f"ok: {name} (mode now {reply.mode.value if reply.mode else '?'})")
    else:
        print(f"refused: {name}: {reply.error}")
    return EXIT_OK if reply.ok else EXIT_FAILED
