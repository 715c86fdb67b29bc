"""The error table: one place decides what is retried, which alarm an error raises, how severe,
and what the operator reads; every alarm code means one thing whoever raises it."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import controller
from controller.clock import Clock
from controller.contract import DRIVER_ACTIONS, DRIVER_ERROR_CODES, AlarmInfo, Alarms, Severity
from controller.contract.examples import example_payloads
from controller.error_table import (
    ALARMS,
    ERRORS,
    NEVER_RETRIED,
    PROCEDURES,
    UNKNOWN_DRIVER_CODE,
    alarm_for,
    hint,
    kind_of,
    may_retry,
)
from controller.errors import (
    BusDisconnected,
    CommandRefused,
    ConfigError,
    DeviceError,
    DeviceFailed,
    DeviceOffline,
    DeviceTimeout,
    InterlockOpen,
    PackLost,
    PhaseDeadlineExceeded,
    SwapstationError,
)
from controller.station.alarms import AlarmBook
from controller.store import MoveRefused, Store, StoreBusy, StoreError

pytestmark = pytest.mark.timeout(30)

#: Alarms the station raises for a condition, not for an error: none of ERRORS leads to them
#: (but move_refused, which is an inventory mismatch too).
CONDITIONS = {
    "estopped",
    "aborted",
    "recovery_needed",
    "inventory_mismatch",
    "pack_location_unknown",
    "journal_damaged",
    "recovery_failed",
    "truck_stranded",
    "driver_offline",
}

#: One error of every kind the controller raises, as it raises them.
SAMPLES: list[BaseException] = [
    DeviceFailed("bay", "unlock", "injected_fault", "injected"),
    DeviceFailed("arm", "move", "pack_dropped", "the pack fell"),
    DeviceFailed("arm", "move", "overheat", "a code this controller does not know"),
    DeviceFailed("door", "open", "failed"),
    DeviceFailed("door", "open", "sensor_mismatch", "reported done, but door reads closed"),
    DeviceFailed("vehicle", "identify", "no_pack", "vehicle reports no pack"),
    DeviceFailed("vehicle", "identify", "bad_result", "Field required"),
    DeviceFailed("vehicle", "verify", "wrong_pack", "BMS reports 'P-9', inserted 'P-2'"),
    DeviceFailed("rack", "stow", "rack_full", "no free slot for the pack"),
    DeviceFailed("rack", "fetch", "empty_slot", "slot 3 empty"),
    *(DeviceFailed("door", "open", code, "from the driver") for code in DRIVER_ERROR_CODES),
    DeviceTimeout("rack", "dock", "step_deadline", "no result within 9 s"),
    DeviceTimeout("rack", "dock", "no_ack", "not accepted within 3 s"),
    DeviceOffline("arm", "lift", "offline", "driver reports offline"),
    InterlockOpen("arm", "move", ["door not open: the arm would pass through it"]),
    PackLost("P-1", "gripper", "unknown", action="lift"),
    PhaseDeadlineExceeded("unlock", 20, ("bay.unlock",)),
    PhaseDeadlineExceeded("prepare", 30),
    StoreError("disk I/O error"),
    StoreBusy("database is locked"),
    MoveRefused("P-1", "slot:1", "gripper", "the pack is at slot:2"),
    BusDisconnected("not connected"),
    RuntimeError("a bug"),
]


def _all_error_classes() -> set[type[SwapstationError]]:
    for module in pkgutil.walk_packages(controller.__path__, "controller."):
        if ".cli" not in module.name and ".console" not in module.name:
            importlib.import_module(module.name)
    found: set[type[SwapstationError]] = set()
    todo: list[type[SwapstationError]] = [SwapstationError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_class_has_its_own_row() -> None:
    """A new exception that forgets its code is an internal error; here it fails a test."""
    for cls in _all_error_classes() - {SwapstationError}:
        if issubclass(cls, DeviceError):
            continue  # its code is per instance: the driver's, or the step's
        row = ERRORS.get(cls.code)
        assert row is not None and not row.device_step, f"{cls.__name__}.code = {cls.code!r}"


def test_every_driver_code_of_the_contract_has_a_row_and_an_alarm() -> None:
    for code in DRIVER_ERROR_CODES:
        assert ERRORS[code].device_step, code
        assert ERRORS[code].alarm == code and code in ALARMS, code


def test_every_alarm_is_raised_by_something_and_every_error_names_an_alarm() -> None:
    raised = {kind.alarm for kind in (*ERRORS.values(), UNKNOWN_DRIVER_CODE) if kind.alarm}
    assert raised <= set(ALARMS)
    assert set(ALARMS) == raised | CONDITIONS
    assert {kind.then for kind in ALARMS.values()} == set(PROCEDURES)


def test_no_alarm_code_is_a_class_name() -> None:
    for code in ALARMS:
        assert re.fullmatch(r"[a-z][a-z_]*", code), code


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: f"{type(e).__name__}:{e}")
def test_a_halt_on_any_error_raises_an_alarm_of_the_table_naming_what_it_can(
    error: BaseException,
) -> None:
    code, text, fields = alarm_for(error, str(error))
    assert code in ALARMS and text == str(error)
    full = ALARMS[code].hint.format(**fields)  # every name the hint uses, the error gives
    assert full == hint(code, fields)
    for name in ("device", "phase", "pack"):
        if name in fields:
            assert fields[name] in full, (name, full)
    if fields.get("action") in DRIVER_ACTIONS.get(fields.get("device", ""), {}):
        assert fields["action"] in full, full  # a real driver action (not rack "stow")
    # the whole procedure, acknowledgement included
    assert "ack (this alarm)" in full.lower() and "reset" in full, full


def test_the_samples_reach_every_alarm_an_error_can_raise() -> None:
    reached = {alarm_for(error, "")[0] for error in SAMPLES}
    assert reached == set(ALARMS) - (CONDITIONS - {"inventory_mismatch"})


def test_the_alarm_of_each_kind() -> None:
    assert alarm_for(RuntimeError("x"), "x")[0] == "internal_error"
    assert alarm_for(PhaseDeadlineExceeded("stow", 50), "")[0] == "phase_deadline"
    assert alarm_for(DeviceFailed("arm", "move", "overheat"), "")[0] == "device_failed"
    assert alarm_for(DeviceFailed("arm", "move", "failed"), "")[0] == "device_failed"
    assert alarm_for(MoveRefused("P", "a", "b", "c"), "")[0] == "inventory_mismatch"
    assert alarm_for(StoreBusy("locked"), "")[0] == "journal_failed"


def test_a_driver_cannot_borrow_a_controller_code() -> None:
    """A driver's failed result says ``pack_lost``: it is an unknown driver code, not the
    controller's pack_lost (whose hint would name a pack the error does not carry)."""
    for code in ("pack_lost", "phase_deadline", "store_busy", "internal_error"):
        assert kind_of(DeviceFailed("arm", "move", code)) is UNKNOWN_DRIVER_CODE, code


def test_what_may_be_retried_is_what_always_was() -> None:
    """The table keeps the behaviour of the old NOT_CURABLE set and DeviceOffline rule."""
    never = {
        "estop",
        "light_curtain",
        "stopped",
        "impossible",
        "pack_dropped",
        "unknown_action",
        "bad_args",
        "bad_request",
        "offline",
        "sensor_mismatch",
    }
    for code in never:
        assert not may_retry("door", "open", DeviceFailed("door", "open", code)), code
    assert not may_retry("arm", "move", DeviceOffline("arm", "move", "offline"))
    for code in ("busy", "verify_failed", "injected_fault", "failed", "overheat"):
        assert may_retry("door", "open", DeviceFailed("door", "open", code)), code
    for code in ("step_deadline", "no_ack"):
        assert may_retry("door", "open", DeviceTimeout("door", "open", code)), code


@pytest.mark.parametrize("step", sorted(NEVER_RETRIED))
def test_a_pack_move_is_never_retried_whatever_the_error(step: str) -> None:
    device, action = step.split(".")
    assert not may_retry(device, action, DeviceTimeout(device, action, "step_deadline"))
    assert not may_retry(device, action, DeviceFailed(device, action, "injected_fault"))


def test_errors_that_never_halt_raise_no_alarm() -> None:
    for error in (ConfigError("f.yaml", "x", "bad"), CommandRefused("start", "no")):
        assert kind_of(error).alarm is None


def test_the_alarm_book_takes_severity_and_hint_from_the_table() -> None:
    raised: list[AlarmInfo] = []
    with Store.open(None) as store:
        book = AlarmBook(Clock(1.0), raised.append, journal=store, on_change=lambda: None)
        _raise_two(book)
    step, estop = raised
    assert step.severity is ALARMS["step_deadline"].severity is Severity.error
    assert step.hint.startswith("rack.dock gave no result") and "the rack was told" in step.hint
    assert estop.severity is Severity.critical and estop.hint == ALARMS["estopped"].hint


def _raise_two(book: AlarmBook) -> None:
    book.raise_("step_deadline", "rack.dock: step_deadline", {"device": "rack", "action": "dock"})
    book.raise_("estopped", "e-stop pressed on the safety relay")


def test_the_documented_example_alarm_is_what_the_controller_raises() -> None:
    """docs/mqtt-api.md shows this alarm (from the contract's examples)."""
    alarms = example_payloads()["Alarms"][0]
    assert isinstance(alarms, Alarms)
    [example] = alarms.alarms
    error = PhaseDeadlineExceeded("stow", 50, ("arm.move",))
    code, text, fields = alarm_for(error, str(error))
    assert (example.code, example.text, example.hint) == (code, text, hint(code, fields))
    assert example.severity is ALARMS[code].severity
