"""The options several swapctl sub-commands share, defined once, and what each one sets up.

Each alias is a type annotation carrying its ``typer.Option``: a sub-command lists the ones it
takes (``config: ConfigFile = None``) and they read the same in every ``--help``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.config import StationConfig, load_config, parse_config

DEFAULT_LOCAL_BROKER = "mqtt://127.0.0.1:1883"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="station file (config/station.yaml)")
]
BrokerUrl = Annotated[
    str | None, typer.Option("--broker", help="broker URL, e.g. mqtt://127.0.0.1:1883")
]
Verbosity = Annotated[
    int, typer.Option("-v", "--verbose", count=True, show_default=False, help="more log output")
]
StationId = Annotated[
    str | None, typer.Option("--station", help="station id (default: from config)")
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table")]
Timeout = Annotated[
    float, typer.Option("--timeout", help="seconds to wait for the broker, then for the answer")
]
TimeScale = Annotated[
    float | None,
    typer.Option("--time-scale", help="station seconds per real second (default: from config)"),
]
Injections = Annotated[
    list[str] | None,
    typer.Option(
        "--inject",
        metavar="DEVICE.ACTION:KIND",
        help="arm a simulator fault, e.g. arm.lift:fail, bay.unlock:hang (repeatable)",
    ),
]
Scenario = Annotated[Path | None, typer.Option("--scenario", help="fault scenario YAML")]


def station_config(path: Path | None, **overrides: Any) -> StationConfig:
    """The station file (``--config``) with the options that override it; a bad option value
    is a config error naming the field, like a bad file, not a traceback."""
    cfg = load_config(path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return cfg
    return parse_config({**cfg.model_dump(), **changes}, "command line")


def broker_url(broker: str | None, cfg: StationConfig) -> str:
    """``--broker``, else the station file's, else the local default."""
    return str(broker or cfg.broker.url or DEFAULT_LOCAL_BROKER)


def log_to_stderr(verbose: int) -> None:
    logging.basicConfig(level=_log_level(verbose), format=LOG_FORMAT)
    _quiet_embedded_broker(verbose)


def log_to_file_or_nowhere(verbose: int, log_file: Path | None) -> None:
    """For the console: the terminal belongs to the UI (which shows what matters)."""
    if log_file is not None:
        logging.basicConfig(level=_log_level(verbose), format=LOG_FORMAT, filename=log_file)
    else:
        logging.getLogger().addHandler(logging.NullHandler())
    _quiet_embedded_broker(verbose)


def _log_level(verbose: int) -> int:
    return [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]


def _quiet_embedded_broker(verbose: int) -> None:
    """amqtt logs every client's comings and goings; only -vv wants them."""
    if _log_level(verbose) > logging.DEBUG:
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
