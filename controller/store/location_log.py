"""Confirmed pack locations: the append-only ``location_log`` and its projection.

Every confirmed change of where a pack is (a confirmed move, reconciliation, a manual fix, the
first seeding) appends one row to ``location_log``; ``pack_location`` holds the last row per
pack, written in the same transaction, so "where is every pack" and "who is in slot 3" stay
cheap however long the log grows. :meth:`LocationsMixin._journal_problems` checks the two agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.store.db import Database, from_db, to_db
from controller.store.locations import validate_location


@dataclass(frozen=True, slots=True)
class LocationChange:
    """One confirmed change of a pack's location, and why (``"move"``, ``"seed"``, a text)."""

    seq: int
    pack_id: str
    location: str
    previous: str | None
    move_id: int | None
    reason: str
    at: datetime


def _change(row: sqlite3.Row) -> LocationChange:
    return LocationChange(
        seq=int(row["seq"]),
        pack_id=row["pack_id"],
        location=row["location"],
        previous=row["previous"],
        move_id=row["move_id"],
        reason=row["reason"],
        at=from_db(row["at"]),
    )


def current_location(c: sqlite3.Connection, pack_id: str) -> str | None:
    """The pack's last confirmed location inside an open transaction ``c``."""
    row = c.execute("SELECT location FROM pack_location WHERE pack_id = ?", (pack_id,)).fetchone()
    return None if row is None else str(row[0])


def append_location(
    c: sqlite3.Connection,
    pack_id: str,
    location: str,
    *,
    move_id: int | None,
    reason: str,
    at: str,
) -> None:
    """Log a confirmed location and update the projection, inside transaction ``c``."""
    previous = current_location(c, pack_id)
    cur = c.execute(
        "INSERT INTO location_log (pack_id, location, previous, move_id, reason, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (pack_id, location, previous, move_id, reason, at),
    )
    c.execute(
        "INSERT INTO pack_location (pack_id, location, seq, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (pack_id) DO UPDATE"
        " SET location = excluded.location, seq = excluded.seq, at = excluded.at",
        (pack_id, location, cur.lastrowid, at),
    )


class LocationsMixin:
    """Location methods of :class:`~controller.store.Store` (``set_location`` is in the journal,
    because it also closes open moves)."""

    _db: Database

    def pack_locations(self) -> dict[str, str]:
        """Every pack's last confirmed location. Open moves do not change it until confirmed."""
        rows = self._db.query("SELECT pack_id, location FROM pack_location ORDER BY pack_id")
        return {r[0]: r[1] for r in rows}

    def seed_packs(self, locations: Mapping[str, str], at: datetime) -> list[str]:
        """Give packs the journal has never seen their starting location; return their ids.

        Idempotent: packs the journal already knows keep their journaled location (the
        journal, not the config file, is the source of truth once a station has run).
        """
        for location in locations.values():
            validate_location(location)
        stamp = to_db(at)
        seeded: list[str] = []
        with self._db.transaction("seed_packs") as c:
            for pack_id, location in sorted(locations.items()):
                if current_location(c, pack_id) is None:
                    append_location(c, pack_id, location, move_id=None, reason="seed", at=stamp)
                    seeded.append(pack_id)
        return seeded

    def location_history(
        self, pack_id: str | None = None, limit: int = 100
    ) -> list[LocationChange]:
        """Confirmed location changes, newest first (of one pack if ``pack_id`` is given)."""
        if pack_id is None:
            rows = self._db.query("SELECT * FROM location_log ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = self._db.query(
                "SELECT * FROM location_log WHERE pack_id = ? ORDER BY seq DESC LIMIT ?",
                (pack_id, limit),
            )
        return [_change(r) for r in rows]

    def _journal_problems(self) -> list[str]:
        """``pack_location`` must equal a replay of ``location_log``; say where it does not."""
        replay: dict[str, str] = {}
        for row in self._db.query("SELECT pack_id, location FROM location_log ORDER BY seq"):
            replay[row[0]] = row[1]
        current = self.pack_locations()
        return [
            f"pack {p}: pack_location says {current.get(p)!r}, the log says {replay.get(p)!r}"
            for p in sorted(set(replay) | set(current))
            if replay.get(p) != current.get(p)
        ]
