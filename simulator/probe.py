"""A minimal peer of the driver contract, for tests and for poking a running simulator by hand.

It plays the controller's side of the protocol with raw MQTT and nothing else (no devices, no
station): send a command, wait for its answers, read the retained states, the liveness topics,
the error events and the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from controller.bus import Bus
from controller.contract import (
    DeviceStateAdapter,
    DriverCommand,
    DriverResult,
    ErrorEvent,
    EventAdapter,
    Message,
    PayloadError,
    SimWorld,
    Topics,
    decode,
    decode_as,
)

log = logging.getLogger(__name__)
FINAL = ("done", "failed")


class DriverProbe:
    """Send driver commands and record every answer, state and error event of one station."""

    def __init__(
        self,
        url: str,
        station_id: str,
        *,
        client_id: str | None = None,
        max_payload_bytes: int = 1024 * 1024,
    ) -> None:
        # a probe may send what a broken peer would: payloads over the contract's limit too
        self.topics = Topics(station_id)
        self.bus = Bus(
            url, client_id=client_id or f"probe-{station_id}", max_payload_bytes=max_payload_bytes
        )
        self.results: dict[str, list[DriverResult]] = defaultdict(list)
        self.states: dict[str, Message] = {}
        self.online: dict[str, str] = {}
        self.liveness: list[tuple[str, str]] = []
        self.errors: list[ErrorEvent] = []
        self.world: SimWorld | None = None
        self._ids = itertools.count(1)
        self._news = asyncio.Event()

    async def __aenter__(self) -> DriverProbe:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.bus.subscribe(self.topics.drivers_all, self._on_driver)
        await self.bus.subscribe(self.topics.sim_world, self._on_world)
        await self.bus.subscribe(self.topics.events, self._on_event)
        await self.bus.subscribe(self.topics.sim_events, self._on_event)
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()

    # ---- receiving ------------------------------------------------------------------------
    async def _on_driver(self, topic: str, payload: bytes) -> None:
        device = self.topics.device_of(topic)
        kind = topic.rsplit("/", 1)[-1]
        try:
            if kind == "result":
                result = decode(DriverResult, payload)
                self.results[result.id].append(result)
            elif kind == "state" and payload:
                self.states[str(device)] = decode_as(DeviceStateAdapter, payload)
            elif kind == "online" and payload:
                self.online[str(device)] = payload.decode()
                self.liveness.append((str(device), payload.decode()))
            elif kind == "events":
                self.errors.append(decode(ErrorEvent, payload))
        except PayloadError as exc:
            log.error("probe could not read %s: %s", topic, exc)
        self._news.set()

    async def _on_world(self, topic: str, payload: bytes) -> None:
        if payload:
            self.world = decode(SimWorld, payload)
            self._news.set()

    async def _on_event(self, topic: str, payload: bytes) -> None:
        try:
            event = decode_as(EventAdapter, payload)
        except PayloadError:
            return
        if isinstance(event, ErrorEvent):
            self.errors.append(event)
            self._news.set()

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait (real seconds) until ``condition()`` holds after some message arrived."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._news.clear()
                if condition():
                    return
                await self._news.wait()

    # ---- sending --------------------------------------------------------------------------
    def new_id(self, action: str) -> str:
        return f"probe-{action}-{next(self._ids)}"

    async def send(
        self, device: str, action: str, args: dict[str, Any] | None = None, *, cmd_id: str = ""
    ) -> str:
        cmd_id = cmd_id or self.new_id(action)
        await self.bus.publish(
            self.topics.driver_cmd(device),
            DriverCommand(id=cmd_id, action=action, args=args or {}),
        )
        return cmd_id

    async def send_raw(self, device: str, payload: bytes) -> None:
        await self.bus.publish(self.topics.driver_cmd(device), payload)

    async def final(self, cmd_id: str, timeout_s: float = 10.0) -> DriverResult:
        """The ``done`` or ``failed`` answer to ``cmd_id``."""
        await self.wait_for(
            lambda: any(r.status in FINAL for r in self.results.get(cmd_id, [])), timeout_s
        )
        return next(r for r in self.results[cmd_id] if r.status in FINAL)

    async def command(
        self,
        device: str,
        action: str,
        args: dict[str, Any] | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> DriverResult:
        """Send and wait for the final answer."""
        return await self.final(await self.send(device, action, args), timeout_s)
