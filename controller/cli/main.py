"""swapctl: run, simulate, watch and command a swap station.

Exit codes: 0 ok; 1 refused (cmd) or a swap failed / went over budget (demo); 2 no reply, no
broker, or a bad config file (the message names the file, the field and the reason).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from controller.config import StationConfig, load_config
from controller.errors import BusError, ConfigError, SwapstationError

DEFAULT_LOCAL_BROKER = "mqtt://127.0.0.1:1883"
EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def _common(p: argparse.ArgumentParser, *, broker: bool = True) -> None:
    p.add_argument("--config", type=Path, default=None, help="station file (config/station.yaml)")
    if broker:
        p.add_argument("--broker", default=None, help="broker URL, e.g. mqtt://127.0.0.1:1883")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swapctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="broker + simulator + controller; swap N trucks")
    _common(p)
    p.add_argument("--swaps", type=int, default=3)
    p.add_argument("--time-scale", type=float, default=20.0)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")

    p = sub.add_parser("run", help="the controller alone, against a broker")
    _common(p)
    p.add_argument("--time-scale", type=float, default=None)

    p = sub.add_parser("sim", help="the simulated drivers alone, against a broker")
    _common(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--arrivals", type=int, default=None, help="send this many trucks")
    group.add_argument("--rate", type=float, default=None, help="trucks per hour (Poisson)")
    p.add_argument("--time-scale", type=float, default=None)
    p.add_argument("--inject", action="append", default=[], metavar="DEVICE.ACTION:KIND")
    p.add_argument("--scenario", type=Path, default=None, help="fault scenario YAML")

    p = sub.add_parser("status", help="the station's status")
    _common(p)
    p.add_argument("--station", default=None, help="station id (default: from config)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)

    p = sub.add_parser("cmd", help="send an operator command and print the reply")
    _common(p)
    p.add_argument("name", metavar="COMMAND")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--station", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=5.0)

    p = sub.add_parser("contract", help="the MQTT contract")
    csub = p.add_subparsers(dest="contract_command", required=True)
    e = csub.add_parser("export", help="write JSON Schemas and an AsyncAPI document")
    e.add_argument("dir", type=Path)
    return parser


def _config(args: argparse.Namespace, **overrides: Any) -> StationConfig:
    cfg = load_config(args.config)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_overrides(**changes) if changes else cfg


def _broker(args: argparse.Namespace, cfg: StationConfig) -> str:
    return str(args.broker or cfg.broker.url or DEFAULT_LOCAL_BROKER)


def _parse_args_kv(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--arg", pair, "expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run ``coro``; SIGINT/SIGTERM cancel it so everything stops cleanly."""

    async def main() -> int:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return EXIT_OK

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (
        [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
        if hasattr(args, "verbose")
        else logging.WARNING
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level > logging.DEBUG:
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"swapctl: config error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BusError as exc:
        print(f"swapctl: broker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except SwapstationError as exc:
        print(f"swapctl: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    from controller.cli import commands

    if args.command == "contract":
        from controller.contract.export import export_contract

        for path in export_contract(args.dir):
            print(path)
        return EXIT_OK
    if args.command == "demo":
        if args.swaps < 1:
            raise ConfigError("--swaps", "swaps", "must be at least 1")
        cfg = _config(args, time_scale=args.time_scale)
        return _run(commands.demo(cfg, swaps=args.swaps, broker=args.broker, as_json=args.json))
    if args.command == "run":
        cfg = _config(args, time_scale=args.time_scale)
        return _run(
            commands.run(cfg, _broker(args, cfg), embedded=not (args.broker or cfg.broker.url))
        )
    if args.command == "sim":
        cfg = _config(args, time_scale=args.time_scale)
        return _run(
            commands.sim(
                cfg,
                _broker(args, cfg),
                arrivals=args.arrivals,
                rate=args.rate,
                inject=args.inject,
                scenario=args.scenario,
            )
        )
    cfg = _config(args)
    station = args.station or cfg.station_id
    if args.command == "status":
        return _run(
            commands.status(
                cfg, _broker(args, cfg), station, as_json=args.json, timeout_s=args.timeout
            )
        )
    if args.command == "cmd":
        return _run(
            commands.cmd(
                cfg,
                _broker(args, cfg),
                station,
                args.name,
                _parse_args_kv(args.arg),
                as_json=args.json,
                timeout_s=args.timeout,
            )
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
