"""Errors of the store. Every SQLite error leaves the store as one of these, never raw.

The controller cannot move a pack it cannot journal, so a :class:`StoreError` on the critical
path means "stop issuing motion"; only :class:`StoreBusy` (another process holds the write lock
past the busy timeout) is worth a retry (decided, with every other code, in
:mod:`controller.error_table`).
"""

from __future__ import annotations

from controller.errors import SwapstationError


class StoreError(SwapstationError):
    """The store could not do what was asked (I/O error, corrupt file, closed store, ...)."""

    code = "store_error"


class StoreBusy(StoreError):
    """The database stayed locked by another connection for longer than the busy timeout."""

    code = "store_busy"


class NotFound(StoreError):
    """A move, swap or command id the store has never recorded."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"unknown {kind} {key!r}")


class InvalidLocation(StoreError, ValueError):
    """A location string that is not one of the known forms (``slot:3``, ``gripper``, ...)."""

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__(
            f"invalid location {location!r}: expected slot:<n>, gripper, vehicle:<id>, "
            "departed:<id> or unknown"
        )


class MoveRefused(StoreError):
    """``begin_move`` refused to journal an intent that contradicts what the journal knows.

    Refusing the intent is always safe: no motion may start without it. ``reason`` says what
    the journal knows instead (the pack is elsewhere, already moving, or the target is taken).
    """

    code = "move_refused"

    def __init__(self, pack_id: str, src: str, dst: str, reason: str) -> None:
        self.pack_id = pack_id
        self.src = src
        self.dst = dst
        self.reason = reason
        super().__init__(f"move of {pack_id} {src} -> {dst} refused: {reason}")


class MoveEnded(StoreError):
    """A move was confirmed after it failed, or failed after it was confirmed."""

    def __init__(self, move_id: int, status: str, wanted: str) -> None:
        self.move_id = move_id
        self.status = status
        self.wanted = wanted
        super().__init__(f"move {move_id} is already {status}; cannot mark it {wanted}")


class SwapConflict(StoreError):
    """A swap was begun while another is in flight, or a finished swap id was reused."""
