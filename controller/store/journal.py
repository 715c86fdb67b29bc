"""The journal of physical moves: intent before a move, confirmation (or failure) after.

Design invariant 1 lives here. The sequencer calls :meth:`JournalMixin.begin_move` *before* it
commands a motion and :meth:`JournalMixin.confirm_move` after the driver reports it done; both
commit with ``synchronous=FULL`` before returning. After a crash (or power loss) the open moves
are exactly the packs whose location is uncertain, and ``Store.pack_locations`` (see
:mod:`controller.store.location_log`) still says where every pack was last *confirmed* to be,
which is what recovery reconciles with the drivers' reports (:meth:`JournalMixin.set_location`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from controller.store.db import Database, from_db, opt_from_db, to_db
from controller.store.errors import MoveEnded, MoveRefused, NotFound
from controller.store.location_log import append_location, current_location
from controller.store.locations import holds_one, validate_location

MoveStatus = Literal["open", "confirmed", "failed"]


@dataclass(frozen=True, slots=True)
class Move:
    """One journaled move. ``status == "open"``: intended, outcome not recorded."""

    move_id: int
    pack_id: str
    src: str
    dst: str
    status: MoveStatus
    begun_at: datetime
    swap_id: str | None = None
    command_id: str | None = None
    ended_at: datetime | None = None
    reason: str | None = None


def _move(row: sqlite3.Row) -> Move:
    return Move(
        move_id=int(row["move_id"]),
        pack_id=row["pack_id"],
        src=row["src"],
        dst=row["dst"],
        status=cast(MoveStatus, row["status"]),
        begun_at=from_db(row["begun_at"]),
        swap_id=row["swap_id"],
        command_id=row["command_id"],
        ended_at=opt_from_db(row["ended_at"]),
        reason=row["reason"],
    )


def _end_move(
    c: sqlite3.Connection, move_id: int, status: MoveStatus, reason: str | None, at: str
) -> None:
    c.execute(
        "UPDATE moves SET status = ?, ended_at = ?, reason = ? WHERE move_id = ?",
        (status, at, reason, move_id),
    )


class JournalMixin:
    """Journal methods of :class:`~controller.store.Store`."""

    _db: Database

    # ---- moves --------------------------------------------------------------------------

    def begin_move(
        self,
        pack_id: str,
        src: str,
        dst: str,
        *,
        swap_id: str | None = None,
        command_id: str | None = None,
        at: datetime,
    ) -> int:
        """Journal the intent to move ``pack_id`` from ``src`` to ``dst``; return the move id.

        Call it before commanding the motion; it returns once the intent is on disk. It refuses
        (:class:`MoveRefused`, nothing written, so no motion may follow) an intent that
        contradicts the journal: the pack has a move still open, the journal last confirmed it
        somewhere other than ``src``, or ``dst`` holds one pack and already has another (or
        another pack is on its way there). A pack the journal has never seen may start
        anywhere. ``command_id`` is the command performing the move (a driver command id, or
        the operator's for a manual move), to correlate results and audits.
        """
        validate_location(src)
        validate_location(dst)
        if src == dst:
            raise MoveRefused(pack_id, src, dst, "source and destination are the same")
        with self._db.transaction("begin_move") as c:
            row = c.execute(
                "SELECT move_id, src, dst FROM moves WHERE pack_id = ? AND status = 'open'",
                (pack_id,),
            ).fetchone()
            if row is not None:
                raise MoveRefused(
                    pack_id, src, dst, f"move {row[0]} ({row[1]} -> {row[2]}) is still open"
                )
            current = current_location(c, pack_id)
            if current is not None and current != src:
                raise MoveRefused(pack_id, src, dst, f"the journal has it at {current}")
            if holds_one(dst):
                occupant = c.execute(
                    "SELECT pack_id FROM pack_location WHERE location = ? AND pack_id != ?"
                    " UNION SELECT pack_id FROM moves"
                    " WHERE status = 'open' AND dst = ? AND pack_id != ? LIMIT 1",
                    (dst, pack_id, dst, pack_id),
                ).fetchone()
                if occupant is not None:
                    raise MoveRefused(pack_id, src, dst, f"{dst} holds or awaits {occupant[0]}")
            cur = c.execute(
                "INSERT INTO moves (pack_id, src, dst, swap_id, command_id, begun_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (pack_id, src, dst, swap_id, command_id, to_db(at)),
            )
            return int(cur.lastrowid or 0)  # always set after an INSERT into a rowid table

    def confirm_move(self, move_id: int, at: datetime) -> bool:
        """Record that the move happened; the pack is now at its ``dst``.

        Returns False (and changes nothing) if it was already confirmed, so a redelivered
        driver result has its effect once. Raises :class:`MoveEnded` if the move had failed
        and :class:`NotFound` for an unknown id.
        """
        stamp = to_db(at)
        with self._db.transaction("confirm_move") as c:
            row = c.execute(
                "SELECT pack_id, dst, status FROM moves WHERE move_id = ?", (move_id,)
            ).fetchone()
            if row is None:
                raise NotFound("move", move_id)
            if row["status"] == "confirmed":
                return False
            if row["status"] == "failed":
                raise MoveEnded(move_id, "failed", "confirmed")
            _end_move(c, move_id, "confirmed", None, stamp)
            append_location(c, row["pack_id"], row["dst"], move_id=move_id, reason="move", at=stamp)
            return True

    def fail_move(
        self, move_id: int, reason: str, at: datetime, *, location: str | None = None
    ) -> bool:
        """Record that the move did not happen as intended, and why.

        The pack's confirmed location stays where it was (the move's ``src``) unless
        ``location`` says where it is now (``"unknown"`` if nobody can tell, e.g. the arm
        dropped it), written in the same transaction. Returns False if already failed;
        raises :class:`MoveEnded` if the move was confirmed.
        """
        if location is not None:
            validate_location(location)
        stamp = to_db(at)
        with self._db.transaction("fail_move") as c:
            row = c.execute(
                "SELECT pack_id, status FROM moves WHERE move_id = ?", (move_id,)
            ).fetchone()
            if row is None:
                raise NotFound("move", move_id)
            if row["status"] == "failed":
                return False
            if row["status"] == "confirmed":
                raise MoveEnded(move_id, "confirmed", "failed")
            _end_move(c, move_id, "failed", reason, stamp)
            if location is not None and location != current_location(c, row["pack_id"]):
                append_location(
                    c,
                    row["pack_id"],
                    location,
                    move_id=move_id,
                    reason=f"move {move_id} failed: {reason}",
                    at=stamp,
                )
            return True

    def open_moves(self) -> list[Move]:
        """Moves with an intent and no outcome, oldest first: after a crash, the uncertain packs."""
        rows = self._db.query("SELECT * FROM moves WHERE status = 'open' ORDER BY move_id")
        return [_move(r) for r in rows]

    def move(self, move_id: int) -> Move:
        row = self._db.query_one("SELECT * FROM moves WHERE move_id = ?", (move_id,))
        if row is None:
            raise NotFound("move", move_id)
        return _move(row)

    def moves(self, limit: int = 100, *, swap_id: str | None = None) -> list[Move]:
        """Journaled moves, newest first (of one swap if ``swap_id`` is given)."""
        if swap_id is None:
            rows = self._db.query("SELECT * FROM moves ORDER BY move_id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.query(
                "SELECT * FROM moves WHERE swap_id = ? ORDER BY move_id DESC LIMIT ?",
                (swap_id, limit),
            )
        return [_move(r) for r in rows]

    # ---- reconciliation ----------------------------------------------------------------

    def set_location(self, pack_id: str, location: str, reason: str, at: datetime) -> bool:
        """State where a pack is, outside a journaled move: reconciliation or a manual fix.

        This is the truth as of ``at``, so an open move of that pack is closed as failed
        ("superseded") in the same transaction; otherwise a late confirmation could overwrite
        the fix. Returns False if nothing changed (already there, no open move).
        """
        validate_location(location)
        stamp = to_db(at)
        with self._db.transaction("set_location") as c:
            changed = False
            open_move = c.execute(
                "SELECT move_id FROM moves WHERE pack_id = ? AND status = 'open'", (pack_id,)
            ).fetchone()
            if open_move is not None:
                _end_move(c, open_move[0], "failed", f"superseded by set_location: {reason}", stamp)
                changed = True
            if current_location(c, pack_id) != location:
                append_location(c, pack_id, location, move_id=None, reason=reason, at=stamp)
                changed = True
            return changed
