"""An operator's MQTT client: send a command and get its reply, read status and inventory.

Used by ``swapctl status``/``cmd`` and the demo. It knows only the contract and the bus.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from controller.bus import Bus, PendingRequests
from controller.contract import (
    Event,
    EventAdapter,
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


class OperatorClient:
    """Talks to one station as an operator.

    Args:
        bus: a bus not yet started (credentials and TLS are the bus's business).
        station_id: which station.
        on_event: called with every decoded event (optional).
    """

    def __init__(
        self,
        bus: Bus,
        station_id: str,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = Topics(station_id)
        self._pending: PendingRequests[Reply] = PendingRequests()
        self._on_event = on_event
        self.status: Status | None = None
        self.inventory: Inventory | None = None
        self.controller_online: bool | None = None
        self._changed = asyncio.Event()

    async def start(self, *, wait_s: float = 10.0) -> None:
        t = self.topics
        await self.bus.subscribe(t.reply, self._on_reply)
        await self.bus.subscribe(t.status, self._on_status)
        await self.bus.subscribe(t.inventory, self._on_inventory)
        await self.bus.subscribe(t.controller, self._on_controller)
        await self.bus.subscribe(t.events, self._on_events)
        await self.bus.start(wait_s=wait_s)

    async def stop(self) -> None:
        await self.bus.stop()

    async def __aenter__(self) -> OperatorClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _on_reply(self, topic: str, payload: bytes) -> None:
        try:
            reply = decode(Reply, payload)
        except PayloadError:
            return
        self._pending.deliver(reply.id, reply)

    async def _on_status(self, topic: str, payload: bytes) -> None:
        self.status = _decode_or_none(Status, payload)
        self._touch()

    async def _on_inventory(self, topic: str, payload: bytes) -> None:
        self.inventory = _decode_or_none(Inventory, payload)
        self._touch()

    async def _on_controller(self, topic: str, payload: bytes) -> None:
        self.controller_online = payload.strip() == b"online"
        self._touch()

    async def _on_events(self, topic: str, payload: bytes) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(decode_as(EventAdapter, payload))
        except PayloadError:
            return

    async def command(
        self, cmd: str, args: dict[str, Any] | None = None, *, timeout_s: float = 5.0
    ) -> Reply | None:
        """Send ``cmd`` and wait for its reply; ``None`` if no reply came in time."""
        command_id = f"op-{os.getpid()}-{next(_seq)}"
        message = OperatorCommand(id=command_id, cmd=cmd, args=args or {})
        with self._pending.open(command_id) as replies:
            await self.bus.publish(self.topics.cmd, message)
            try:
                return await asyncio.wait_for(replies.get(), timeout_s)
            except TimeoutError:
                return None

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait (real seconds) until ``predicate()`` holds after some update."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            return predicate()
        return True


def _decode_or_none(model: type[M], payload: bytes) -> M | None:
    if not payload:
        return None
    try:
        return decode(model, payload)
    except PayloadError:
        return None
