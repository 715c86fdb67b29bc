"""The schema as an ordered list of migrations. Append; never edit a migration once shipped.

A station's database outlives many software versions, so each migration is applied once, in
order, in its own transaction (SQLite DDL is transactional), and recorded in
``schema_version``. A database written by a newer version is refused rather than guessed at.

Timestamps are TEXT in one fixed ISO-8601 UTC format (see :func:`controller.store.db.to_db`) so
that string order is time order.
"""

from __future__ import annotations

from typing import Final

#: ``(version, statements)`` in application order. Version numbers are 1, 2, 3, ...
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            # ---- journal of physical moves ----------------------------------------------
            # One row per intended move. 'open' = intent journaled, outcome not (yet) known:
            # after a crash these are exactly the packs whose location is uncertain.
            """
            CREATE TABLE moves (
                move_id     INTEGER PRIMARY KEY AUTOINCREMENT,
                pack_id     TEXT NOT NULL,
                src         TEXT NOT NULL,
                dst         TEXT NOT NULL,
                swap_id     TEXT,
                command_id  TEXT,
                status      TEXT NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'confirmed', 'failed')),
                begun_at    TEXT NOT NULL,
                ended_at    TEXT,
                reason      TEXT,
                CHECK ((status = 'open') = (ended_at IS NULL))
            )
            """,
            # A pack is physically in one move at a time; the schema enforces it too.
            "CREATE UNIQUE INDEX moves_one_open_per_pack ON moves(pack_id) WHERE status = 'open'",
            # open_moves() must not scan the whole history after a crash.
            "CREATE INDEX moves_open ON moves(move_id) WHERE status = 'open'",
            "CREATE INDEX moves_by_swap ON moves(swap_id)",
            # Every confirmed location change, append-only: confirmed moves, reconciliation,
            # manual fixes and seeding. The history operators and recovery read.
            """
            CREATE TABLE location_log (
                seq       INTEGER PRIMARY KEY,
                pack_id   TEXT NOT NULL,
                location  TEXT NOT NULL,
                previous  TEXT,
                move_id   INTEGER REFERENCES moves(move_id),
                reason    TEXT NOT NULL,
                at        TEXT NOT NULL
            )
            """,
            "CREATE INDEX location_log_by_pack ON location_log(pack_id, seq)",
            # The last row of location_log per pack, maintained in the same transaction, so
            # "where is every pack" and "who is in slot 3" stay O(packs) as the log grows.
            """
            CREATE TABLE pack_location (
                pack_id   TEXT PRIMARY KEY,
                location  TEXT NOT NULL,
                seq       INTEGER NOT NULL REFERENCES location_log(seq),
                at        TEXT NOT NULL
            ) WITHOUT ROWID
            """,
            "CREATE INDEX pack_location_by_location ON pack_location(location)",
            # ---- swaps ------------------------------------------------------------------
            """
            CREATE TABLE swaps (
                swap_id     TEXT PRIMARY KEY,
                vehicle_id  TEXT,
                started_at  TEXT NOT NULL,
                ended_at    TEXT,
                result      TEXT CHECK (result IN ('completed', 'aborted', 'estopped')),
                record      TEXT,
                CHECK ((ended_at IS NULL) = (result IS NULL))
            )
            """,
            "CREATE INDEX swaps_by_start ON swaps(started_at)",
            "CREATE INDEX swaps_in_flight ON swaps(started_at) WHERE ended_at IS NULL",
            # ---- alarms -----------------------------------------------------------------
            # One row per occurrence: an alarm id may be raised again after it cleared.
            """
            CREATE TABLE alarms (
                seq              INTEGER PRIMARY KEY,
                alarm_id         TEXT NOT NULL,
                code             TEXT NOT NULL,
                severity         TEXT NOT NULL
                                 CHECK (severity IN ('warning', 'error', 'critical', 'fatal')),
                text             TEXT NOT NULL,
                hint             TEXT NOT NULL,
                raised_at        TEXT NOT NULL,
                active           INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
                cleared_at       TEXT,
                acknowledged     INTEGER NOT NULL DEFAULT 0 CHECK (acknowledged IN (0, 1)),
                acknowledged_by  TEXT,
                acknowledged_at  TEXT,
                CHECK ((active = 1) = (cleared_at IS NULL)),
                CHECK ((acknowledged = 1) = (acknowledged_at IS NOT NULL))
            )
            """,
            "CREATE UNIQUE INDEX alarms_one_active_per_id ON alarms(alarm_id) WHERE active = 1",
            "CREATE INDEX alarms_by_id ON alarms(alarm_id, seq)",
            "CREATE INDEX alarms_active ON alarms(seq) WHERE active = 1",
            "CREATE INDEX alarms_unacknowledged ON alarms(seq) WHERE acknowledged = 0",
            # ---- operator commands --------------------------------------------------------
            """
            CREATE TABLE commands (
                seq          INTEGER PRIMARY KEY,
                command_id   TEXT NOT NULL UNIQUE,
                cmd          TEXT NOT NULL,
                args         TEXT NOT NULL,
                sender       TEXT,
                received_at  TEXT NOT NULL,
                ok           INTEGER CHECK (ok IN (0, 1)),
                error        TEXT,
                replied_at   TEXT,
                CHECK ((ok IS NULL) = (replied_at IS NULL))
            )
            """,
        ),
    ),
    (
        2,
        (
            # ---- alarms as ISA-18.2 has them: shelving, and history by time ---------------
            # The shelf an occurrence is on now (NULL: none), so a restart keeps it shelved...
            "ALTER TABLE alarms ADD COLUMN shelved_until TEXT",
            "ALTER TABLE alarms ADD COLUMN shelved_by TEXT",
            "ALTER TABLE alarms ADD COLUMN shelve_reason TEXT",
            # ...and every shelving ever, with who put it there and who (or the clock) ended it.
            """
            CREATE TABLE alarm_shelves (
                seq           INTEGER PRIMARY KEY,
                alarm_seq     INTEGER NOT NULL REFERENCES alarms(seq),
                shelved_at    TEXT NOT NULL,
                shelved_by    TEXT,
                reason        TEXT NOT NULL,
                until         TEXT NOT NULL,
                unshelved_at  TEXT,
                unshelved_by  TEXT
            )
            """,
            "CREATE INDEX alarm_shelves_by_alarm ON alarm_shelves(alarm_seq, seq)",
            # alarm history by date range reads occurrences raised before its end
            "CREATE INDEX alarms_by_raised ON alarms(raised_at)",
        ),
    ),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION: Final[int] = MIGRATIONS[-1][0]
