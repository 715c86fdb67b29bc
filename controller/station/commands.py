"""Operator commands: validate, execute, and answer each exactly once.

Commands are taken one at a time from a queue, in arrival order, so replies keep that order and
no two commands race on the mode. A command that is not valid now changes nothing and is refused
with a reason that says why and what is valid instead. A command id seen twice gets the first
reply again and has its effect once (QoS 1 may redeliver).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from controller.aio import cancel_and_wait
from controller.contract import (
    DRIVER_ACTIONS,
    OPERATOR_COMMANDS,
    CommandHandled,
    ErrorEvent,
    Mode,
    OperatorCommand,
    PayloadError,
    Reply,
    decode,
)
from controller.errors import CommandRefused, SwapstationError
from controller.station.station import Station

log = logging.getLogger(__name__)

_QUEUE_MAX = 256


def _id_of(payload: bytes) -> str:
    """The command id of an unusable payload, if one can be read, so the refusal can echo it."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        candidate = str(data["id"])[:256]
        try:
            candidate.encode()  # a lone surrogate cannot go back out as UTF-8
        except UnicodeEncodeError:
            return ""
        return candidate
    return ""


#: The audit event carries a command's arguments up to this size, and its error text up to
#: AUDIT_ERROR_CHARS: a command near the 64 KiB payload limit must still leave an audit event
#: under that limit (it was dropped whole).
AUDIT_ARGS_BYTES = 4096
AUDIT_ERROR_CHARS = 1000


def _auditable(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` as the audit event can carry them: as they are if they encode as UTF-8 JSON (a
    lone surrogate cannot) within :data:`AUDIT_ARGS_BYTES`, else a marker saying why not."""
    try:
        size = len(json.dumps(args, ensure_ascii=False).encode())
    except (ValueError, TypeError):
        return {"unencodable": True}
    if size > AUDIT_ARGS_BYTES:
        return {"omitted": f"{size} bytes of arguments (more than {AUDIT_ARGS_BYTES})"}
    return args


def _is_estop(payload: bytes) -> bool:
    try:
        return decode(OperatorCommand, payload).cmd == "estop"
    except PayloadError:
        return False


#: Required arguments of the commands that take any, and their types.
_ARGS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ack": {"alarm_id": str},
    "manual": {"device": str, "action": str},
    "set_location": {"pack_id": str, "location": str},
}
_OPTIONAL: dict[str, set[str]] = {"manual": {"args"}}


def _check_args(cmd: str, args: dict[str, Any]) -> None:
    required = _ARGS.get(cmd, {})
    allowed = set(required) | _OPTIONAL.get(cmd, set())
    extra = sorted(set(args) - allowed)
    if extra:
        if not allowed:
            raise CommandRefused(cmd, f"{cmd} takes no arguments, got {extra}")
        raise CommandRefused(cmd, f"unexpected argument(s) {extra}; {cmd} takes {sorted(allowed)}")
    for name, kind in required.items():
        if name not in args:
            raise CommandRefused(cmd, f"missing argument {name!r}")
        if not isinstance(args[name], kind):
            raise CommandRefused(cmd, f"argument {name!r} has the wrong type")


class CommandHandler:
    def __init__(self, station: Station) -> None:
        self._station = station
        self._topics = station.topics
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(_QUEUE_MAX)
        self._store = station.store
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="station-commands")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Bus handler for ``cmd``: queue, never block the dispatcher."""
        if _is_estop(payload):
            # An e-stop never waits behind another command (a manual move may take minutes).
            self._station.spawn(self._handle(topic, payload))
            return
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self._error(topic, "command queue full; command dropped", payload)
            await self._reply(
                Reply(
                    id=_id_of(payload),
                    ok=False,
                    error="station busy: too many commands queued",
                    mode=self._station.mode,
                )
            )

    async def on_retained(self, topic: str, payload: bytes) -> None:
        """A retained message on a command topic: never carried out (it may have been sent
        long ago, while the controller was down, and nobody is at the console now), and no
        reply; an error event names the topic so an operator can clear it."""
        if not payload:
            return  # the retained message being cleared
        log.warning("ignored a retained command on %s", topic)
        self._error(
            topic,
            "retained command ignored: commands are never retained; clear it with an empty "
            f"retained message on {topic}",
            payload,
        )

    async def _run(self) -> None:
        while True:
            topic, payload = await self._queue.get()
            try:
                await self._handle(topic, payload)
            except Exception:
                # This task must outlive any payload: the next command may be an e-stop.
                log.exception("command handling failed")
                with contextlib.suppress(Exception):
                    await self._reply(
                        Reply(
                            id=_id_of(payload),
                            ok=False,
                            error="internal error; see controller log",
                            mode=self._station.mode,
                        )
                    )

    def _sender(self, topic: str) -> str | None:
        """The broker user a command came from (``cmd/<user>``; the ACL vouches for it)."""
        prefix = self._topics.cmd + "/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None

    async def _handle(self, topic: str, payload: bytes) -> None:
        station = self._station
        try:
            command = decode(OperatorCommand, payload)
        except PayloadError as exc:
            self._error(topic, exc.reason, payload)
            await self._reply(
                Reply(
                    id=_id_of(payload),
                    ok=False,
                    error=f"bad command: {exc.reason}",
                    mode=station.mode,
                )
            )
            return
        now = station.clock.now()
        if not self._store.record_command(
            command.id, command.cmd, command.args, self._sender(topic), now
        ):
            earlier = self._store.command_result(command.id)
            ok, error = earlier if earlier is not None else (False, "command still being handled")
            await self._reply(  # the same answer again; the command had its effect once
                Reply(id=command.id, ok=ok, error=error, cmd=command.cmd, mode=station.mode)
            )
            return
        try:
            await self.execute(command.cmd, command.args, sender=self._sender(topic))
            reply = Reply(id=command.id, ok=True, cmd=command.cmd, mode=station.mode)
        except CommandRefused as exc:
            reply = Reply(
                id=command.id, ok=False, cmd=command.cmd, error=exc.reason, mode=station.mode
            )
        self._store.record_command_result(command.id, reply.ok, reply.error, station.clock.now())
        await self._reply(reply)
        station.event(
            CommandHandled(
                ts=station.clock.now(),
                station=station.config.station_id,
                id=command.id,
                cmd=command.cmd,
                args=_auditable(command.args),
                sender=self._sender(topic),
                ok=reply.ok,
                error=reply.error[:AUDIT_ERROR_CHARS] if reply.error else None,
            )
        )

    async def _reply(self, reply: Reply) -> None:
        reply = reply.model_copy(update={"ts": self._station.clock.now()})
        await self._station.publish(self._topics.reply, reply)

    def _error(self, topic: str, reason: str, payload: bytes) -> None:
        self._station.error_event(
            ErrorEvent(
                ts=self._station.clock.now(),
                station=self._station.config.station_id,
                source="controller",
                topic=topic,
                error=reason[:1000],
                payload_excerpt=payload[:200].decode("utf-8", errors="replace"),
            )
        )

    # ---- the commands ----------------------------------------------------------------------
    async def execute(self, cmd: str, args: dict[str, Any], *, sender: str | None = None) -> None:
        """Carry out one command or raise :class:`CommandRefused` having changed nothing."""
        station = self._station
        if cmd not in OPERATOR_COMMANDS:
            known = ", ".join(OPERATOR_COMMANDS)
            raise CommandRefused(cmd, f"unknown command {cmd!r}; known: {known}")
        _check_args(cmd, args)
        if cmd == "estop":  # valid from every mode, and idempotent
            if station.mode is not Mode.estopped:
                await station.halt(Mode.estopped, "e-stop by operator")
            return
        if cmd == "ack":
            self._ack(str(args["alarm_id"]), sender)
            return
        if cmd in ("manual", "set_location"):
            await self._maintenance(cmd, args)
            return
        if not station.modes.can(cmd):
            # what would be carried out now: valid in this mode and its precondition holds
            possible = [c for c in station.modes.valid_commands() if self._precondition(c) is None]
            valid = ", ".join(possible) or "none"
            raise CommandRefused(cmd, f"not valid in mode {station.mode.value}; valid now: {valid}")
        refusal = self._precondition(cmd)
        if refusal:
            raise CommandRefused(cmd, refusal)
        if cmd == "abort":
            await station.halt(Mode.aborted, "aborted by operator")
            return
        if cmd == "stop":
            await station.stop_waiting()
        if cmd == "reset":
            station.alarms.clear_acknowledged(keep=station.standing_alarms())
        if cmd == "hold":
            reason: str | None = "held by operator"
        elif cmd in ("resume", "reset", "start"):
            reason = None
        else:  # stop, clear, maintenance, leave_maintenance: still why the station halted
            reason = station.reason
        await station.change_mode(cmd, reason=reason)
        if cmd == "start":
            station.start_execute()
        if cmd == "resume":
            # Results lost while the broker or a driver was away are recovered by asking
            # again under the same ids; drivers execute an id once.
            await station.devices.resend_inflight()

    def _ack(self, alarm_id: str, sender: str | None) -> None:
        station = self._station
        ids = [a.id for a in station.alarms.active()] if alarm_id == "all" else [alarm_id]
        for one in ids:
            # by the broker user that sent it; None on the plain cmd topic, where no broker
            # vouches for a name (an unsecured development broker)
            if not station.alarms.acknowledge(one, by=sender):
                raise CommandRefused("ack", f"no active alarm {one!r}")

    async def _maintenance(self, cmd: str, args: dict[str, Any]) -> None:
        station = self._station
        if station.mode is not Mode.maintenance:
            raise CommandRefused(cmd, f"only in maintenance mode (now {station.mode.value})")
        if cmd == "set_location":
            pack_id, location = str(args["pack_id"]), str(args["location"])
            if pack_id not in station.ledger.locations:
                raise CommandRefused(cmd, f"unknown pack {pack_id!r}")
            occupant = station.ledger.at(location)
            if occupant not in (None, pack_id) and location != "unknown":
                raise CommandRefused(cmd, f"{location} already holds {occupant}")
            try:
                station.ledger.set_location(pack_id, location, "operator, after inspection")
            except ValueError as exc:
                raise CommandRefused(cmd, str(exc)) from None
            station.inventory_changed()
            return
        device, action = str(args["device"]), str(args["action"])
        if device not in DRIVER_ACTIONS or action not in DRIVER_ACTIONS[device]:
            raise CommandRefused(cmd, f"no action {device}.{action}")
        action_args = args.get("args") or {}
        if not isinstance(action_args, dict):
            raise CommandRefused(cmd, "args must be an object")
        limit = max(station.config.swap.phase_deadlines_s.values())
        try:
            async with station.clock.deadline(limit):
                await station.manual(device, action, action_args)
        except TimeoutError:
            await station.make_safe({device})
            raise CommandRefused(
                cmd, f"{device}.{action}: no result within {limit:g} s; told it to stop"
            ) from None
        except SwapstationError as exc:
            raise CommandRefused(cmd, str(exc)) from None

    def _precondition(self, cmd: str) -> str | None:
        """Why ``cmd`` may not run now although the mode allows it (None: it may)."""
        station = self._station
        devices = station.devices
        safety = devices.safety
        pressed = safety is None or safety.estop_pressed
        if cmd in ("clear", "reset") and station.mode in (Mode.estopped, Mode.stopped) and pressed:
            return "e-stop still pressed (or relay state unknown); release it first"
        if cmd == "start":
            problems: list[str] = []
            offline = devices.offline()
            if offline:
                problems.append(f"driver(s) offline: {', '.join(offline)}")
            if safety is None or not safety.ok:
                problems.append("safety relay not ok")
            if not station.ledger.seeded:
                problems.append("rack inventory not yet reported")
            problems += station.ledger.problems()
            d = station.devices
            problems += station.ledger.disagreements(d.rack, d.arm, d.vehicle)
            if station.ledger.at("gripper"):
                problems.append("the gripper holds a pack: put it away in maintenance first")
            return "; ".join(problems) or None
        if cmd == "resume":
            if safety is not None and safety.light_curtain_broken:
                return "light curtain still broken"
            offline = devices.offline()
            if offline:
                return f"driver(s) offline: {', '.join(offline)}"
        if cmd == "stop" and station.run is not None:
            return "a swap is under way; hold or abort it first"
        return None
