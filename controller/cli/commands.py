"""The coroutines behind each swapctl sub-command."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

from controller.app import Controller
from controller.bus.login import broker_credentials, make_bus
from controller.cli.render import (
    alarms_table,
    echo,
    history_table,
    inventory_table,
    status_text,
    swaps_table,
)
from controller.clock import Clock
from controller.config import StationConfig
from controller.console import OperatorClient
from controller.embedded_broker import EmbeddedBroker
from controller.errors import BusError

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


async def demo(
    cfg: StationConfig,
    *,
    swaps: int,
    broker: str | None,
    as_json: bool,
    inject: list[str] | None = None,
    scenario: Path | None = None,
) -> int:
    from controller.cli.demo import run_demo

    result = await run_demo(
        cfg,
        swaps=swaps,
        broker_url=broker,
        progress=not as_json,
        inject=inject or [],
        scenario=scenario,
    )
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print()
        echo(swaps_table(result.swaps))
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
    state: Path,
    fresh: bool,
) -> int:
    from simulator.app import Simulator

    simulator = Simulator(cfg, url=url, clock=Clock(cfg.time_scale), state_file=state, fresh=fresh)
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
        print(
            f"simulated drivers of {cfg.station_id} on {url}; world kept in {state}"
            f"{' (fresh)' if fresh else ''}; Ctrl-C stops",
            file=sys.stderr,
        )
        await asyncio.Event().wait()
    finally:
        await simulator.stop()
    return EXIT_OK


async def connect(op: OperatorClient, timeout_s: float) -> bool:
    """Connect ``op``; False (said on stderr) if the broker cannot be reached."""
    try:
        await op.start(wait_s=timeout_s)
    except BusError as exc:
        print(f"swapctl: {exc}", file=sys.stderr)
        return False
    return True


def operator_client(
    cfg: StationConfig, url: str, station: str, role: str = "swapctl"
) -> OperatorClient:
    """An operator client logged in with the configured user, whose commands therefore go to
    ``cmd/<user>`` so the controller records who sent them."""
    username = broker_credentials(cfg.broker)["username"]
    bus = make_bus(cfg, url, client_id=f"{role}-{username or 'anon'}-{os.getpid()}")
    return OperatorClient(bus, station, username=username)


async def status(
    cfg: StationConfig,
    url: str,
    station: str,
    *,
    as_json: bool,
    timeout_s: float,
    watch: bool = False,
) -> int:
    op = operator_client(cfg, url, station)
    if not await connect(op, timeout_s):
        return EXIT_UNAVAILABLE
    try:
        await op.wait_for(
            lambda: op.status is not None and op.controller_online is not None, timeout_s
        )
        if watch and op.status is not None:
            await _watch_status(op, as_json=as_json)
    finally:
        await op.stop()
    if op.status is None:
        print(f"swapctl: no status for station {station} on {url}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    _print_status(op, as_json=as_json)
    return EXIT_OK


def _print_status(op: OperatorClient, *, as_json: bool, one_line: bool = False) -> None:
    if op.status is None:
        return
    if as_json:
        data: dict[str, Any] = op.status.model_dump(mode="json")
        data["controller_online"] = op.controller_online
        print(json.dumps(data) if one_line else json.dumps(data, indent=2), flush=True)
    else:
        print(status_text(op.status, op.controller_online), flush=True)


async def _watch_status(op: OperatorClient, *, as_json: bool) -> None:
    """Print the status at every change until cancelled (Ctrl-C). A lost broker is said on
    stderr and the watch carries on: the bus reconnects by itself."""
    clear = not as_json and sys.stdout.isatty()
    shown: tuple[object, object] | None = None
    connected = True
    while True:
        current = (op.status, op.controller_online)
        if current != shown and op.status is not None:
            if clear:
                print("\033[H\033[J", end="")
            elif shown is not None and not as_json:
                print()
            _print_status(op, as_json=as_json, one_line=True)
            shown = current
        if op.bus.connected != connected:
            connected = op.bus.connected
            state = "reconnected" if connected else "disconnected from the broker; reconnecting"
            print(f"swapctl: {state}", file=sys.stderr, flush=True)
        await op.wait_for(functools.partial(_status_differs, op, shown), 1.0)


def _status_differs(op: OperatorClient, shown: tuple[object, object] | None) -> bool:
    return (op.status, op.controller_online) != shown


async def _read(
    cfg: StationConfig, url: str, station: str, what: str, timeout_s: float
) -> tuple[OperatorClient | None, int]:
    """Connect, wait for the retained ``what`` topic, disconnect."""
    op = operator_client(cfg, url, station)
    if not await connect(op, timeout_s):
        return None, EXIT_UNAVAILABLE
    try:
        await op.wait_for(
            lambda: getattr(op, what) is not None and op.controller_online is not None, timeout_s
        )
    finally:
        await op.stop()
    if getattr(op, what) is None:
        print(f"swapctl: no {what} published for station {station} on {url}", file=sys.stderr)
        return op, EXIT_UNAVAILABLE
    return op, EXIT_OK


def _dump(model: Any, controller_online: bool | None) -> str:
    data: dict[str, Any] = model.model_dump(mode="json")
    data["controller_online"] = controller_online
    return json.dumps(data, indent=2)


async def show(
    cfg: StationConfig, url: str, station: str, what: str, *, as_json: bool, timeout_s: float
) -> int:
    """``swapctl inventory`` and ``swapctl history``: one retained topic, as a table or JSON."""
    op, code = await _read(cfg, url, station, what, timeout_s)
    if op is None or code != EXIT_OK:
        return code
    if as_json:
        print(_dump(getattr(op, what), op.controller_online))
    elif what == "inventory" and op.inventory is not None:
        echo(inventory_table(op.inventory, op.controller_online))
    elif op.history is not None:
        echo(history_table(op.history, op.controller_online))
    return EXIT_OK


async def alarms(
    cfg: StationConfig,
    url: str,
    station: str,
    *,
    ack: str | None,
    as_json: bool,
    timeout_s: float,
) -> int:
    """``swapctl alarms``: the active alarms; with ``--ack ID`` acknowledge one (or all)."""
    if ack is not None:
        return await cmd(
            cfg, url, station, "ack", {"alarm_id": ack}, as_json=as_json, timeout_s=timeout_s
        )
    op, code = await _read(cfg, url, station, "alarms", timeout_s)
    if op is None or code != EXIT_OK or op.alarms is None:
        return code
    if as_json:
        print(_dump(op.alarms, op.controller_online))
    else:
        echo(alarms_table(op.alarms, op.controller_online))
    return EXIT_OK


def console(cfg: StationConfig, url: str, station: str) -> int:
    """``swapctl console``: the terminal UI (Textual runs its own event loop)."""
    from controller.console.app import ConsoleApp

    ConsoleApp(operator_client(cfg, url, station, role="console")).run()
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
    op = operator_client(cfg, url, station)
    if not await connect(op, timeout_s):
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
