"""The error table: for every error code, whether a retry may cure it (and why), which alarm it
raises; for every alarm code, its severity and what the operator does about it.

This is the one place those are decided. The gate asks :func:`may_retry` before retrying a
step, the station raises every alarm through :data:`ALARMS` (so an alarm's code, severity and
hint never depend on who raised it), and docs/safety.md shows both tables, generated from here
(``python -m controller.docgen``; a test fails when the page is stale).

Hints are the whole procedure an operator follows, acknowledgement included. ``{device}``,
``{action}`` and the like are filled in from the error (:meth:`SwapstationError.fields`), so an
alarm names the device and action involved when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.contract import DRIVER_ERROR_CODES, Severity
from controller.errors import DeviceError, SwapstationError

#: Actions that move a pack. Retrying one automatically is never safe: after a failure nobody
#: knows whether the pack is half lifted, so they are left to an operator (the config loader
#: refuses ``retries`` for them, and :func:`may_retry` says no whatever the config says).
NEVER_RETRIED = frozenset({"arm.lift", "arm.lower"})


#: What the operator does once the cause is dealt with, by name. Every alarm's hint ends with
#: one of these, so a hint is the whole procedure, acknowledgement included.
PROCEDURES: dict[str, str] = {
    "after an abort": (
        "Then send ack (this alarm) and clear; if the swap was cut short, enter maintenance, "
        "finish it by hand (manual moves; set_location for a pack whose place is unknown) and "
        "leave_maintenance; then reset."
    ),
    "after an e-stop": (
        "Release the e-stop on the relay (clear and reset are refused while it reports it "
        "pressed), then send ack (this alarm) and clear; if the swap was cut short, enter "
        "maintenance, finish it by hand and leave_maintenance; then reset. The station never "
        "resumes a swap by itself."
    ),
    "after a restart": (
        "Send ack (this alarm) and clear, enter maintenance, finish by hand (manual moves; "
        "set_location for a pack whose place is unknown), leave_maintenance, then reset."
    ),
    "replace the journal": (
        "Stop the controller, copy the database file aside and check the disk (dmesg, SMART); "
        "restore the journal from a backup, or start with a fresh one (packs are then placed "
        "from the sensors: record what you find with set_location). Until the controller runs "
        "on a sound journal, ack, clear and reset keep this alarm and start is refused."
    ),
    "when the driver is back": (
        "This alarm returns to normal by itself when the driver is online again, and leaves "
        "the list once acknowledged: ack it (before or after) to record that you saw it. Then "
        "resume a held swap (resume is refused while a driver is offline)."
    ),
    "recover the truck": (
        "Send ack (this alarm) and clear (after an e-stop, release it on the relay first); "
        "enter maintenance; check the bay and the plans (swapctl recover) and run one (swapctl "
        "recover --plan finish|give-back --run), or finish by hand (manual; set_location); "
        "then leave_maintenance and reset. A reset keeps this alarm, and start is refused, "
        "until the bay is normal."
    ),
    "recover again": (
        "Send ack (this alarm); stay in maintenance and run one of the new plans (swapctl "
        "recover), or finish by hand (manual; set_location for a pack whose place is unknown); "
        "then leave_maintenance and reset."
    ),
    "reconcile the packs": (
        "Preview what reconcile would change (swapctl reconcile; the reconcile command without "
        "adopt): check the packs it names, then confirm it (swapctl reconcile --yes): each pack "
        "the sensors report at one place is journaled there with your name, one they see "
        "nowhere (not on the truck in the bay) as departed:unknown. This alarm then returns to "
        "normal: send ack (this alarm). A pack reconcile leaves (ambiguous, or its place "
        "taken): inspect it, enter maintenance, record it with set_location, leave_maintenance "
        "and reset. Aborted or estopped: ack, clear and reset as well. start is refused until "
        "the journal agrees with the sensors."
    ),
    # The conditions that outlive a reset (Station.standing_alarms).
    "record the packs": (
        "Ack (this alarm); clear if the station is aborted or estopped; enter maintenance and "
        "record what you find with set_location (slot:<n>, gripper, vehicle:<id>); "
        "leave_maintenance, then reset. start is refused, and a reset keeps this alarm, until "
        "the places are recorded."
    ),
}


@dataclass(frozen=True)
class AlarmKind:
    """What an alarm code means to an operator."""

    severity: Severity
    #: When the station raises it (for the docs).
    raised_when: str
    #: What to look at and do first; may name ``{device}``, ``{action}``... (see the errors).
    first: str
    #: Then: a key of :data:`PROCEDURES`.
    then: str = "after an abort"

    @property
    def hint(self) -> str:
        """The whole procedure (a template: :func:`hint` fills in the names)."""
        return f"{self.first} {PROCEDURES[self.then]}"


@dataclass(frozen=True)
class ErrorKind:
    """What the controller does with an error code."""

    #: Who reports it (for the docs).
    source: str
    #: A retry may cure it (only steps with ``retries`` in ``swap.steps`` are ever retried).
    retryable: bool
    #: Why it is, or is not, worth a retry.
    why: str
    #: The alarm a halt on this error raises; ``None``: it never halts the station.
    alarm: str | None
    #: Carried by a :class:`DeviceError`: a driver's code, or one the controller gives a step.
    device_step: bool = False


_ERROR, _CRITICAL = Severity.error, Severity.critical


def _driver(code: str, first: str, severity: Severity = _ERROR) -> AlarmKind:
    return AlarmKind(severity, f"a driver failed an action with {code}", first)


ALARMS: dict[str, AlarmKind] = {
    # ---- halts that are not errors -------------------------------------------------------
    "estopped": AlarmKind(
        _CRITICAL,
        "the e-stop was pressed on the safety relay, or an operator sent estop",
        "Find why the e-stop was pressed and make the station safe.",
        "after an e-stop",
    ),
    "aborted": AlarmKind(
        _ERROR,
        "an operator sent abort",
        "An operator aborted the swap; the devices it used were told to stop.",
    ),
    # ---- conditions the station finds -----------------------------------------------------
    "recovery_needed": AlarmKind(
        _CRITICAL,
        "the controller came up after a crash with a swap or a pack move in flight",
        "The controller restarted during a swap or a pack move; the text lists where the "
        "journal has every pack. Inspect the station.",
        "after a restart",
    ),
    "driver_offline": AlarmKind(
        _ERROR,
        "a driver that was online went offline (its last will, or its own offline)",
        "The {device} driver is offline: restore it (power, network, its process). The station "
        "moves nothing that needs it meanwhile and holds a swap under way.",
        "when the driver is back",
    ),
    "truck_stranded": AlarmKind(
        _CRITICAL,
        "a swap was cut short with a truck in the bay and things out of their normal place",
        "A truck is in the bay and the text lists what is not in its normal place.",
        "recover the truck",
    ),
    "inventory_mismatch": AlarmKind(
        _ERROR,
        "the journal and the drivers' sensors disagree about where a pack is",
        "The journal and the sensors disagree about the packs named in the text.",
        "reconcile the packs",
    ),
    "recovery_failed": AlarmKind(
        _ERROR,
        "a step of a recovery plan failed (recover command)",
        "The {plan} plan stopped at {device}.{action}; the text says why. Look at the {device}, "
        "then see the new plans in the status (swapctl recover).",
        "recover again",
    ),
    "journal_damaged": AlarmKind(
        _CRITICAL,
        "the journal failed its start-up check (SQLite quick_check, foreign keys, pack places "
        "against their log)",
        "The journal's pack places cannot be trusted; the text names the problems. Do not run "
        "swaps on it.",
        "replace the journal",
    ),
    "pack_location_unknown": AlarmKind(
        _CRITICAL,
        "no sensor places a pack after a halt or a manual arm action",
        "Inspect the arm, the rack and the truck for the packs named.",
        "record the packs",
    ),
    # ---- errors the controller finds ------------------------------------------------------
    "offline": AlarmKind(
        _ERROR,
        "a driver's last will said it was offline when a step was due",
        "The {device} driver was offline when {action} was due: restore it (power, network, "
        "its process).",
    ),
    "no_ack": AlarmKind(
        _ERROR,
        "a driver did not accept a command within swap.ack_timeout_s",
        "The {device} driver did not accept {action} in time: check that it runs and reaches "
        "the broker.",
    ),
    "step_deadline": AlarmKind(
        _ERROR,
        "a step with its own deadline in swap.steps ran out of attempts",
        "{device}.{action} gave no result within its step deadline (swap.steps) on every "
        "attempt; the {device} was told to stop: find what holds it up.",
    ),
    "sensor_mismatch": AlarmKind(
        _ERROR,
        "a driver said done and its own state (or, for a pack move, the pack sensors) did not "
        "show it",
        "The {device} reported {action} done but the sensors disagree (the text says what they "
        "show, and which pack): inspect the {device} and its sensors before trusting it again.",
    ),
    "bad_result": AlarmKind(
        _ERROR,
        "a driver's result data did not match the contract",
        "The {device} answered {action} with data the contract does not allow: check the "
        "{device} driver's version against docs/mqtt-api.md.",
    ),
    "no_pack": AlarmKind(
        _ERROR,
        "identify found no pack on the truck",
        "{device}.{action} reports no pack on the truck: check the truck and its vehicle link.",
    ),
    "rack_full": AlarmKind(
        _ERROR,
        "no free slot takes the truck's pack",
        "No free rack slot takes the truck's pack type: free one, or check the rack's pack "
        "types in the station file.",
    ),
    "empty_slot": AlarmKind(
        _ERROR,
        "the slot chosen for the charged pack holds none",
        "The slot chosen for the charged pack is empty: compare the rack with the inventory.",
    ),
    "wrong_pack": AlarmKind(
        _ERROR,
        "verify reads another pack than the one inserted",
        "{device}.{action}: the BMS reports another pack than the one inserted: inspect the "
        "truck's pack and compare with the inventory.",
    ),
    "phase_deadline": AlarmKind(
        _ERROR,
        "a swap phase ran past swap.phase_deadlines_s",
        "Phase {phase} ran past its deadline waiting for {waiting}; the devices the swap used "
        "were told to stop: find what held it up.",
    ),
    "interlock_open": AlarmKind(
        _ERROR,
        "a motion's interlock stayed open in the middle of a swap",
        "{device}.{action} was refused: an interlock stayed open (see the text). Close it and "
        "find how the swap got there with it open.",
    ),
    "journal_failed": AlarmKind(
        _CRITICAL,
        "the journal could not record a move or a swap",
        "The journal (SQLite) failed, and no pack moves without it: check the disk and the "
        "database file, and that no other process holds it.",
    ),
    "broker_lost": AlarmKind(
        _ERROR,
        "the broker could not be reached in the middle of a step",
        "The controller could not reach the broker: check the broker and the network (the "
        "controller reconnects by itself).",
    ),
    "internal_error": AlarmKind(
        _CRITICAL,
        "an error nobody foresaw: a bug",
        "A fault in the controller itself ended the swap (its log has the details: please "
        "report it). Check every device the swap used.",
    ),
    "device_failed": AlarmKind(
        _ERROR,
        "a driver failed an action with a code this controller does not know",
        "The {device} failed {action} with code {code} (see the text): look it up in the "
        "{device} driver's documentation.",
    ),
    # ---- a driver's own codes (contract.DRIVER_ERROR_CODES) ------------------------------
    "bad_request": _driver(
        "bad_request",
        "The {device} could not read the {action} command: check that the {device} driver and "
        "the controller speak the same contract version.",
    ),
    "unknown_action": _driver(
        "unknown_action",
        "The {device} driver has no action {action}: install a driver that implements the "
        "contract's {device} actions.",
    ),
    "bad_args": _driver(
        "bad_args",
        "The {device} refused the arguments of {action}: check the station file (slots, pack "
        "types) against the {device} driver's configuration.",
    ),
    "busy": _driver(
        "busy",
        "The {device} was still busy with another action when {action} was sent (it was told "
        "to stop): check the {device}'s state.",
    ),
    "impossible": _driver(
        "impossible",
        "The {device} says {action} is physically impossible now (see the text): inspect the "
        "{device} and the pack it works on.",
    ),
    "estop": _driver(
        "estop",
        "The e-stop halted {device}.{action}: find why it was pressed, make the station safe "
        "and release it on the relay.",
        _CRITICAL,
    ),
    "light_curtain": _driver(
        "light_curtain",
        "The light curtain halted {device}.{action}: clear the cell and restore the curtain.",
    ),
    "stopped": _driver(
        "stopped",
        "{device}.{action} was halted by a stop command (an operator's manual stop, or the "
        "controller making the {device} safe): find out which.",
    ),
    "pack_dropped": _driver(
        "pack_dropped",
        "The {device} lost its pack during {action}: keep out of the cell, find the pack; the "
        "inventory has it where the sensors say, or unknown.",
        _CRITICAL,
    ),
    "verify_failed": _driver(
        "verify_failed",
        "{device}.{action}: the BMS did not confirm the new pack: check the pack's seating, "
        "the locks and the vehicle link.",
    ),
    "injected_fault": _driver(
        "injected_fault",
        "Simulator only: a fault was injected into {device}.{action} on purpose.",
    ),
}

_SAME = "a retry would meet the same "


def _from_driver(code: str) -> ErrorKind:
    curable = code not in _DRIVER_NOT_CURABLE
    why = _DRIVER_WHY.get(code, "the condition may have passed by the next attempt")
    return ErrorKind("driver", curable, why, code, device_step=True)


#: Driver codes no retry can cure: the safety chain, physics, or a malformed request.
_DRIVER_NOT_CURABLE = frozenset(
    {"bad_request", "unknown_action", "bad_args", "impossible", "estop", "light_curtain",
     "stopped", "pack_dropped"}
)  # fmt: skip
_DRIVER_WHY = {
    "bad_request": _SAME + "unreadable payload",
    "unknown_action": _SAME + "driver",
    "bad_args": _SAME + "arguments",
    "impossible": "the state that forbids it does not change by asking again",
    "estop": "the safety chain: only an operator releases the e-stop",
    "light_curtain": "the safety chain: someone is in the cell",
    "stopped": "someone stopped it on purpose",
    "pack_dropped": "the pack is no longer in the gripper",
    "busy": "the other action may have ended (the device is told to stop first)",
    "verify_failed": "the BMS may confirm on a second reading",
    "injected_fault": "a simulated transient fault",
}


def _step(source: str, retryable: bool, why: str, code: str) -> ErrorKind:
    """A code the controller gives a failed driver step (carried by a DeviceError)."""
    return ErrorKind(source, retryable, why, code, device_step=True)


ERRORS: dict[str, ErrorKind] = {code: _from_driver(code) for code in DRIVER_ERROR_CODES} | {
    "failed": _step("driver (no code given)", True, "treated as transient", "device_failed"),
    "offline": _step("proxy", False, "the station holds for the operator instead", "offline"),
    "no_ack": _step("proxy", True, "a lost or late message; asked again", "no_ack"),
    "step_deadline": _step(
        "gate", True, "the step may be slow this once (it is told to stop first)", "step_deadline"
    ),
    "sensor_mismatch": _step(
        "gate", False, "a driver its sensors contradict is not trusted again", "sensor_mismatch"
    ),
    "bad_result": _step("sequencer", False, _SAME + "driver", "bad_result"),
    "no_pack": _step("sequencer", False, _SAME + "truck", "no_pack"),
    "rack_full": _step("sequencer", False, _SAME + "full rack", "rack_full"),
    "empty_slot": _step("sequencer", False, _SAME + "empty slot", "empty_slot"),
    "wrong_pack": _step("sequencer", False, _SAME + "pack", "wrong_pack"),
    "pack_lost": ErrorKind("sequencer", False, "it moves a pack: never retried", "sensor_mismatch"),
    "phase_deadline": ErrorKind("sequencer", False, "the phase's time is up", "phase_deadline"),
    "interlock_open": ErrorKind(
        "gate", False, "an open interlock is for an operator to close", "interlock_open"
    ),
    "bus_error": ErrorKind("bus", True, "the bus reconnects by itself", "broker_lost"),
    "bus_disconnected": ErrorKind("bus", True, "the bus reconnects by itself", "broker_lost"),
    "store_error": ErrorKind(
        "journal", False, "a journal that failed once is not trusted", "journal_failed"
    ),
    "store_busy": ErrorKind(
        "journal", True, "another process held the lock; it may let go", "journal_failed"
    ),
    "move_refused": ErrorKind("journal", False, _SAME + "journal", "inventory_mismatch"),
    "config_error": ErrorKind("config loader", False, _SAME + "file", None),
    "command_refused": ErrorKind(
        "operator command", False, "the reply says why; the operator decides", None
    ),
    "internal_error": ErrorKind("anything else", False, "a bug", "internal_error"),
}
#: What a driver's code this table does not know means.
UNKNOWN_DRIVER_CODE = ErrorKind(
    "driver (any other code)", True, "treated as transient", "device_failed", device_step=True
)


def kind_of(error: BaseException) -> ErrorKind:
    """The row of :data:`ERRORS` for ``error``; any other exception is an internal error."""
    device_step = isinstance(error, DeviceError)
    code = error.code if isinstance(error, SwapstationError) else "internal_error"
    kind = ERRORS.get(code)
    if kind is not None and kind.device_step == device_step:  # a driver cannot borrow a code
        return kind
    return UNKNOWN_DRIVER_CODE if device_step else ERRORS["internal_error"]


def may_retry(device: str, action: str, error: BaseException) -> bool:
    """The one place that decides whether a failed step is worth another attempt."""
    return f"{device}.{action}" not in NEVER_RETRIED and kind_of(error).retryable


def alarm_for(error: BaseException, text: str) -> tuple[str, str, dict[str, str]]:
    """The alarm a halt on ``error`` raises: (code, text, hint fields); never a class name."""
    fields = error.fields() if isinstance(error, SwapstationError) else {}
    return kind_of(error).alarm or "internal_error", text, fields


class _Fields(dict[str, str]):
    """Hint fields; one the error cannot fill reads as what it stands for, never a crash."""

    def __missing__(self, key: str) -> str:
        return f"the {key}"


def hint(code: str, fields: dict[str, str] | None = None) -> str:
    """The hint of alarm ``code``, naming what ``fields`` say (device, action...)."""
    return ALARMS[code].hint.format_map(_Fields(fields or {}))
