"""swapctl: run, simulate, watch and command a swap station.

Exit codes: 0 ok; 1 refused (cmd, alarms --ack) or a swap failed / went over budget (demo);
2 no reply, no broker, nothing published yet, or a bad config file (the message names the file,
the field and the reason). Every read command takes --json for scripts (one document; with
status --watch, one JSON line per change) and prints human tables otherwise. Broker credentials
come from the station file or SWAPSTATION_MQTT_* variables, never from the command line.
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
    p.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="DEVICE.ACTION:KIND",
        help="arm a simulator fault, e.g. arm.lift:fail, bay.unlock:hang",
    )
    p.add_argument("--scenario", type=Path, default=None, help="fault scenario YAML")

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

    p = sub.add_parser(
        "status",
        help="the station's status",
        description="The retained status. Exit codes: 0 ok; 2 no status, no broker, bad config.",
    )
    _common(p)
    p.add_argument("--station", default=None, help="station id (default: from config)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument(
        "--watch",
        action="store_true",
        help="print the status again at every change until Ctrl-C (--json: one line each)",
    )

    for name, what in (
        ("inventory", "every rack slot, the gripper and the vehicle's pack"),
        ("history", "the most recent swaps"),
    ):
        p = sub.add_parser(
            name,
            help=what,
            description=f"{what[0].upper()}{what[1:]} (retained topic). Exit codes: 0 ok; "
            "2 nothing published, no broker, bad config.",
        )
        _common(p)
        p.add_argument("--station", default=None, help="station id (default: from config)")
        p.add_argument("--json", action="store_true")
        p.add_argument("--timeout", type=float, default=3.0)

    p = sub.add_parser(
        "alarms",
        help="active alarms; --ack ID (or all) acknowledges",
        description="Active alarms (retained topic), or acknowledge one with --ack. Exit codes: "
        "0 ok; 1 the ack was refused; 2 no reply / nothing published, no broker, bad config.",
    )
    _common(p)
    p.add_argument("--station", default=None, help="station id (default: from config)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--ack", default=None, metavar="ALARM_ID", help="acknowledge (or 'all')")

    p = sub.add_parser(
        "console",
        help="the operator's terminal UI",
        description="A terminal UI of one station: status, swap timeline, rack, alarms, "
        "liveness, history, and keys to command it. It opens even while the broker is away "
        "and reconnects by itself. Exit code 0; 2 on a bad config.",
    )
    _common(p)
    p.add_argument("--station", default=None, help="station id (default: from config)")
    p.add_argument("--log-file", type=Path, default=None, help="write the log here")

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
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if args.command == "console":
        # The terminal belongs to the UI: log to a file, or nowhere (the UI shows what matters).
        if args.log_file is not None:
            logging.basicConfig(level=level, format=log_format, filename=args.log_file)
        else:
            logging.getLogger().addHandler(logging.NullHandler())
    else:
        logging.basicConfig(level=level, format=log_format)
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
        return _run(
            commands.demo(
                cfg,
                swaps=args.swaps,
                broker=args.broker,
                as_json=args.json,
                inject=args.inject,
                scenario=args.scenario,
            )
        )
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
                cfg,
                _broker(args, cfg),
                station,
                as_json=args.json,
                timeout_s=args.timeout,
                watch=args.watch,
            )
        )
    if args.command in ("inventory", "history"):
        return _run(
            commands.show(
                cfg,
                _broker(args, cfg),
                station,
                args.command,
                as_json=args.json,
                timeout_s=args.timeout,
            )
        )
    if args.command == "alarms":
        return _run(
            commands.alarms(
                cfg,
                _broker(args, cfg),
                station,
                ack=args.ack,
                as_json=args.json,
                timeout_s=args.timeout,
            )
        )
    if args.command == "console":
        return commands.console(cfg, _broker(args, cfg), station)
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
