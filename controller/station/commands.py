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
from collections import OrderedDict

from controller.contract import (
    OPERATOR_COMMANDS,
    ErrorEvent,
    Mode,
    OperatorCommand,
    PayloadError,
    Reply,
    decode,
)
from controller.errors import CommandRefused
from controller.station.station import Station

log = logging.getLogger(__name__)

_RECENT = 1024
_QUEUE_MAX = 256


def _id_of(payload: bytes) -> str:
    """The command id of an unusable payload, if one can be read, so the refusal can echo it."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])[:256]
    return ""


class CommandHandler:
    def __init__(self, station: Station) -> None:
        self._station = station
        self._topics = station.topics
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(_QUEUE_MAX)
        self._replies: OrderedDict[str, Reply] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="station-commands")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Bus handler for ``cmd``: queue, never block the dispatcher."""
        try:
            self._queue.put_nowait(payload)
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

    async def _run(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self._handle(payload)
            except Exception:
                log.exception("command handling failed")
                await self._reply(
                    Reply(
                        id=_id_of(payload),
                        ok=False,
                        error="internal error; see controller log",
                        mode=self._station.mode,
                    )
                )

    async def _handle(self, payload: bytes) -> None:
        station = self._station
        try:
            command = decode(OperatorCommand, payload)
        except PayloadError as exc:
            self._error(self._topics.cmd, exc.reason, payload)
            await self._reply(
                Reply(
                    id=_id_of(payload),
                    ok=False,
                    error=f"bad command: {exc.reason}",
                    mode=station.mode,
                )
            )
            return
        earlier = self._replies.get(command.id)
        if earlier is not None:
            await self._reply(earlier)  # same answer, no second effect
            return
        try:
            await self.execute(command.cmd, command.args)
            reply = Reply(id=command.id, ok=True, cmd=command.cmd, mode=station.mode)
        except CommandRefused as exc:
            reply = Reply(
                id=command.id, ok=False, cmd=command.cmd, error=exc.reason, mode=station.mode
            )
        self._replies[command.id] = reply
        while len(self._replies) > _RECENT:
            self._replies.popitem(last=False)
        await self._reply(reply)

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
    async def execute(self, cmd: str, args: dict[str, object]) -> None:
        """Carry out one command or raise :class:`CommandRefused` having changed nothing."""
        station = self._station
        if cmd not in OPERATOR_COMMANDS:
            raise CommandRefused(
                cmd, f"unknown command {cmd!r}; known: {', '.join(OPERATOR_COMMANDS)}"
            )
        if args:
            raise CommandRefused(cmd, f"{cmd} takes no arguments, got {sorted(args)}")
        if cmd == "estop":  # valid from every mode, and idempotent
            if station.mode is not Mode.estopped:
                await station.halt(Mode.estopped, "e-stop by operator")
            return
        if not station.modes.can(cmd):
            valid = ", ".join(station.modes.valid_commands()) or "none"
            raise CommandRefused(cmd, f"not valid in mode {station.mode.value}; valid now: {valid}")
        refusal = self._precondition(cmd)
        if refusal:
            raise CommandRefused(cmd, refusal)
        if cmd == "abort":
            await station.halt(Mode.aborted, "aborted by operator")
            return
        if cmd == "stop":
            await station.stop_waiting()
        if cmd in ("resume", "reset", "start"):
            station.reason = None
        if cmd == "hold":
            station.reason = "held by operator"
        if cmd == "reset":
            station.alarms.clear_acknowledged()
        await station.modes.fire(cmd)
        if cmd == "start":
            station.start_execute()

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
