"""``swapctl alarms --history``: every alarm on the list between two times, with its life
(raised, acknowledged by whom, shelved by whom and why, cleared).

Asked of the controller over MQTT (the ``alarm_history`` command), or, with ``--db``, read from
a station's SQLite database directly: for a controller that is down, or a copy of its file
taken for an investigation. The database is opened like the controller opens it (an older
schema is brought up to date first), so point ``--db`` at a copy if another version still runs.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.cli.commands import connect
from controller.console.client import OperatorClient
from controller.console.results import history_lines
from controller.contract.commands import parse_time
from controller.contract.results import AlarmHistory
from controller.errors import ConfigError
from controller.station.alarms import alarm_history
from controller.store import Store

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def time_range(since: str | None, until: str | None) -> tuple[datetime, datetime | None]:
    """``--since``/``--until`` as aware datetimes; a bad one is a usage error naming it."""
    if since is None:
        raise ConfigError("--since", "since", "--history needs --since (an ISO date or time)")
    try:
        start = parse_time(since, "since")
        end = parse_time(until, "until") if until else None
    except ValueError as exc:
        raise ConfigError("--since/--until", "time", str(exc)) from None
    if end is not None and end <= start:
        raise ConfigError("--until", "until", "must be after --since")
    return start, end


def from_db(db: Path, since: datetime, until: datetime | None, limit: int) -> AlarmHistory:
    if not db.is_file():
        raise ConfigError(str(db), "--db", "no such database file")
    with Store.open(db) as store:
        if until is None:  # to the end of the journal: station time may run ahead of ours
            newest = [r.info.raised_at + timedelta(seconds=1) for r in store.alarm_history(1)]
            until = max([datetime.now(tz=UTC), *newest])
        return alarm_history(store, since, until, limit=limit)


async def over_mqtt(
    op: OperatorClient,
    since: datetime,
    until: datetime | None,
    limit: int,
    *,
    timeout_s: float,
    as_json: bool,
) -> int:
    """Ask the controller (the ``alarm_history`` command) and show its answer."""
    if not await connect(op, timeout_s):
        return EXIT_UNAVAILABLE
    args: dict[str, object] = {"since": since.isoformat(), "limit": limit}
    if until is not None:
        args["until"] = until.isoformat()
    try:
        reply = await op.command("alarm_history", args, timeout_s=timeout_s)
    finally:
        await op.stop()
    if reply is None:
        print("swapctl: no reply from the station", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not reply.ok or reply.result is None:
        print(f"refused: alarm_history: {reply.error}")
        return EXIT_FAILED
    return show(AlarmHistory.model_validate(reply.result), as_json=as_json)


def show(history: AlarmHistory, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(history.model_dump(mode="json"), indent=2))
    else:
        print("\n".join(history_lines(history)))
    return EXIT_OK
