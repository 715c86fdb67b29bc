"""The store against real SQLite, in memory and on disk: journal, crash recovery, records.

The crash tests SIGKILL a child process that is writing the journal and reopen its file, which
is what a controller crash looks like to the store (power loss is beyond a test's reach; it is
what ``synchronous=FULL`` is for, and the settings test checks it is on).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from controller.contract import AlarmInfo, PackInfo, Severity, SwapRecord
from controller.error_table import kind_of
from controller.store import (
    SCHEMA_VERSION,
    InvalidLocation,
    MoveEnded,
    MoveRefused,
    NotFound,
    Store,
    StoreBusy,
    StoreError,
    SwapConflict,
    check_conservation,
)

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    path = None if request.param == "memory" else str(tmp_path / "station.db")
    with Store.open(path) as s:
        yield s


def _run_child(code: str, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert proc.stdout is not None
    proc.stdout.close()


# ---- opening, settings, migrations ----------------------------------------------------


def test_file_store_is_wal_synchronous_full_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "station.db"  # parent directories are created
    with Store.open(str(path), busy_timeout_ms=1234) as s:
        assert s.settings() == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "foreign_keys": 1,
            "busy_timeout": 1234,
        }
        assert s.schema_version() == SCHEMA_VERSION
        assert s.check_integrity() == []
    # WAL is a property of the file: another connection sees it too.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


@pytest.mark.parametrize("path", [None, ":memory:"])
def test_memory_store_has_the_same_settings_but_no_wal(path: str | None) -> None:
    with Store.open(path) as s:
        settings = s.settings()
        assert settings["journal_mode"] == "memory"
        assert (settings["synchronous"], settings["foreign_keys"]) == (2, 1)
        assert s.path == ":memory:"


def test_migrations_apply_once_and_reopen_keeps_data(tmp_path: Path) -> None:
    path = str(tmp_path / "station.db")
    with Store.open(path) as s:
        s.seed_packs({"P1": "slot:1"}, at(0))
    for _ in range(3):
        with Store.open(path) as s:
            assert s.schema_version() == SCHEMA_VERSION
            assert s.pack_locations() == {"P1": "slot:1"}
    raw = sqlite3.connect(path)
    try:
        versions = [r[0] for r in raw.execute("SELECT version FROM schema_version")]
    finally:
        raw.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "station.db")
    Store.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, "x"))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer than this software"):
        Store.open(path)


def test_unopenable_or_empty_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open(tmp_path / "file" / "station.db")
    with pytest.raises(StoreError, match="empty store path"):
        Store.open("")
    (tmp_path / "garbage.db").write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store.open(tmp_path / "garbage.db")


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.db")) as s:
        pass
    assert s.closed
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.pack_locations()


def test_locked_database_raises_retryable_store_busy(tmp_path: Path) -> None:
    path = str(tmp_path / "station.db")
    with Store.open(path, busy_timeout_ms=50) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(StoreBusy) as info:
                s.seed_packs({"P1": "slot:1"}, at(0))
            assert kind_of(info.value).retryable  # the error table's word
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert s.seed_packs({"P1": "slot:1"}, at(0)) == ["P1"]


def test_timestamps_must_be_aware_and_come_back_as_utc(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.begin_move("P1", "slot:1", "gripper", at=datetime(2026, 5, 1, 8, 0))
    cst = timezone(timedelta(hours=8))
    move_id = store.begin_move(
        "P1", "slot:1", "gripper", at=datetime(2026, 5, 1, 16, 0, tzinfo=cst)
    )
    begun = store.move(move_id).begun_at
    assert begun == T0 and begun.utcoffset() == timedelta(0)


# ---- journal of physical moves --------------------------------------------------------


def test_intent_then_confirmation_moves_the_pack(store: Store) -> None:
    assert store.seed_packs({"P1": "slot:1", "P2": "slot:2"}, at(0)) == ["P1", "P2"]
    move_id = store.begin_move("P1", "slot:1", "gripper", swap_id="S1", command_id="c1", at=at(1))
    [open_move] = store.open_moves()
    assert (open_move.move_id, open_move.pack_id, open_move.status) == (move_id, "P1", "open")
    assert (open_move.swap_id, open_move.command_id, open_move.begun_at) == ("S1", "c1", at(1))
    assert store.pack_locations().get("P1") == "slot:1"  # not confirmed yet

    assert store.confirm_move(move_id, at(2)) is True
    assert store.open_moves() == []
    assert store.pack_locations() == {"P1": "gripper", "P2": "slot:2"}
    done = store.move(move_id)
    assert (done.status, done.ended_at, done.reason) == ("confirmed", at(2), None)
    # A redelivered driver result has its effect once.
    assert store.confirm_move(move_id, at(3)) is False
    assert store.move(move_id).ended_at == at(2)
    assert [c.location for c in store.location_history("P1")] == ["gripper", "slot:1"]
    assert store.location_history("P1")[0].previous == "slot:1"
    assert store.location_history("P1")[0].move_id == move_id
    assert store.check_integrity() == []


def test_failed_move_keeps_the_last_confirmed_location(store: Store) -> None:
    store.seed_packs({"P1": "vehicle:T1"}, at(0))
    move_id = store.begin_move("P1", "vehicle:T1", "gripper", at=at(1))
    assert store.fail_move(move_id, "arm.lift: LOCKS_CLOSED", at(2)) is True
    assert store.fail_move(move_id, "again", at(3)) is False
    failed = store.move(move_id)
    assert (failed.status, failed.reason, failed.ended_at) == (
        "failed",
        "arm.lift: LOCKS_CLOSED",
        at(2),
    )
    assert store.pack_locations().get("P1") == "vehicle:T1"
    with pytest.raises(MoveEnded):
        store.confirm_move(move_id, at(4))
    # the same move may be tried again from where the pack is
    retry = store.begin_move("P1", "vehicle:T1", "gripper", at=at(5))
    store.confirm_move(retry, at(6))
    with pytest.raises(MoveEnded):
        store.fail_move(retry, "too late", at(7))
    assert store.pack_locations().get("P1") == "gripper"


def test_failed_move_can_say_where_the_pack_is_now(store: Store) -> None:
    store.seed_packs({"P1": "slot:4"}, at(0))
    move_id = store.begin_move("P1", "slot:4", "gripper", at=at(1))
    store.fail_move(move_id, "arm dropped the pack", at(2), location="unknown")
    assert store.pack_locations().get("P1") == "unknown"
    change = store.location_history("P1")[0]
    assert (change.location, change.move_id) == ("unknown", move_id)
    assert "arm dropped the pack" in change.reason


def test_unknown_move_ids_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.confirm_move(999, at(0))
    with pytest.raises(NotFound):
        store.fail_move(999, "x", at(0))
    with pytest.raises(NotFound):
        store.move(999)


def test_begin_move_refuses_intents_that_contradict_the_journal(store: Store) -> None:
    store.seed_packs({"P1": "slot:1", "P2": "slot:2", "P3": "gripper"}, at(0))
    with pytest.raises(MoveRefused, match="the journal has it at slot:1"):
        store.begin_move("P1", "slot:9", "gripper", at=at(1))
    with pytest.raises(MoveRefused, match="slot:2 holds or awaits P2"):
        store.begin_move("P3", "gripper", "slot:2", at=at(1))
    with pytest.raises(MoveRefused, match="same"):
        store.begin_move("P1", "slot:1", "slot:1", at=at(1))
    with pytest.raises(InvalidLocation):
        store.begin_move("P1", "slot:1", "slot3", at=at(1))

    first = store.begin_move("P3", "gripper", "slot:5", at=at(2))
    with pytest.raises(MoveRefused, match=f"move {first} .* is still open"):
        store.begin_move("P3", "gripper", "slot:6", at=at(3))
    with pytest.raises(MoveRefused, match="slot:5 holds or awaits P3"):
        store.begin_move("P2", "slot:2", "slot:5", at=at(3))
    assert [m.move_id for m in store.moves()] == [first]  # refusals wrote nothing

    # Places that hold many packs are never "occupied".
    store.seed_packs({"P7": "departed:T1", "P8": "vehicle:T1"}, at(4))
    m = store.begin_move("P8", "vehicle:T1", "departed:T1", at=at(5))
    store.confirm_move(m, at(6))
    assert store.pack_locations().get("P8") == "departed:T1"


def test_a_pack_the_journal_never_saw_may_start_anywhere(store: Store) -> None:
    move_id = store.begin_move("NEW", "vehicle:T9", "gripper", at=at(0))
    store.confirm_move(move_id, at(1))
    assert store.pack_locations() == {"NEW": "gripper"}


def test_set_location_fixes_a_pack_and_supersedes_its_open_move(store: Store) -> None:
    store.seed_packs({"P1": "slot:1"}, at(0))
    move_id = store.begin_move("P1", "slot:1", "gripper", at=at(1))
    assert store.set_location("P1", "slot:1", "reconciled: rack reports P1 in slot 1", at(2))
    superseded = store.move(move_id)
    assert superseded.status == "failed"
    assert superseded.reason is not None and "superseded" in superseded.reason
    assert store.open_moves() == []
    assert store.set_location("P1", "slot:1", "again", at(3)) is False  # nothing changed
    assert store.set_location("P1", "slot:7", "operator: moved by hand", at(4)) is True
    change = store.location_history("P1")[0]
    assert (change.location, change.previous, change.reason) == (
        "slot:7",
        "slot:1",
        "operator: moved by hand",
    )
    with pytest.raises(InvalidLocation):
        store.set_location("P1", "shelf", "typo", at(5))


def test_seed_packs_is_idempotent_and_never_overrides_the_journal(store: Store) -> None:
    assert store.seed_packs({"P1": "slot:1", "P2": "slot:2"}, at(0)) == ["P1", "P2"]
    move_id = store.begin_move("P1", "slot:1", "gripper", at=at(1))
    store.confirm_move(move_id, at(2))
    assert store.seed_packs({"P1": "slot:1", "P2": "slot:2", "P3": "slot:3"}, at(3)) == ["P3"]
    assert store.seed_packs({"P1": "slot:1", "P2": "slot:2", "P3": "slot:3"}, at(4)) == []
    assert store.pack_locations() == {"P1": "gripper", "P2": "slot:2", "P3": "slot:3"}
    assert len(store.location_history()) == 4
    with pytest.raises(InvalidLocation):
        store.seed_packs({"P9": "rack"}, at(5))
    assert store.pack_locations().get("P9") is None


def test_a_whole_swap_leaves_every_pack_in_one_place(store: Store) -> None:
    """The moves of one swap as the sequencer journals them, and the conservation check."""
    store.seed_packs({"FULL": "slot:2", "DEPLETED": "vehicle:T1"}, at(0))
    store.begin_swap("S1", "T1", at(0))
    plan = [
        ("DEPLETED", "vehicle:T1", "gripper"),  # remove
        ("DEPLETED", "gripper", "slot:1"),  # stow
        ("FULL", "slot:2", "gripper"),  # fetch
        ("FULL", "gripper", "vehicle:T1"),  # insert
        ("FULL", "vehicle:T1", "departed:T1"),  # release
    ]
    for i, (pack, src, dst) in enumerate(plan):
        move_id = store.begin_move(pack, src, dst, swap_id="S1", at=at(10 * i + 1))
        store.confirm_move(move_id, at(10 * i + 5))
        assert check_conservation(store.pack_locations()) == []
    store.end_swap("S1", "completed", at(60))
    assert store.pack_locations() == {"DEPLETED": "slot:1", "FULL": "departed:T1"}
    assert [m.dst for m in store.moves(swap_id="S1")] == [dst for _, _, dst in reversed(plan)]
    assert store.check_integrity() == []


# ---- crash recovery -------------------------------------------------------------------

_CRASH_MID_MOVE = """
    import sys, time
    from datetime import UTC, datetime
    from controller.store import Store

    def now():
        return datetime.now(UTC)

    s = Store.open(sys.argv[1])
    s.seed_packs({"P1": "vehicle:T1", "P2": "slot:2"}, now())
    s.begin_swap("S1", "T1", now())
    m = s.begin_move("P1", "vehicle:T1", "gripper", swap_id="S1", command_id="arm-1", at=now())
    s.confirm_move(m, now())
    m = s.begin_move("P1", "gripper", "slot:1", swap_id="S1", command_id="arm-2", at=now())
    print(m, flush=True)
    time.sleep(60)
"""


def test_sigkill_mid_move_leaves_an_open_move_and_the_last_confirmed_location(
    tmp_path: Path,
) -> None:
    db = tmp_path / "station.db"
    proc = _run_child(_CRASH_MID_MOVE, db)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"child failed before the move: {line!r}"
    _kill(proc)
    assert Path(f"{db}-wal").exists()  # recovery has to read the WAL, not a checkpointed file

    with Store.open(str(db)) as s:
        [move] = s.open_moves()
        assert (move.move_id, move.pack_id, move.src, move.dst) == (
            int(line),
            "P1",
            "gripper",
            "slot:1",
        )
        assert (move.swap_id, move.command_id) == ("S1", "arm-2")
        assert s.pack_locations() == {"P1": "gripper", "P2": "slot:2"}
        assert s.swap_in_flight() == "S1"
        assert s.check_integrity() == []
        # Recovery: the rack reports P1 docked in slot 1, so the move did happen.
        assert s.confirm_move(move.move_id, datetime.now(UTC))
        assert s.pack_locations().get("P1") == "slot:1"
        assert s.end_swap("S1", "aborted", datetime.now(UTC))
        assert s.swap_in_flight() is None


_MOVE_FOREVER = """
    import sys
    from datetime import UTC, datetime
    from controller.store import Store

    def now():
        return datetime.now(UTC)

    s = Store.open(sys.argv[1])
    s.seed_packs({"P1": "slot:1"}, now())
    for m in s.open_moves():  # recovery of the previous round's crash
        s.fail_move(m.move_id, "interrupted by a crash", now())
    loc = s.pack_locations().get("P1")
    while True:
        dst = "gripper" if loc != "gripper" else "slot:1"
        m = s.begin_move("P1", loc, dst, at=now())
        print("begun", m, flush=True)
        s.confirm_move(m, now())
        print("confirmed", m, dst, flush=True)
        loc = dst
"""


def test_random_sigkills_never_lose_a_confirmed_move(tmp_path: Path) -> None:
    """A move reported confirmed is still confirmed after a kill; at most one is open."""
    db = tmp_path / "station.db"
    rng = random.Random(20260501)
    for _round in range(4):
        proc = _run_child(_MOVE_FOREVER, db)
        assert proc.stdout is not None
        last_confirmed: tuple[int, str] | None = None
        for _ in range(rng.randint(3, 60)):
            words = proc.stdout.readline().split()
            assert words, "child exited early"
            if words[0] == "confirmed":
                last_confirmed = (int(words[1]), words[2])
        _kill(proc)
        with Store.open(str(db)) as s:
            assert s.check_integrity() == []
            if last_confirmed is not None:
                assert s.move(last_confirmed[0]).status == "confirmed"
            open_moves = s.open_moves()
            assert len(open_moves) <= 1
            newest = s.moves(limit=1)[0]
            if open_moves:
                assert open_moves[0] == newest
                assert s.pack_locations().get("P1") == newest.src
            else:
                assert s.pack_locations().get("P1") == newest.dst
            assert all(m.status != "open" for m in s.moves(limit=1000)[1:])


# ---- conservation ---------------------------------------------------------------------


def test_conservation_finds_two_packs_in_one_place() -> None:
    assert check_conservation({"P1": "slot:1", "P2": "slot:2", "P3": "gripper"}) == []
    problems = check_conservation(
        {"P1": "slot:3", "P2": "slot:3", "P3": "gripper", "P4": "gripper", "P5": "vehicle:T1"}
    )
    assert problems == ["gripper holds 2 packs: P3, P4", "slot:3 holds 2 packs: P1, P2"]
    in_order = check_conservation({"A": "slot:10", "B": "slot:10", "C": "slot:2", "D": "slot:2"})
    assert in_order == ["slot:2 holds 2 packs: C, D", "slot:10 holds 2 packs: A, B"]
    assert check_conservation({"P1": "vehicle:T1", "P2": "vehicle:T1"}) == [
        "vehicle:T1 holds 2 packs: P1, P2"
    ]


def test_conservation_allows_many_departed_or_unknown_and_flags_bad_locations() -> None:
    many = {"P1": "departed:T1", "P2": "departed:T1", "P3": "unknown", "P4": "unknown"}
    assert check_conservation(many) == []
    assert check_conservation({"P1": "slot:0", "P2": "rack"}) == [
        "pack P1 has an invalid location 'slot:0'",
        "pack P2 has an invalid location 'rack'",
    ]


def test_conservation_problem_in_the_store_is_detected(store: Store) -> None:
    """A manual fix can say what the journal would refuse; the check then reports it."""
    store.seed_packs({"P1": "slot:3", "P2": "slot:4"}, at(0))
    store.set_location("P2", "slot:3", "operator: wrong slot typed", at(1))
    assert check_conservation(store.pack_locations()) == ["slot:3 holds 2 packs: P1, P2"]


# ---- swaps ----------------------------------------------------------------------------


def _record(swap_id: str, start: float, result: str = "completed") -> SwapRecord:
    pack = PackInfo(id="P1", type="HT-282", soc=0.12, capacity_kwh=282.0)
    return SwapRecord.model_validate(
        {
            "swap_id": swap_id,
            "vehicle_id": "CQ-T0001",
            "result": result,
            "duration_s": 151.5,
            "budget_s": 180.0,
            "in_budget": True,
            "phases": {"identify": 3.0, "remove": 20.5},
            "pack_out": pack,
            "pack_in": pack.model_copy(update={"id": "P2", "soc": 0.97}),
            "queued_s": 40.0,
            "started_at": at(start),
            "ended_at": at(start + 151.5),
        }
    )


def test_swap_in_flight_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "station.db")
    with Store.open(path) as s:
        assert s.swap_in_flight() is None
        assert s.begin_swap("S1", "CQ-T0001", at(0)) is True
        assert s.begin_swap("S1", "CQ-T0001", at(0)) is False
        with pytest.raises(SwapConflict, match="in flight"):
            s.begin_swap("S2", "CQ-T0002", at(1))
    with Store.open(path) as s:
        assert s.swap_in_flight() == "S1"
        assert s.end_swap("S1", "aborted", at(5)) is True
        assert s.end_swap("S1", "aborted", at(6)) is False
        assert s.swap_in_flight() is None
        assert s.swap("S1") is None  # ended without a record
        with pytest.raises(SwapConflict, match="already used"):
            s.begin_swap("S1", "CQ-T0001", at(7))
        with pytest.raises(NotFound):
            s.end_swap("nope", "completed", at(8))


def test_swap_records_round_trip_newest_first(store: Store) -> None:
    store.begin_swap("S1", "CQ-T0001", at(0))
    first = _record("S1", 0)
    store.record_swap(first)
    assert store.swap_in_flight() is None  # a record ends the swap
    second = _record("S2", 300, "aborted")
    store.record_swap(second)
    store.record_swap(second)  # a retried write replaces, never duplicates
    assert store.swaps() == [second, first]
    assert store.swaps(limit=1) == [second]
    again = store.swap("S1")
    assert again == first
    assert again is not None and again.pack_in is not None and again.pack_in.soc == 0.97


# ---- alarms ---------------------------------------------------------------------------


def _alarm(alarm_id: str, t: float, severity: Severity = Severity.error) -> AlarmInfo:
    return AlarmInfo(
        id=alarm_id,
        code="RECOVERY_NEEDED",
        severity=severity,
        text="a swap was in flight at restart; P1 location unknown",
        hint="check slot 1 and the gripper, then set the pack's location",
        raised_at=at(t),
    )


def test_alarms_raise_acknowledge_clear(store: Store) -> None:
    assert store.raise_alarm(_alarm("recovery", 0, Severity.critical)) is True
    assert store.raise_alarm(_alarm("recovery", 1)) is False  # already active: not a second one
    assert store.raise_alarm(_alarm("door", 2, Severity.warning)) is True
    [recovery, door] = store.active_alarms()
    assert recovery == _alarm("recovery", 0, Severity.critical)
    assert (door.id, door.severity, door.acknowledged, door.active) == (
        "door",
        Severity.warning,
        False,
        True,
    )

    assert store.ack_alarm("recovery", "operator-li", at(10)) is True
    assert store.ack_alarm("recovery", "operator-wang", at(11)) is False  # first one is kept
    assert store.ack_alarm("nope", "operator-li", at(11)) is False
    assert store.clear_alarm("recovery", at(20)) is True
    assert store.clear_alarm("recovery", at(21)) is False
    assert [a.id for a in store.active_alarms()] == ["door"]

    [door_rec, recovery_rec] = store.alarm_history()
    assert (recovery_rec.acknowledged_by, recovery_rec.acknowledged_at) == ("operator-li", at(10))
    assert recovery_rec.cleared_at == at(20)
    assert (recovery_rec.info.active, recovery_rec.info.acknowledged) == (False, True)
    assert door_rec.info.id == "door" and door_rec.cleared_at is None


def test_cleared_unacknowledged_alarms_stay_visible_and_reraise_is_new(store: Store) -> None:
    store.raise_alarm(_alarm("estop", 0, Severity.fatal))
    store.clear_alarm("estop", at(5))
    assert store.active_alarms() == []
    [shown] = store.active_alarms(include_unacknowledged=True)
    assert (shown.id, shown.active, shown.acknowledged) == ("estop", False, False)
    # The condition comes back: a new occurrence, not hidden behind the cleared one.
    assert store.raise_alarm(_alarm("estop", 9, Severity.fatal)) is True
    assert [a.raised_at for a in store.active_alarms()] == [at(9)]
    assert len(store.alarm_history()) == 2
    assert store.ack_alarm("estop", "op", at(10))
    assert store.ack_alarm("estop", "op", at(11))  # the older, cleared occurrence
    assert store.active_alarms(include_unacknowledged=True)[0].acknowledged
    assert store.ack_alarm("estop", "op", at(12)) is False


# ---- operator commands ----------------------------------------------------------------


def test_a_command_id_seen_twice_is_recorded_once_and_gets_the_same_reply(store: Store) -> None:
    assert store.record_command("c-1", "start", {}, "operator-li", at(0)) is True
    assert store.command_result("c-1") is None  # not replied yet
    assert store.record_command("c-1", "start", {}, "operator-li", at(1)) is False  # redelivery
    assert store.record_command_result("c-1", True, None, at(2)) is True
    assert store.command_result("c-1") == (True, None)
    assert store.record_command_result("c-1", False, "late", at(3)) is False  # first reply wins
    assert store.command_result("c-1") == (True, None)

    store.record_command("c-2", "reset", {"force": True, "n": [1, 2]}, None, at(4))
    store.record_command_result("c-2", False, "the e-stop relay is still pressed", at(5))
    assert store.command_result("c-2") == (False, "the e-stop relay is still pressed")
    assert store.command_result("never-seen") is None
    with pytest.raises(NotFound):
        store.record_command_result("never-seen", True, None, at(6))

    [second, first] = store.command_history()
    assert (first.command_id, first.cmd, first.sender, first.received_at) == (
        "c-1",
        "start",
        "operator-li",
        at(0),
    )
    assert (first.ok, first.error, first.replied_at) == (True, None, at(2))
    assert (second.args, second.sender, second.ok) == ({"force": True, "n": [1, 2]}, None, False)
    assert store.command("c-2") == second
    assert store.command("nope") is None
    assert len(store.command_history(limit=1)) == 1


def test_command_log_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "station.db")
    with Store.open(path) as s:
        s.record_command("c-1", "estop", {}, "operator-li", at(0))
        s.record_command_result("c-1", True, None, at(0.1))
    with Store.open(path) as s:
        assert s.record_command("c-1", "estop", {}, "operator-li", at(1)) is False
        assert s.command_result("c-1") == (True, None)
