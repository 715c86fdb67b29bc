"""The :class:`Store`: one SQLite file holding the journal, swaps, alarms and command log."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Self

from controller.store.alarms import AlarmsMixin
from controller.store.commands import CommandsMixin
from controller.store.db import DEFAULT_BUSY_TIMEOUT_MS, Database
from controller.store.journal import JournalMixin
from controller.store.location_log import LocationsMixin
from controller.store.swaps import SwapsMixin


class Store(JournalMixin, LocationsMixin, SwapsMixin, AlarmsMixin, CommandsMixin):
    """The controller's source of truth for where packs are (never the broker).

    Synchronous on purpose: every call is one small transaction (sub-millisecond, plus one
    fsync for writes), made from the event loop thread. Each write call commits durably before
    it returns, so "returned" means "survives a crash or power loss".

    Use :meth:`open`, not the constructor::

        with Store.open("/var/lib/swapstation/station.db") as store:
            move = store.begin_move("P-001", "slot:3", "gripper", at=clock.now())
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> Store:
        """Open or create the store at ``path`` (``None`` or ``":memory:"``: in memory).

        Applies pending migrations. Raises :class:`StoreError` if the file cannot be opened,
        cannot use WAL, or was written by a newer schema version.
        """
        return cls(Database.connect(path, busy_timeout_ms=busy_timeout_ms))

    def close(self) -> None:
        """Close the store; idempotent. Later calls raise :class:`StoreError`."""
        self._db.close()

    @property
    def path(self) -> str:
        return self._db.path

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def schema_version(self) -> int:
        return self._db.schema_version()

    def settings(self) -> dict[str, Any]:
        """The durability-relevant PRAGMAs as this connection has them (for checks and logs).

        ``synchronous`` is reported as SQLite's number (2 = FULL); ``journal_mode`` is
        ``"memory"`` for an in-memory store.
        """
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        return {name: self._db.pragma(name) for name in names}

    def check_integrity(self) -> list[str]:
        """Problems with the file itself; empty when sound. The controller runs it once at
        start-up (:meth:`controller.station.recovery.JournalRecovery.recover`).

        SQLite's ``quick_check`` and ``foreign_key_check``, and that the current pack
        locations equal a replay of the location log. O(size of the database).
        """
        problems = [
            f"quick_check: {row[0]}"
            for row in self._db.query("PRAGMA quick_check")
            if row[0] != "ok"
        ]
        problems += [
            f"foreign key: {row[0]} row {row[1]} -> {row[2]}"
            for row in self._db.query("PRAGMA foreign_key_check")
        ]
        return problems + self._journal_problems()
