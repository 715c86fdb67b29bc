"""Alarms: raised, acknowledged by an operator (who and when), shelved (who, why, until when),
cleared; kept as history, readable by time range.

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
from controller.contract.results import AlarmOccurrence, AlarmShelf
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
        cleared_at=opt_from_db(row["cleared_at"]),
        shelved_until=opt_from_db(row["shelved_until"]),
        shelved_by=row["shelved_by"],
        shelve_reason=row["shelve_reason"],
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

    # ---- shelving (ISA-18.2): the current shelf on the occurrence, every shelf in its table ----
    def shelve_alarm(
        self, alarm_id: str, until: datetime, by: str | None, reason: str, at: datetime
    ) -> bool:
        """Shelve the latest occurrence of ``alarm_id`` until ``until``; a shelf it is on
        already ends now (replaced, by the same ``by``). False if there is no occurrence."""
        with self._db.transaction("shelve_alarm") as c:
            row = c.execute(
                "SELECT max(seq) AS seq FROM alarms WHERE alarm_id = ?", (alarm_id,)
            ).fetchone()
            if row is None or row["seq"] is None:
                return False
            seq = row["seq"]
            c.execute(
                "UPDATE alarm_shelves SET unshelved_at = ?, unshelved_by = ?"
                " WHERE alarm_seq = ? AND unshelved_at IS NULL",
                (to_db(at), by, seq),
            )
            c.execute(
                "INSERT INTO alarm_shelves (alarm_seq, shelved_at, shelved_by, reason, until)"
                " VALUES (?, ?, ?, ?, ?)",
                (seq, to_db(at), by, reason, to_db(until)),
            )
            c.execute(
                "UPDATE alarms SET shelved_until = ?, shelved_by = ?, shelve_reason = ?"
                " WHERE seq = ?",
                (to_db(until), by, reason, seq),
            )
            return True

    def unshelve_alarm(self, alarm_id: str, by: str | None, at: datetime) -> bool:
        """End the shelf of the latest occurrence of ``alarm_id`` (``by`` None: its time
        ended). False if it was not shelved."""
        with self._db.transaction("unshelve_alarm") as c:
            cur = c.execute(
                "UPDATE alarms SET shelved_until = NULL, shelved_by = NULL, shelve_reason = NULL"
                " WHERE seq = (SELECT max(seq) FROM alarms WHERE alarm_id = ?)"
                " AND shelved_until IS NOT NULL",
                (alarm_id,),
            )
            if cur.rowcount != 1:
                return False
            c.execute(
                "UPDATE alarm_shelves SET unshelved_at = ?, unshelved_by = ?"
                " WHERE unshelved_at IS NULL"
                " AND alarm_seq = (SELECT max(seq) FROM alarms WHERE alarm_id = ?)",
                (to_db(at), by, alarm_id),
            )
            return True

    def alarm_occurrences(
        self, since: datetime, until: datetime, limit: int = 200
    ) -> list[AlarmOccurrence]:
        """The occurrences on the alarm list at some time in [since, until), oldest first (at
        most ``limit``): raised before ``until``, and not already off the list (returned to
        normal and acknowledged) before ``since``."""
        rows = self._db.query(
            "SELECT * FROM alarms WHERE raised_at < ?"
            " AND NOT (active = 0 AND acknowledged = 1"
            "          AND max(cleared_at, acknowledged_at) < ?)"
            " ORDER BY raised_at, seq LIMIT ?",
            (to_db(until), to_db(since), limit),
        )
        if not rows:
            return []
        seqs = [r["seq"] for r in rows]
        shelves: dict[int, list[AlarmShelf]] = {}
        marks = ",".join("?" * len(seqs))
        for s in self._db.query(
            f"SELECT * FROM alarm_shelves WHERE alarm_seq IN ({marks}) ORDER BY seq", tuple(seqs)
        ):
            shelves.setdefault(s["alarm_seq"], []).append(
                AlarmShelf(
                    shelved_at=from_db(s["shelved_at"]),
                    shelved_by=s["shelved_by"],
                    reason=s["reason"],
                    until=from_db(s["until"]),
                    unshelved_at=opt_from_db(s["unshelved_at"]),
                    unshelved_by=s["unshelved_by"],
                )
            )
        return [
            AlarmOccurrence(
                alarm=_info(r),
                acknowledged_by=r["acknowledged_by"],
                acknowledged_at=opt_from_db(r["acknowledged_at"]),
                cleared_at=opt_from_db(r["cleared_at"]),
                shelves=shelves.get(r["seq"], []),
            )
            for r in rows
        ]
