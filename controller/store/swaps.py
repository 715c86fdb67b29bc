"""Swaps: which one is in flight (for recovery) and the records of finished ones.

``begin_swap`` is written when a truck's swap starts and ``end_swap`` when it ends, so that
after a crash :meth:`SwapsMixin.swap_in_flight` tells the controller to come up aborted with a
"recovery needed" alarm instead of carrying on. ``record_swap`` stores the full
:class:`~controller.contract.SwapRecord` (as its JSON, so the contract stays the one schema).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from controller.contract import SwapRecord
from controller.store.db import Database, to_db
from controller.store.errors import NotFound, SwapConflict

SwapResult = Literal["completed", "aborted", "estopped"]


class SwapsMixin:
    """Swap methods of :class:`~controller.store.Store`."""

    _db: Database

    def begin_swap(self, swap_id: str, vehicle_id: str | None, at: datetime) -> bool:
        """Record that a swap started. One swap at a time: the station has one bay.

        Returns False if this swap is already in flight (a repeated call); raises
        :class:`SwapConflict` if another swap is in flight or ``swap_id`` already ended.
        """
        stamp = to_db(at)
        with self._db.transaction("begin_swap") as c:
            row = c.execute(
                "SELECT swap_id FROM swaps WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                if row[0] == swap_id:
                    return False
                raise SwapConflict(f"cannot begin swap {swap_id!r}: swap {row[0]!r} is in flight")
            if c.execute("SELECT 1 FROM swaps WHERE swap_id = ?", (swap_id,)).fetchone():
                raise SwapConflict(f"swap id {swap_id!r} was already used")
            c.execute(
                "INSERT INTO swaps (swap_id, vehicle_id, started_at) VALUES (?, ?, ?)",
                (swap_id, vehicle_id, stamp),
            )
            return True

    def end_swap(self, swap_id: str, result: SwapResult, at: datetime) -> bool:
        """Record that a swap ended with ``result``; False if it had already ended."""
        stamp = to_db(at)
        with self._db.transaction("end_swap") as c:
            row = c.execute("SELECT ended_at FROM swaps WHERE swap_id = ?", (swap_id,)).fetchone()
            if row is None:
                raise NotFound("swap", swap_id)
            if row[0] is not None:
                return False
            c.execute(
                "UPDATE swaps SET ended_at = ?, result = ? WHERE swap_id = ?",
                (stamp, result, swap_id),
            )
            return True

    def swaps_begun(self) -> int:
        """How many swaps this journal has seen begin (the next one is numbered after them)."""
        row = self._db.query_one("SELECT COUNT(*) FROM swaps")
        return int(row[0]) if row else 0

    def swap_in_flight(self) -> str | None:
        """The id of the swap begun and not ended (after a crash: the interrupted one)."""
        row = self._db.query_one(
            "SELECT swap_id FROM swaps WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT 1"
        )
        return None if row is None else str(row[0])

    def record_swap(self, record: SwapRecord) -> None:
        """Store the record of a finished swap; this also ends it if it was in flight.

        Recording the same swap again replaces its record (the last word wins), so a retried
        write is harmless.
        """
        with self._db.transaction("record_swap") as c:
            c.execute(
                "INSERT INTO swaps (swap_id, vehicle_id, started_at, ended_at, result, record)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (swap_id) DO UPDATE SET vehicle_id = excluded.vehicle_id,"
                " started_at = excluded.started_at, ended_at = excluded.ended_at,"
                " result = excluded.result, record = excluded.record",
                (
                    record.swap_id,
                    record.vehicle_id,
                    to_db(record.started_at),
                    to_db(record.ended_at),
                    record.result,
                    record.model_dump_json(),
                ),
            )

    def swap(self, swap_id: str) -> SwapRecord | None:
        """The record of one swap, or None if it has none (unknown, or ended without one)."""
        row = self._db.query_one("SELECT record FROM swaps WHERE swap_id = ?", (swap_id,))
        if row is None or row[0] is None:
            return None
        return SwapRecord.model_validate_json(row[0])

    def swaps(self, limit: int = 50) -> list[SwapRecord]:
        """Records of finished swaps, newest first."""
        rows = self._db.query(
            "SELECT record FROM swaps WHERE record IS NOT NULL"
            " ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [SwapRecord.model_validate_json(r[0]) for r in rows]
