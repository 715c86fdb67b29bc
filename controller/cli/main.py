"""swapctl: run, simulate, watch and command a swap station.

Exit codes: 0 ok; 1 refused (cmd, alarms --ack) or a swap failed / went over budget (demo);
2 no reply, no broker, nothing published yet, a bad config file (the message names the file,
the field and the reason) or a usage error. Every read command takes --json for scripts (one
document; with status --watch, one JSON line per change) and prints human tables otherwise.
Broker credentials come from the station file or SWAPSTATION_MQTT_* variables, never from the
command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.main import get_command

from controller.cli import alarm_history, commands
from controller.cli.options import (
    AsJson,
    BrokerUrl,
    ConfigFile,
    Injections,
    Scenario,
    StationId,
    Timeout,
    TimeScale,
    Verbosity,
    broker_url,
    log_to_file_or_nowhere,
    log_to_stderr,
    station_config,
)
from controller.cli.reconcile import reconcile as reconcile_cmd
from controller.cli.recover import recover as recover_cmd
from controller.contract.export import export_contract
from controller.errors import BusError, ConfigError, SwapstationError

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def _exit_with(code: int) -> None:
    """Every sub-command returns its exit code; this makes it the process's."""
    raise typer.Exit(code)


app = typer.Typer(
    name="swapctl",
    help=__doc__,
    add_completion=False,
    # Help and usage errors stay plain, wrapped text that pipes and grep read: rich's panels
    # would put border characters inside every wrapped sentence.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    result_callback=_exit_with,
)
contract_app = typer.Typer(help="the MQTT contract", rich_markup_mode=None)
app.add_typer(contract_app, name="contract")


@app.command(short_help="broker + simulator + controller; swap N trucks")
def demo(
    *,
    swaps: Annotated[int, typer.Option("--swaps", help="trucks to swap")] = 3,
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="station seconds per real second")
    ] = 20.0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
    inject: Injections = None,
    scenario: Scenario = None,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """Broker, simulator and controller in one process: swap N trucks, print how each went.
    Exit codes: 0 every swap completed in budget and every pack is accounted for; 1 otherwise;
    2 bad config, bad --inject or --scenario, no broker."""
    log_to_stderr(verbose)
    if swaps < 1:
        raise ConfigError("--swaps", "swaps", "must be at least 1")
    cfg = station_config(config, time_scale=time_scale)
    return _run(
        commands.demo(
            cfg, swaps=swaps, broker=broker, as_json=as_json, inject=inject, scenario=scenario
        )
    )


@app.command(short_help="the controller alone, against a broker")
def run(
    *,
    time_scale: TimeScale = None,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The controller alone, until Ctrl-C. Without a broker URL (neither --broker nor broker.url
    in the station file) it starts an embedded broker on 127.0.0.1:1883. Exit codes: 0 stopped;
    2 bad config or no broker."""
    log_to_stderr(verbose)
    cfg = station_config(config, time_scale=time_scale)
    return _run(commands.run(cfg, broker_url(broker, cfg), embedded=not (broker or cfg.broker.url)))


@app.command(short_help="the simulated drivers alone, against a broker")
def sim(
    *,
    arrivals: Annotated[
        int | None, typer.Option("--arrivals", help="send this many trucks (not with --rate)")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="trucks per hour, Poisson (not with --arrivals)"),
    ] = None,
    time_scale: TimeScale = None,
    inject: Injections = None,
    scenario: Scenario = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="file the simulated world is kept in across restarts"
            " (default: $XDG_STATE_HOME/swapstation/sim-<station>.json)",
        ),
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="start from the station file's packs, not the saved world"),
    ] = False,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The simulated drivers and truck traffic, until Ctrl-C. The simulated world (packs,
    trucks, arm, door) survives a restart, as hardware does: it is kept in --state and restored
    from it unless --fresh. Exit codes: 0 stopped; 2 bad config, unreadable world file or no
    broker."""
    if arrivals is not None and rate is not None:
        raise typer.BadParameter("not allowed with --arrivals", param_hint="'--rate'")
    log_to_stderr(verbose)
    cfg = station_config(config, time_scale=time_scale)
    return _run(
        commands.sim(
            cfg,
            broker_url(broker, cfg),
            arrivals=arrivals,
            rate=rate,
            inject=inject or [],
            scenario=scenario,
            state=state or default_sim_state(cfg.station_id),
            fresh=fresh,
        )
    )


def default_sim_state(station_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "swapstation" / f"sim-{station_id}.json"


@app.command(short_help="the station's status")
def status(
    *,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 3.0,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="print the status again at every change until Ctrl-C (--json: one line each)",
        ),
    ] = False,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The retained status. Exit codes: 0 ok; 2 no status, no broker, bad config."""
    log_to_stderr(verbose)
    cfg = station_config(config)
    return _run(
        commands.status(
            cfg,
            broker_url(broker, cfg),
            station or cfg.station_id,
            as_json=as_json,
            timeout_s=timeout,
            watch=watch,
        )
    )


@app.command(short_help="every rack slot, the gripper and the vehicle's pack")
def inventory(
    *,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 3.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """Every rack slot, the gripper and the vehicle's pack (retained topic). Exit codes: 0 ok;
    2 nothing published, no broker, bad config."""
    return _show(
        "inventory",
        config=config,
        broker=broker,
        verbose=verbose,
        station=station,
        as_json=as_json,
        timeout=timeout,
    )


@app.command(short_help="the most recent swaps")
def history(
    *,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 3.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The most recent swaps (retained topic). Exit codes: 0 ok; 2 nothing published, no
    broker, bad config."""
    return _show(
        "history",
        config=config,
        broker=broker,
        verbose=verbose,
        station=station,
        as_json=as_json,
        timeout=timeout,
    )


def _show(
    what: str,
    *,
    config: Path | None,
    broker: str | None,
    verbose: int,
    station: str | None,
    as_json: bool,
    timeout: float,
) -> int:
    log_to_stderr(verbose)
    cfg = station_config(config)
    return _run(
        commands.show(
            cfg,
            broker_url(broker, cfg),
            station or cfg.station_id,
            what,
            as_json=as_json,
            timeout_s=timeout,
        )
    )


@app.command(short_help="the alarm list; --ack ID (or all); --history --since T [--db FILE]")
def alarms(
    *,
    ack: Annotated[
        str | None,
        typer.Option("--ack", metavar="ALARM_ID", help="acknowledge (or 'all')"),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="every alarm between --since and --until")
    ] = False,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time (UTC)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date/time; default now")] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="read the history from this station database")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 200,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 3.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The alarm list (retained topic; shelved alarms apart), or acknowledge one with --ack, or
    with --history every alarm on the list between --since and --until: raised, acknowledged,
    shelved, cleared, and by whom (asked of the controller, or read from --db). Exit codes:
    0 ok; 1 the ack was refused (or the history query); 2 no reply / nothing published, no
    broker, bad config or database."""
    log_to_stderr(verbose)
    cfg = station_config(config)
    if history or db is not None:
        start, end = alarm_history.time_range(since, until)
        if db is not None:
            return alarm_history.show(alarm_history.from_db(db, start, end, limit), as_json=as_json)
        op = commands.operator_client(cfg, broker_url(broker, cfg), station or cfg.station_id)
        return _run(
            alarm_history.over_mqtt(op, start, end, limit, timeout_s=timeout, as_json=as_json)
        )
    return _run(
        commands.alarms(
            cfg,
            broker_url(broker, cfg),
            station or cfg.station_id,
            ack=ack,
            as_json=as_json,
            timeout_s=timeout,
        )
    )


@app.command(short_help="the operator's terminal UI")
def console(
    *,
    station: StationId = None,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="write the log here (default: nowhere)")
    ] = None,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """A terminal UI of one station: status, swap timeline, rack, alarms, liveness, history,
    and keys to command it. It opens even while the broker is away and reconnects by itself.
    Exit code 0; 2 on a bad config."""
    log_to_file_or_nowhere(verbose, log_file)
    cfg = station_config(config)
    return commands.console(cfg, broker_url(broker, cfg), station or cfg.station_id)


@app.command(short_help="send an operator command and print the reply")
def cmd(
    name: Annotated[str, typer.Argument(metavar="COMMAND", help="e.g. start, hold, reset")],
    *,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", metavar="KEY=VALUE", help="a command argument (repeatable)"),
    ] = None,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """Send one operator command and print the station's reply. Exit codes: 0 ok; 1 refused;
    2 no reply, no broker, bad config."""
    log_to_stderr(verbose)
    cfg = station_config(config)
    return _run(
        commands.cmd(
            cfg,
            broker_url(broker, cfg),
            station or cfg.station_id,
            name,
            _parse_args_kv(arg or []),
            as_json=as_json,
            timeout_s=timeout,
        )
    )


@app.command(short_help="after a swap was cut short: the bay, the plans out, and running one")
def recover(
    *,
    plan: Annotated[
        str | None,
        typer.Option("--plan", help="finish (a charged pack) or give-back (the truck's own)"),
    ] = None,
    run: Annotated[
        bool, typer.Option("--run", help="run the plan (station in maintenance)")
    ] = False,
    step: Annotated[bool, typer.Option("--step", help="one step per confirmation")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """The bay's situation and the recovery plans the station proposes; with --plan and --run,
    run one. Exit codes: 0 shown, or the bay is normal again; 1 refused, failed, not confirmed
    or still not normal; 2 no status, no broker, bad config."""
    if run and plan not in ("finish", "give-back", "give_back"):
        raise typer.BadParameter(
            "--run needs --plan finish or --plan give-back", param_hint="'--plan'"
        )
    log_to_stderr(verbose)
    cfg = station_config(config)
    op = commands.operator_client(cfg, broker_url(broker, cfg), station or cfg.station_id)

    def confirm(question: str) -> bool:
        return yes or typer.confirm(question, default=False)

    return _run(
        recover_cmd(
            op, plan=plan, run=run, step=step, as_json=as_json, timeout_s=timeout, confirm=confirm
        )
    )


@app.command(short_help="the journal against the sensors: preview, confirm, journal")
def reconcile(
    *,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    station: StationId = None,
    as_json: AsJson = False,
    timeout: Timeout = 5.0,
    config: ConfigFile = None,
    broker: BrokerUrl = None,
    verbose: Verbosity = 0,
) -> int:
    """What reconcile would change where the journal and the sensors disagree (each pack:
    journal place -> sensors' place), then, confirmed, journal it under your broker user.
    Exit codes: 0 nothing to do, or done and consistent; 1 refused, not confirmed, or packs
    left to inspect; 2 no reply, no broker, bad config."""
    log_to_stderr(verbose)
    cfg = station_config(config)
    op = commands.operator_client(cfg, broker_url(broker, cfg), station or cfg.station_id)

    def confirm(question: str) -> bool:
        return yes or typer.confirm(question, default=False)

    return _run(reconcile_cmd(op, as_json=as_json, timeout_s=timeout, confirm=confirm))


@contract_app.command("export", short_help="write JSON Schemas and an AsyncAPI document")
def contract_export(directory: Annotated[Path, typer.Argument(metavar="DIR")]) -> int:
    """Write a JSON Schema per payload and an AsyncAPI 3 document into DIR."""
    log_to_stderr(0)
    for path in export_contract(directory):
        print(path)
    return EXIT_OK


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
    """Run swapctl on ``argv`` (default: the process's arguments) and return the exit code.

    The command line is parsed in click's standalone mode, which prints usage errors and help
    itself and always ends in SystemExit (2 for a usage error); our own errors end here."""
    try:
        get_command(app).main(args=argv, prog_name="swapctl")
    except SystemExit as done:
        return int(done.code or 0)
    except ConfigError as exc:
        print(f"swapctl: config error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BusError as exc:
        print(f"swapctl: broker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except SwapstationError as exc:
        print(f"swapctl: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
