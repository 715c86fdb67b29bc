"""The connection: pragmas, migrations, transactions, and the one time format.

Why these settings:

* ``journal_mode=WAL``: readers (history queries) never block the writer, and a commit is one
  append + fsync of the WAL instead of a rollback journal dance.
* ``synchronous=FULL``: the WAL is fsynced at every commit, so a journaled intent or
  confirmation survives power loss, not only a process crash. In WAL mode ``NORMAL`` would
  lose the last commits on power loss; GB/T 29772-2024 asks for state kept through power loss.
* ``foreign_keys=ON``: SQLite leaves them off by default, per connection.
* ``busy_timeout``: another process (a maintenance tool) holding the write lock makes a call wait
  up to this long, then raise :class:`StoreBusy`, rather than fail at once.
* Autocommit connection (``isolation_level=None``) with explicit ``BEGIN IMMEDIATE``: each
  public call is one transaction that takes the write lock up front, so it cannot deadlock
  upgrading a read lock, and commits exactly once (one fsync) before it returns.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from controller.store.errors import StoreBusy, StoreError
from controller.store.schema import MIGRATIONS, SCHEMA_VERSION

MEMORY: Final = ":memory:"
DEFAULT_BUSY_TIMEOUT_MS: Final = 2000

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%f+00:00"

Params = tuple[Any, ...]


def to_db(at: datetime) -> str:
    """An aware datetime as fixed-width ISO-8601 UTC text (string order == time order).

    ``datetime.isoformat`` drops the microseconds when they are zero, which would break the
    ordering, hence the explicit format. Naive datetimes are refused: their zone is a guess.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got naive {at!r}")
    return at.astimezone(UTC).strftime(_TIME_FORMAT)


def from_db(text: str) -> datetime:
    """Inverse of :func:`to_db`: an aware UTC datetime."""
    return datetime.fromisoformat(text)


def opt_from_db(text: str | None) -> datetime | None:
    return None if text is None else from_db(text)


def _wrap(exc: sqlite3.Error, doing: str) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    busy = name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)
    cls = StoreBusy if busy else StoreError
    return cls(f"{doing}: {exc}")


class Database:
    """One SQLite connection with the store's settings and schema. Not thread-safe, on purpose.

    The controller calls the store from its event loop thread only; sqlite3's
    ``check_same_thread`` stays on so a call from another thread fails loudly.
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path

    @classmethod
    def connect(
        cls, path: str | os.PathLike[str] | None, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
    ) -> Database:
        """Open (creating if needed) the database at ``path``; ``None`` means in memory.

        An empty path is refused rather than handed to SQLite, which would make a private
        temporary database: a station configured with ``""`` would silently keep nothing.
        """
        target = MEMORY if path is None else os.fspath(path)
        if not target:
            raise StoreError("empty store path (use None or ':memory:' for an in-memory store)")
        try:
            if target != MEMORY:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {target!r}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        db = cls(conn, target)
        try:
            db._configure(busy_timeout_ms)
            db._migrate()
        except BaseException:
            db.close()
            raise
        return db

    # ---- setup --------------------------------------------------------------------------

    def _configure(self, busy_timeout_ms: int) -> None:
        conn = self.conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise _wrap(exc, f"configuring {self.path!r}") from exc
        # In-memory databases have no WAL (mode "memory"); a file that refuses WAL (some network
        # file systems) would silently weaken durability, so refuse it.
        if self.path != MEMORY and mode != "wal":
            raise StoreError(f"{self.path!r}: could not enable WAL (journal_mode is {mode!r})")

    def _migrate(self) -> None:
        with self.transaction() as c:
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path!r} has schema version {current}, newer than this software's "
                f"{SCHEMA_VERSION}; refusing to guess (upgrade the controller)"
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            with self.transaction() as c:
                # Another process may have migrated between our read and our write lock.
                done = c.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,))
                if done.fetchone() is not None:
                    continue
                for statement in statements:
                    c.execute(statement)
                # Real wall time on purpose: when the file was migrated, not station time.
                c.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, to_db(datetime.now(tz=UTC))),
                )

    # ---- use ----------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path!r} is closed")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    @contextmanager
    def transaction(self, doing: str = "write") -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (one fsync), or rollback.

        sqlite3 errors inside become :class:`StoreError`; other exceptions (the store's own
        refusals) roll back and propagate unchanged.
        """
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _wrap(exc, doing) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                # If ROLLBACK fails too the connection is broken; the original error matters.
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _wrap(exc, doing) from exc
            raise

    def query(self, sql: str, params: Params = (), doing: str = "read") -> list[sqlite3.Row]:
        """A read outside any explicit transaction (one statement, one consistent snapshot)."""
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _wrap(exc, doing) from exc

    def query_one(self, sql: str, params: Params = (), doing: str = "read") -> sqlite3.Row | None:
        rows = self.query(sql, params, doing)
        return rows[0] if rows else None

    def schema_version(self) -> int:
        row = self.query_one("SELECT max(version) FROM schema_version")
        return 0 if row is None or row[0] is None else int(row[0])

    def pragma(self, name: str) -> Any:
        """The current value of a PRAGMA on *this* connection (some are per connection)."""
        if not name.replace("_", "").isalpha():
            raise ValueError(f"not a pragma name: {name!r}")
        row = self.query_one(f"PRAGMA {name}")
        return None if row is None else row[0]

    def close(self) -> None:
        """Close the connection; idempotent. Committed data is already durable."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
