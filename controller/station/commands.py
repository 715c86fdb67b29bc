"""Operator commands: validate, execute, and answer each exactly once.

Commands are taken one at a time from a queue, in arrival order, so replies keep that order and
no two commands race on the mode. A command that is not valid now changes nothing and is refused
with a reason that says why and what is valid instead. A command id seen twice gets the first
reply again and has its effect once (QoS 1 may redeliver).

Whether a command exists, its arguments, the modes it is valid in and its precondition all come
from the command table (:mod:`controller.contract.commands`); what it then does is its behaviour
(:mod:`controller.station.behaviours`). Nothing here names a particular command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from pydantic import BaseModel

from controller.aio import cancel_and_wait
from controller.contract import (
    OPERATOR_COMMANDS,
    CommandHandled,
    CommandSpec,
    ErrorEvent,
    OperatorCommand,
    PayloadError,
    Reply,
    decode,
)
from controller.contract.commands import InvalidArguments, offered_in, operator_command
from controller.errors import CommandRefused
from controller.station.behaviours import BEHAVIOURS, CHECKS
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


def _is_urgent(payload: bytes) -> bool:
    """An urgent command (the e-stop) in the table, which must not wait in the queue."""
    try:
        spec = operator_command(decode(OperatorCommand, payload).cmd)
    except PayloadError:
        return False
    return spec is not None and spec.urgent


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
        if _is_urgent(payload):
            # An e-stop never waits behind another command (a manual move may take minutes).
            self._station.spawn(self._handle(topic, payload))
            return
        try:
            self._queue.put_nowait((topic, payload))
        except asyncio.QueueFull:
            self._error(topic, "command queue full; command dropped", payload)
            await self._refuse_unread(payload, "station busy: too many commands queued")

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
                    await self._refuse_unread(payload, "internal error; see controller log")

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
            await self._refuse_unread(payload, f"bad command: {exc.reason}")
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
            result = await self.execute(command.cmd, command.args, sender=self._sender(topic))
            reply = Reply(
                id=command.id,
                ok=True,
                cmd=command.cmd,
                mode=station.mode,
                result=result.model_dump(mode="json") if result is not None else None,
            )
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

    async def _refuse_unread(self, payload: bytes, error: str) -> None:
        """Refuse a payload that was never read as a command, echoing its id if it has one."""
        await self._reply(Reply(id=_id_of(payload), ok=False, error=error, mode=self._station.mode))

    async def _reply(self, reply: Reply) -> None:
        reply = reply.model_copy(update={"ts": self._station.clock.now()})
        await self._station.publish(self._topics.reply, reply)

    def _error(self, topic: str, reason: str, payload: bytes) -> None:
        self._station.event(
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
    async def execute(
        self, cmd: str, args: dict[str, Any], *, sender: str | None = None
    ) -> BaseModel | None:
        """Carry out one command or raise :class:`CommandRefused` having changed nothing; what
        it returns (a query's answer) goes into the reply's ``result``.

        Everything but the command's own work comes from the command table: whether it exists,
        its arguments, the modes it is valid in and its precondition; then the behaviour
        registered under its name does the work.
        """
        spec = operator_command(cmd)
        if spec is None:
            known = ", ".join(OPERATOR_COMMANDS)
            raise CommandRefused(cmd, f"unknown command {cmd!r}; known: {known}")
        try:
            parsed = spec.parse_args(args)
        except InvalidArguments as exc:
            raise CommandRefused(cmd, exc.reason) from None
        mode = self._station.mode
        if mode not in spec.valid_in:
            only = ", ".join(m.value for m in spec.valid_in)
            raise CommandRefused(
                cmd,
                f"not valid in mode {mode.value}, only in {only}; valid now: {self.valid_now()}",
            )
        refusal = self._unmet(spec)
        if refusal:
            raise CommandRefused(cmd, refusal)
        return await BEHAVIOURS[cmd](self._station, parsed, sender)

    def valid_now(self) -> str:
        """The operator commands that would be carried out now (valid in this mode, their
        precondition holding), for a refusal to offer instead."""
        offered = [c.name for c in offered_in(self._station.mode) if self._unmet(c) is None]
        return ", ".join(offered) or "none"

    def _unmet(self, spec: CommandSpec) -> str | None:
        """Why ``spec``'s precondition does not hold now (None: it holds, or it has none)."""
        if spec.precondition is None:
            return None
        return CHECKS[spec.precondition.check](self._station)
