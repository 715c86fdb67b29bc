"""What each operator command does: one behaviour function per command, and the named checks
the command table's preconditions refer to.

The table (:mod:`controller.contract.commands`) says which modes a command is valid in, where it
leads and what it needs; the dispatcher (:mod:`controller.station.commands`) checks all that and
then calls the behaviour registered here under the command's name. So a behaviour only does the
command's work; it may still refuse (:class:`CommandRefused`) where only its arguments show the
problem (an alarm that is not active, a pack already in that slot), having changed nothing.

A check returns why its command may not run now (None: it may). It words the refusal itself,
since it names what is wrong right now (which drivers are offline, which problems stand).

Every operator command in the table must have a behaviour, and every precondition a check: this
module refuses to load otherwise, so a command cannot ship half-made.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from controller.contract import Mode
from controller.contract.commands import (
    COMMANDS,
    OPERATOR_COMMANDS,
    AckArgs,
    AlarmHistoryArgs,
    ManualArgs,
    NoArgs,
    ReconcileArgs,
    RecoverArgs,
    SetLocationArgs,
    ShelveArgs,
    UnshelveArgs,
    parse_time,
)
from controller.errors import CommandRefused, SwapstationError
from controller.station import reconcile
from controller.station.alarms import alarm_history
from controller.station.station import Station

log = logging.getLogger(__name__)

#: A command's work: (the station, its validated arguments, the broker user who sent it); what
#: it returns (None for most) is the reply's ``result``.
Behaviour = Callable[[Station, Any, str | None], Awaitable[BaseModel | None]]
#: Why a command may not run now, or None.
Check = Callable[[Station], str | None]

BEHAVIOURS: dict[str, Behaviour] = {}
CHECKS: dict[str, Check] = {}

_B = TypeVar("_B", bound=Callable[..., Awaitable[BaseModel | None]])
_C = TypeVar("_C", bound=Check)


def behaviour(name: str) -> Callable[[_B], _B]:
    """Register the decorated function as what command ``name`` does."""

    def register(fn: _B) -> _B:
        BEHAVIOURS[name] = fn
        return fn

    return register


def check(name: str) -> Callable[[_C], _C]:
    """Register the decorated function as the precondition check called ``name``."""

    def register(fn: _C) -> _C:
        CHECKS[name] = fn
        return fn

    return register


# ---- production ------------------------------------------------------------------------------


@behaviour("start")
async def _start(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("start", reason=None)
    station.start_execute()


@behaviour("hold")
async def _hold(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("hold", reason="held by operator")


@behaviour("resume")
async def _resume(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("resume", reason=None)
    # Results lost while the broker or a driver was away are recovered by asking again under
    # the same ids; drivers execute an id once.
    await station.devices.resend_inflight()


@behaviour("stop")
async def _stop(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.stop_waiting()
    await station.change_mode("stop", reason=station.reason)


# ---- halting and getting going again ---------------------------------------------------------


@behaviour("estop")
async def _estop(station: Station, _: NoArgs, sender: str | None) -> None:
    if station.mode is not Mode.estopped:  # latched already: nothing more to do
        await station.halt(Mode.estopped, "e-stop by operator")


@behaviour("abort")
async def _abort(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.halt(Mode.aborted, "aborted by operator")


@behaviour("clear")
async def _clear(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("clear", reason=station.reason)  # still why it halted


@behaviour("reset")
async def _reset(station: Station, _: NoArgs, sender: str | None) -> None:
    station.alarms.clear_acknowledged(keep=station.standing_alarms())
    await station.change_mode("reset", reason=None)


@behaviour("ack")
async def _ack(station: Station, args: AckArgs, sender: str | None) -> None:
    alarms = station.alarms
    ids = [a.id for a in alarms.annunciated()] if args.alarm_id == "all" else [args.alarm_id]
    for alarm_id in ids:
        if not alarms.acknowledge(alarm_id, by=sender):
            raise CommandRefused("ack", f"no active alarm {alarm_id!r} on the list")


# ---- maintenance -----------------------------------------------------------------------------


@behaviour("maintenance")
async def _maintenance(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("maintenance", reason=station.reason)


@behaviour("leave_maintenance")
async def _leave_maintenance(station: Station, _: NoArgs, sender: str | None) -> None:
    await station.change_mode("leave_maintenance", reason=station.reason)


@behaviour("manual")
async def _manual(station: Station, args: ManualArgs, sender: str | None) -> None:
    device, action = args.device, args.action
    limit = max(station.config.swap.phase_deadlines_s.values())
    try:
        async with station.clock.deadline(limit):
            await station.manual(device, action, dict(args.args or {}))
    except TimeoutError:
        await station.make_safe({device})
        raise CommandRefused(
            "manual", f"{device}.{action}: no result within {limit:g} s; told it to stop"
        ) from None
    except SwapstationError as exc:
        raise CommandRefused("manual", str(exc)) from None


@behaviour("recover")
async def _recover(station: Station, args: RecoverArgs, sender: str | None) -> None:
    done = await station.guided.run(station.bay.situation, args.plan, args.steps)
    log.info("recover %s by %s: %s", args.plan, sender or "(no user)", done)
    station.inventory_changed()


@behaviour("set_location")
async def _set_location(station: Station, args: SetLocationArgs, sender: str | None) -> None:
    ledger, pack_id, location = station.ledger, args.pack_id, args.location
    if pack_id not in ledger.locations:
        raise CommandRefused("set_location", f"unknown pack {pack_id!r}")
    occupant = ledger.at(location)
    if occupant not in (None, pack_id) and location != "unknown":
        raise CommandRefused("set_location", f"{location} already holds {occupant}")
    try:
        ledger.set_location(pack_id, location, "operator, after inspection")
    except ValueError as exc:
        raise CommandRefused("set_location", str(exc)) from None
    station.inventory_changed()


# ---- the journal against the sensors; alarms as ISA-18.2 has them ----------------------------


def _sensors(station: Station) -> reconcile.Sensors:
    d = station.devices
    return d.rack, d.arm, d.vehicle


@behaviour("reconcile")
async def _reconcile(station: Station, args: ReconcileArgs, sender: str | None) -> BaseModel:
    if args.adopt is None:
        return reconcile.report(station.ledger, _sensors(station))
    return reconcile.apply(
        station.ledger,
        _sensors(station),
        station.alarms,
        by=sender,
        chosen=args.chosen(),
        inventory_changed=station.inventory_changed,
    )


@behaviour("shelve")
async def _shelve(station: Station, args: ShelveArgs, sender: str | None) -> None:
    refusal = station.alarms.shelve(args.alarm_id, args.minutes, args.reason, by=sender)
    if refusal:
        raise CommandRefused("shelve", refusal)


@behaviour("unshelve")
async def _unshelve(station: Station, args: UnshelveArgs, sender: str | None) -> None:
    if not station.alarms.unshelve(args.alarm_id, by=sender):
        raise CommandRefused("unshelve", f"no shelved alarm {args.alarm_id!r}")


@behaviour("alarm_history")
async def _alarm_history(station: Station, args: AlarmHistoryArgs, sender: str | None) -> BaseModel:
    since = parse_time(args.since, "since")
    until = parse_time(args.until, "until") if args.until else station.clock.now()
    return alarm_history(station.store, since, until, limit=args.limit)


# ---- the preconditions the table names -------------------------------------------------------


@check("sensors_settled")
def _sensors_settled(station: Station) -> str | None:
    if station.run is not None or station.halting:
        return "a swap or a halt is under way; reconcile when the station is at rest"
    missing = [d for d in ("rack", "arm", "vehicle") if station.devices[d].online is not True]
    if missing or None in _sensors(station):
        return f"driver(s) not online or not reported: {', '.join(missing) or 'rack/arm/vehicle'}"
    if not station.ledger.seeded:
        return "rack inventory not yet reported"
    return None


@check("ready_to_start")
def _ready_to_start(station: Station) -> str | None:
    devices, ledger = station.devices, station.ledger
    problems: list[str] = []
    if offline := devices.offline():
        problems.append(f"driver(s) offline: {', '.join(offline)}")
    if devices.safety is None or not devices.safety.ok:
        problems.append("safety relay not ok")
    if not ledger.seeded:
        problems.append("rack inventory not yet reported")
    problems += ledger.problems()
    problems += ledger.disagreements(devices.rack, devices.arm, devices.vehicle)
    if ledger.at("gripper"):
        problems.append("the gripper holds a pack: put it away in maintenance first")
    if "journal_damaged" in station.standing_alarms():
        problems.append("the journal is damaged (alarm journal_damaged): replace it first")
    if not offline:  # an offline driver is said above; the rest must be where it belongs
        problems += [f"not normal: {what}" for what in station.bay.situation.not_normal]
    return "; ".join(dict.fromkeys(problems)) or None


@check("resumable")
def _resumable(station: Station) -> str | None:
    safety = station.devices.safety
    if safety is not None and safety.light_curtain_broken:
        return "light curtain still broken"
    if offline := station.devices.offline():
        return f"driver(s) offline: {', '.join(offline)}"
    return None


@check("no_swap_under_way")
def _no_swap_under_way(station: Station) -> str | None:
    return "a swap is under way; hold or abort it first" if station.run is not None else None


@check("relay_released")
def _relay_released(station: Station) -> str | None:
    safety = station.devices.safety
    pressed = safety is None or safety.estop_pressed
    if pressed and station.mode in (Mode.estopped, Mode.stopped):
        return "e-stop still pressed (or relay state unknown); release it first"
    return None


def _require_complete() -> None:
    """Every operator command has a behaviour, every named precondition a check, and nothing
    is registered that the table does not know."""
    named_checks = {c.precondition.check for c in COMMANDS if c.precondition is not None}
    wrong = [
        f"{what} {sorted(names)}"
        for what, names in (
            ("commands without a behaviour:", set(OPERATOR_COMMANDS) - set(BEHAVIOURS)),
            ("behaviours of no operator command:", set(BEHAVIOURS) - set(OPERATOR_COMMANDS)),
            ("preconditions without a check:", named_checks - set(CHECKS)),
            ("checks no command names:", set(CHECKS) - named_checks),
        )
        if names
    ]
    if wrong:
        raise RuntimeError("the command table and its behaviours disagree: " + "; ".join(wrong))


_require_complete()
