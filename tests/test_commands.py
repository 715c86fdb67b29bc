"""The operator command table is the one definition of a command: the mode machine is built from
it, the station dispatches through it, the console's keys come from it, and a malformed command
is refused by its argument model, naming the argument, with nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from controller.clock import Clock
from controller.console.actions import ACTIONS, BY_CMD
from controller.console.app import ConsoleApp
from controller.contract import OPERATOR_COMMANDS, CommandHandled, Mode
from controller.contract.commands import (
    COMMANDS,
    COMMANDS_BY_NAME,
    INTERNAL_TRIGGERS,
    InvalidArguments,
    offered_in,
    operator_command,
)
from controller.station.alarms import AlarmBook
from controller.station.behaviours import BEHAVIOURS, CHECKS
from controller.station.machine import INTERNAL_TRIGGERS as MACHINE_INTERNAL
from controller.station.machine import ModeMachine
from controller.store import Store
from tests.harness import running_station, station_config

pytestmark = pytest.mark.timeout(60)


# ---- the table drives the machine and the dispatch -------------------------------------------
def test_the_mode_machine_has_exactly_the_tables_transitions() -> None:
    """Read back from the built machine: every (command, source, destination) of the table is a
    transition, and the machine has no other."""
    machine = ModeMachine(lambda new, old: None)
    table = {(c.name, src.value, dst.value) for c in COMMANDS for src, dst in c.transitions()}
    assert machine.transitions() == table
    assert {c.name for c in COMMANDS if c.leads_to is not None} == {t for t, _, _ in table}
    assert MACHINE_INTERNAL == INTERNAL_TRIGGERS == {"suspend", "finish_abort"}


async def test_every_command_fires_where_the_table_says_and_nowhere_else() -> None:
    """For every mode and every trigger: the machine moves exactly when the table says, and
    to the mode the table says (the machine put in each mode through its own transitions)."""
    paths: dict[Mode, list[str]] = {Mode.idle: []}  # shortest trigger path to each mode
    while True:
        grown = {
            dst: [*path, c.name]
            for mode, path in paths.items()
            for c in COMMANDS
            for src, dst in c.transitions()
            if src is mode and dst not in paths
        }
        if not grown:
            break
        paths |= grown
    assert set(paths) == set(Mode), "every mode is reachable"
    for mode, path in paths.items():
        for spec in COMMANDS:
            machine = ModeMachine(lambda new, old: None)
            for trigger in path:
                assert await machine.fire(trigger)
            moves = dict(spec.transitions())
            assert await machine.fire(spec.name) is (mode in moves), (spec.name, mode)
            assert machine.mode is moves.get(mode, mode), (spec.name, mode)


def test_every_operator_command_has_a_behaviour_and_every_precondition_a_check() -> None:
    assert set(BEHAVIOURS) == set(OPERATOR_COMMANDS)
    named = {c.precondition.check for c in COMMANDS if c.precondition is not None}
    assert set(CHECKS) == named
    assert not INTERNAL_TRIGGERS & set(OPERATOR_COMMANDS)
    assert all(operator_command(name) is None for name in INTERNAL_TRIGGERS)


def test_valid_now_offers_only_commands_that_do_something_there() -> None:
    for mode in Mode:
        for spec in offered_in(mode):
            assert spec.operator and mode in spec.valid_in and spec.leads_to is not mode
    assert "estop" not in [c.name for c in offered_in(Mode.estopped)]  # latched already
    in_maintenance = [c.name for c in offered_in(Mode.maintenance)]
    assert {"estop", "ack", "leave_maintenance", "manual", "set_location"} <= set(in_maintenance)
    assert not {"start", "reset", "maintenance", "suspend"} & set(in_maintenance)


# ---- the console is a view of the table ---------------------------------------------------
def test_console_keys_are_unique_and_all_from_the_table() -> None:
    keys = [a.key for a in ACTIONS] + [a.anywhere for a in ACTIONS if a.anywhere]
    assert len(keys) == len(set(keys)), keys
    assert [a.cmd for a in ACTIONS] == list(OPERATOR_COMMANDS)
    for action in ACTIONS:
        spec = COMMANDS_BY_NAME[action.cmd]
        assert spec.console is not None and action.key == spec.console.key
        assert (action.confirm, action.fast) == (spec.destructive, spec.urgent)
        # the prompt asks for exactly the command's arguments
        assert {f.name for f in action.fields} == set(spec.args.model_fields), action.cmd
    bound = {b.key: b.action for b in ConsoleApp.BINDINGS if b.action.startswith("send(")}
    assert bound == {
        **{a.key: f"send('{a.cmd}')" for a in ACTIONS},
        **{a.anywhere: f"send('{a.cmd}')" for a in ACTIONS if a.anywhere},
    }
    assert BY_CMD["manual"].fields[2].json and not BY_CMD["ack"].fields[0].json


# ---- arguments: refused by the model, naming the argument ----------------------------------
@pytest.mark.parametrize(
    ("cmd", "args", "refusal"),
    [
        ("start", {"speed": 3}, "start takes no arguments, got ['speed']"),
        ("ack", {}, "missing argument 'alarm_id'"),
        ("ack", {"alarm_id": 5}, "argument 'alarm_id': Input should be a valid string"),
        ("ack", {"alarm_id": "A1", "x": 1}, "unexpected argument(s) ['x']; ack takes ['alarm_id']"),
        ("manual", {"device": "robot", "action": "move"}, "argument 'device': Input should be"),
        ("manual", {"device": "door", "action": "fly"}, "argument 'action': door has no action"),
        ("manual", {"device": "arm", "action": "move", "args": []}, "argument 'args': Input"),
        ("set_location", {"pack_id": "P-1"}, "missing argument 'location'"),
    ],
)
def test_malformed_args_are_refused_naming_the_argument(
    cmd: str, args: dict[str, Any], refusal: str
) -> None:
    spec = operator_command(cmd)
    assert spec is not None
    with pytest.raises(InvalidArguments) as refused:
        spec.parse_args(args)
    assert refused.value.reason.startswith(refusal), refused.value.reason


def test_well_formed_args_are_accepted_as_documented() -> None:
    manual = operator_command("manual")
    assert manual is not None
    for optional in ({}, {"args": None}, {"args": {"target": "home"}}):
        parsed = manual.parse_args({"device": "arm", "action": "move", **optional})
        assert parsed.model_dump()["device"] == "arm"


async def test_malformed_commands_are_refused_and_change_nothing(
    embedded_broker: object, station_id: str
) -> None:
    """Through the broker: each malformed command gets one refusal naming the argument and an
    audit event, and the station's mode, reason, alarms and packs are as they were, with no
    command sent to any driver."""
    cfg = station_config(station_id)
    url = embedded_broker.url  # type: ignore[attr-defined]
    async with running_station(url, cfg, start=False) as st:
        station = st.controller.station

        def state() -> tuple[Any, ...]:
            alarms = dict(station.alarms.alarms)
            return station.mode, station.reason, alarms, dict(station.ledger.locations)

        before, sent = state(), len(station.sent)
        cases = [
            ("start", {"speed": 3}, "takes no arguments"),
            ("ack", {"alarm_id": 5}, "argument 'alarm_id'"),
            ("manual", {"device": "robot", "action": "move"}, "argument 'device'"),
            ("set_location", {"pack_id": "P-1001", "where": "slot:2"}, "['where']"),
            ("fly", {}, "unknown command 'fly'; known: start, hold"),
        ]
        for cmd, args, named in cases:
            reply = await st.command(cmd, **args)
            assert not reply.ok and named in reply.error, reply.error
        assert state() == before and len(station.sent) == sent
        handled = await st.wait_events(CommandHandled, len(cases))
        assert [(e.cmd, e.ok) for e in handled] == [(c, False) for c, _, _ in cases]
        # valid commands go on as before: a refusal of one outside its mode lists what is valid
        assert (await st.command("maintenance")).ok
        reply = await st.command("start")
        assert reply.error.startswith("not valid in mode maintenance, only in idle; valid now: ")
        offered = reply.error.split("valid now: ", 1)[1].split(", ")
        assert [c.name for c in offered_in(Mode.maintenance)] == offered


# ---- the alarm book owns its records -------------------------------------------------------
def test_the_alarm_book_records_its_own_acknowledgements_and_clearings() -> None:
    raised: list[str] = []
    changes: list[None] = []
    with Store.open(None) as store:
        book = AlarmBook(
            Clock(),
            lambda alarm: raised.append(alarm.id),
            journal=store,
            on_change=lambda: changes.append(None),
        )
        first = book.raise_("device_failed", "door.close: stuck", {"device": "door"})
        second = book.raise_("estopped", "e-stop")
        assert raised == [first.id, second.id]
        assert [a.id for a in store.active_alarms()] == [first.id, second.id]
        assert book.acknowledge(first.id, by="li-wei") and not book.acknowledge("A99", by=None)
        assert book.clear_acknowledged(keep=frozenset({"estopped"})) == [first.id]
        assert [a.id for a in store.active_alarms()] == [second.id]
        [record] = [r for r in store.alarm_history() if r.info.id == first.id]
        assert record.acknowledged_by == "li-wei" and record.cleared_at is not None
        assert len(changes) == 2  # the acknowledgement and the reset
