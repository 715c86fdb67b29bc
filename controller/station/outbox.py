"""Ordered, non-blocking publishing for the station.

State-machine callbacks must stay quick, so they hand messages to the outbox instead of awaiting
PUBACKs. Events go out in order; retained snapshots (status, inventory) are coalesced: only the
latest one is sent. Events raised before the first connection (a restart's recovery alarm, the
mode it comes up in) wait for it. After that, when the broker is away, events are dropped with a
warning (they are not durable by design: the store is) and the retained snapshots are sent again
on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import BaseModel

from controller.aio import cancel_and_wait
from controller.bus import Bus
from controller.errors import BusDisconnected

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._events: asyncio.Queue[tuple[str, BaseModel]] = asyncio.Queue()
        self._snapshots: dict[str, Callable[[], BaseModel]] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None

    def register_snapshot(self, topic: str, make: Callable[[], BaseModel]) -> None:
        """``make()`` builds the retained payload of ``topic`` whenever it is marked dirty."""
        self._snapshots[topic] = make

    def event(self, topic: str, message: BaseModel) -> None:
        self._events.put_nowait((topic, message))
        self._kick()

    def dirty(self, topic: str) -> None:
        self._dirty.add(topic)
        self._kick()

    def all_dirty(self) -> None:
        self._dirty.update(self._snapshots)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything handed over so far has been sent (or dropped)."""
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    def start(
        self, *, heartbeat_s: float | None = None, heartbeat_topic: str | None = None
    ) -> None:
        """Start sending; with a heartbeat, ``heartbeat_topic`` is re-sent every ``heartbeat_s``
        real seconds even when nothing changed, so a reader can tell a live publisher from a
        hung one by the age of its ``ts``."""
        self._task = asyncio.create_task(self._run(), name="station-outbox")
        if heartbeat_s and heartbeat_topic:
            self._beat = asyncio.create_task(
                self._heartbeat(heartbeat_s, heartbeat_topic), name="station-heartbeat"
            )

    async def _heartbeat(self, every_s: float, topic: str) -> None:
        while True:
            await asyncio.sleep(every_s)
            if self._bus.connected:
                self.dirty(topic)

    async def stop(self) -> None:
        task, self._task = self._task, None
        beat, self._beat = self._beat, None
        await cancel_and_wait(beat)
        await cancel_and_wait(task)

    async def _run(self) -> None:
        if self._bus.connections == 0:
            await self._bus.wait_connected(None)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._events.empty():
                topic, message = self._events.get_nowait()
                await self._send(topic, message, retain=False)
            for topic in list(self._dirty):
                self._dirty.discard(topic)
                await self._send(topic, self._snapshots[topic](), retain=True)
            if self._events.empty() and not self._dirty:
                self._idle.set()

    async def _send(self, topic: str, message: BaseModel, *, retain: bool) -> None:
        try:
            await self._bus.publish(topic, message, retain=retain)
        except BusDisconnected as exc:
            log.warning("dropped %s message to %s: %s", type(message).__name__, topic, exc)
        except Exception:  # one unencodable message must not silence the station for good
            log.exception("dropped %s message to %s", type(message).__name__, topic)
