"""Alarms: raised, acknowledged by an operator (who and when), cleared; kept as history.

An alarm id names a condition (e.g. ``recovery-needed``); each time it is raised after it
cleared is a new occurrence row, so history keeps every occurrence and a re-raised condition is
never hidden behind an old, cleared one. Raising an id that is still active changes nothing
(a repeated raise is not a second alarm).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from controller.contract import AlarmInfo, Severity
from controller.store.db import Database, from_db, opt_from_db, to_db


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm occurrence with what :class:`AlarmInfo` leaves out: who acknowledged, when."""

    info: AlarmInfo
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    cleared_at: datetime | None


def _info(row: sqlite3.Row) -> AlarmInfo:
    return AlarmInfo(
        id=row["alarm_id"],
        code=row["code"],
        severity=Severity(row["severity"]),
        text=row["text"],
        hint=row["hint"],
        raised_at=from_db(row["raised_at"]),
        acknowledged=bool(row["acknowledged"]),
        active=bool(row["active"]),
    )


def _record(row: sqlite3.Row) -> AlarmRecord:
    return AlarmRecord(
        info=_info(row),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=opt_from_db(row["acknowledged_at"]),
        cleared_at=opt_from_db(row["cleared_at"]),
    )


class AlarmsMixin:
    """Alarm methods of :class:`~controller.store.Store`."""

    _db: Database

    def raise_alarm(self, alarm: AlarmInfo) -> bool:
        """Store a newly raised alarm; False if an alarm with this id is already active.

        A raised alarm is active and unacknowledged whatever ``alarm.active`` and
        ``alarm.acknowledged`` say.
        """
        with self._db.transaction("raise_alarm") as c:
            cur = c.execute(
                "INSERT INTO alarms (alarm_id, code, severity, text, hint, raised_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    alarm.id,
                    alarm.code,
                    alarm.severity.value,
                    alarm.text,
                    alarm.hint,
                    to_db(alarm.raised_at),
                ),
            )
            return cur.rowcount == 1

    def ack_alarm(self, alarm_id: str, by: str | None, at: datetime) -> bool:
        """Acknowledge the latest unacknowledged occurrence of ``alarm_id`` (active or cleared).

        Returns False if there is none (unknown id, or already acknowledged), so a repeated
        acknowledgement is harmless and the first operator's name is kept.
        """
        with self._db.transaction("ack_alarm") as c:
            cur = c.execute(
                "UPDATE alarms SET acknowledged = 1, acknowledged_by = ?, acknowledged_at = ?"
                " WHERE seq = (SELECT max(seq) FROM alarms"
                "              WHERE alarm_id = ? AND acknowledged = 0)",
                (by, to_db(at), alarm_id),
            )
            return cur.rowcount == 1

    def clear_alarm(self, alarm_id: str, at: datetime) -> bool:
        """The condition is gone: the alarm stops being active. False if it was not active.

        Clearing does not acknowledge: an operator still has to see it (ISA-18.2's
        "return to normal, unacknowledged").
        """
        with self._db.transaction("clear_alarm") as c:
            cur = c.execute(
                "UPDATE alarms SET active = 0, cleared_at = ? WHERE alarm_id = ? AND active = 1",
                (to_db(at), alarm_id),
            )
            return cur.rowcount == 1

    def active_alarms(self, *, include_unacknowledged: bool = False) -> list[AlarmInfo]:
        """Active alarms, oldest first; with ``include_unacknowledged`` also cleared ones that
        no operator has acknowledged yet (what an alarm list should still show)."""
        if include_unacknowledged:
            # A UNION of the two partial indexes; an OR would scan the whole history.
            sql = (
                "SELECT * FROM alarms WHERE seq IN (SELECT seq FROM alarms WHERE active = 1"
                " UNION SELECT seq FROM alarms WHERE acknowledged = 0) ORDER BY seq"
            )
        else:
            sql = "SELECT * FROM alarms WHERE active = 1 ORDER BY seq"
        rows = self._db.query(sql)
        return [_info(r) for r in rows]

    def alarm_history(self, limit: int = 100) -> list[AlarmRecord]:
        """Every alarm occurrence, newest first, with who acknowledged it and when."""
        rows = self._db.query("SELECT * FROM alarms ORDER BY seq DESC LIMIT ?", (limit,))
        return [_record(r) for r in rows]
