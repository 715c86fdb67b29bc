"""The operator command log: who sent what, when, and the reply; and idempotency by id.

QoS 1 may deliver a command twice. The station records a command before executing it; if
:meth:`CommandsMixin.record_command` says the id was seen, it does not execute it again and
answers with :meth:`CommandsMixin.command_result`, the reply the first delivery got. The log
is also the audit trail issue 4 asks for (every command with its sender, time and result).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.store.db import Database, from_db, opt_from_db, to_db
from controller.store.errors import NotFound


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One operator command and its reply (``ok is None``: no reply recorded yet)."""

    command_id: str
    cmd: str
    args: dict[str, Any]
    sender: str | None
    received_at: datetime
    ok: bool | None = None
    error: str | None = None
    replied_at: datetime | None = None


def _record(row: sqlite3.Row) -> CommandRecord:
    ok = row["ok"]
    return CommandRecord(
        command_id=row["command_id"],
        cmd=row["cmd"],
        args=json.loads(row["args"]),
        sender=row["sender"],
        received_at=from_db(row["received_at"]),
        ok=None if ok is None else bool(ok),
        error=row["error"],
        replied_at=opt_from_db(row["replied_at"]),
    )


class CommandsMixin:
    """Operator-command methods of :class:`~controller.store.Store`."""

    _db: Database

    def record_command(
        self, command_id: str, cmd: str, args: dict[str, Any], sender: str | None, at: datetime
    ) -> bool:
        """Log a received command; False if this id was already logged (do not execute it).

        ``sender`` is who sent it as far as the station can tell (the MQTT user, or a name in
        the command), ``None`` if nobody said. Values in ``args`` that are not JSON are
        stored as their ``str``.
        """
        with self._db.transaction("record_command") as c:
            cur = c.execute(
                "INSERT INTO commands (command_id, cmd, args, sender, received_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
                (command_id, cmd, json.dumps(args, sort_keys=True, default=str), sender, to_db(at)),
            )
            return cur.rowcount == 1

    def record_command_result(
        self, command_id: str, ok: bool, error: str | None, at: datetime
    ) -> bool:
        """Log the reply to a command. The first reply wins: False if one was already logged.

        Raises :class:`NotFound` if the command was never logged (log it first).
        """
        with self._db.transaction("record_command_result") as c:
            cur = c.execute(
                "UPDATE commands SET ok = ?, error = ?, replied_at = ?"
                " WHERE command_id = ? AND ok IS NULL",
                (int(ok), error, to_db(at), command_id),
            )
            if cur.rowcount == 1:
                return True
            if c.execute("SELECT 1 FROM commands WHERE command_id = ?", (command_id,)).fetchone():
                return False
            raise NotFound("command", command_id)

    def command_result(self, command_id: str) -> tuple[bool, str | None] | None:
        """``(ok, error)`` of the reply to ``command_id``; None if unknown or not replied yet."""
        row = self._db.query_one(
            "SELECT ok, error FROM commands WHERE command_id = ? AND ok IS NOT NULL", (command_id,)
        )
        return None if row is None else (bool(row[0]), row[1])

    def command(self, command_id: str) -> CommandRecord | None:
        row = self._db.query_one("SELECT * FROM commands WHERE command_id = ?", (command_id,))
        return None if row is None else _record(row)

    def command_history(self, limit: int = 100) -> list[CommandRecord]:
        """Logged commands, newest first."""
        rows = self._db.query("SELECT * FROM commands ORDER BY seq DESC LIMIT ?", (limit,))
        return [_record(r) for r in rows]
