"""An operator's MQTT client: send a command and get its reply, read the retained topics.

Used by ``swapctl status``/``cmd``/``inventory``/``alarms``/``history``, the console and the
demo. It knows only the contract and the bus: whatever it shows, any MQTT tool could show.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from controller.aio import Changes
from controller.bus import Bus, PendingRequests
from controller.contract import (
    DEVICES,
    Alarms,
    Event,
    EventAdapter,
    History,
    Inventory,
    OperatorCommand,
    PayloadError,
    Reply,
    Status,
    Topics,
    decode,
    decode_as,
)

_seq = itertools.count(1)
M = TypeVar("M", bound=BaseModel)

#: Called with every message the client receives, before the client's own handling.
Listener = Callable[[str, bytes], None]


class OperatorClient:
    """Talks to one station as an operator.

    Args:
        bus: a bus not yet started (credentials and TLS are the bus's business).
        station_id: which station.
        on_event: called with every decoded event (optional).
        username: the broker user this bus logs in as, if any. Commands then go to
            ``cmd/<username>``, where the broker's ACL vouches for the sender, so the controller
            records who sent each command without trusting the payload.
    """

    def __init__(
        self,
        bus: Bus,
        station_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        username: str | None = None,
    ) -> None:
        self.bus = bus
        self.topics = Topics(station_id)
        self.username = username
        self.command_topic = self.topics.cmd_from(username) if username else self.topics.cmd
        self._pending: PendingRequests[Reply] = PendingRequests()
        self._on_event = on_event
        self._listeners: list[Listener] = []
        self.status: Status | None = None
        self.inventory: Inventory | None = None
        self.alarms: Alarms | None = None
        self.history: History | None = None
        self.controller_online: bool | None = None
        #: ``online`` per device, from the retained ``drivers/<device>/online`` topics.
        self.drivers_online: dict[str, bool] = {}
        self._changed = Changes()

    def add_listener(self, listener: Listener) -> None:
        """Also hand every received ``(topic, payload)`` to ``listener`` (the console's model).

        Listeners run inline on the bus's dispatch task, so they must be quick and not raise.
        """
        self._listeners.append(listener)

    async def start(self, *, wait_s: float | None = 10.0) -> None:
        """Subscribe and connect; ``wait_s=None`` returns at once and connects in the background
        (the console opens even while the broker is away, and says so)."""
        t = self.topics
        await self.bus.subscribe(t.reply, self._on_reply)
        await self.bus.subscribe(t.status, self._on_status)
        await self.bus.subscribe(t.inventory, self._on_inventory)
        await self.bus.subscribe(t.alarms, self._on_alarms)
        await self.bus.subscribe(t.history, self._on_history)
        await self.bus.subscribe(t.controller, self._on_controller)
        await self.bus.subscribe(t.events, self._on_events)
        for device in DEVICES:
            await self.bus.subscribe(t.driver_online(device), self._on_driver_online)
        await self.bus.start(wait_s=wait_s)

    async def stop(self) -> None:
        await self.bus.stop()

    async def __aenter__(self) -> OperatorClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _touch(self, topic: str, payload: bytes) -> None:
        for listener in self._listeners:
            listener(topic, payload)
        self._changed.notify()

    async def _on_reply(self, topic: str, payload: bytes) -> None:
        for listener in self._listeners:
            listener(topic, payload)
        try:
            reply = decode(Reply, payload)
        except PayloadError:
            return
        self._pending.deliver(reply.id, reply)

    async def _on_status(self, topic: str, payload: bytes) -> None:
        self.status = _decode_or_none(Status, payload)
        self._touch(topic, payload)

    async def _on_inventory(self, topic: str, payload: bytes) -> None:
        self.inventory = _decode_or_none(Inventory, payload)
        self._touch(topic, payload)

    async def _on_alarms(self, topic: str, payload: bytes) -> None:
        self.alarms = _decode_or_none(Alarms, payload)
        self._touch(topic, payload)

    async def _on_history(self, topic: str, payload: bytes) -> None:
        self.history = _decode_or_none(History, payload)
        self._touch(topic, payload)

    async def _on_controller(self, topic: str, payload: bytes) -> None:
        self.controller_online = payload.strip() == b"online"
        self._touch(topic, payload)

    async def _on_driver_online(self, topic: str, payload: bytes) -> None:
        device = self.topics.device_of(topic)
        if device is not None:
            self.drivers_online[device] = payload.strip() == b"online"
        self._touch(topic, payload)

    async def _on_events(self, topic: str, payload: bytes) -> None:
        for listener in self._listeners:
            listener(topic, payload)
        if self._on_event is None:
            return
        try:
            self._on_event(decode_as(EventAdapter, payload))
        except PayloadError:
            return

    @staticmethod
    def new_command_id() -> str:
        """A command id unique to this process (the reply echoes it)."""
        return f"op-{os.getpid()}-{next(_seq)}"

    async def command(
        self,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float = 5.0,
        command_id: str | None = None,
    ) -> Reply | None:
        """Send ``cmd`` and wait for its reply; ``None`` if no reply came in time.

        Raises ``BusDisconnected`` at once when there is no connection: a command is never
        queued to go out later.
        """
        command_id = command_id or self.new_command_id()
        message = OperatorCommand(id=command_id, cmd=cmd, args=args or {})
        with self._pending.open(command_id) as replies:
            await self.bus.publish(self.command_topic, message)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the reply does (CPython gh-86296).
                async with asyncio.timeout(timeout_s):
                    return await replies.get()
            except TimeoutError:
                return None

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait (real seconds) until ``predicate()`` holds after some update."""
        return await self._changed.wait_until(predicate, timeout_s)


def _decode_or_none(model: type[M], payload: bytes) -> M | None:
    if not payload:
        return None
    try:
        return decode(model, payload)
    except PayloadError:
        return None
