"""A typed proxy for one hardware driver: method calls become contract messages.

``await proxy.command("move", target="slot", slot=7)`` publishes a :class:`DriverCommand`, waits
for ``accepted`` within the ack timeout (real seconds: that is network time) and then for ``done``
or ``failed`` (no deadline here: the sequencer puts the phase deadline around the call, in
station seconds). The proxy also mirrors the driver's retained state and liveness.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from controller.bus import Bus, PendingRequests
from controller.clock import Clock
from controller.contract import (
    OFFLINE,
    ONLINE,
    DeviceState,
    DeviceStateAdapter,
    DriverCommand,
    DriverResult,
    PayloadError,
    Topics,
    decode,
    decode_as,
)
from controller.errors import BusDisconnected, DeviceFailed, DeviceOffline, DeviceTimeout

log = logging.getLogger(__name__)

#: Called with (topic, reason, payload) when a driver sends something unusable.
BadInput = Callable[[str, str, bytes], None]
#: Called with (device, action, args) just before a command is published.
CommandSent = Callable[[str, str, dict[str, Any]], None]

_RECENT_IDS = 512
_counter = itertools.count(1)
#: Differs for every controller process, so no command id repeats across a restart (a driver
#: answers a repeated id with its remembered result instead of acting).
_BOOT = uuid.uuid4().hex[:8]


class DeviceProxy:
    """The controller's view of one driver.

    Args:
        device: device id (``arm``, ``bay``, ...).
        bus: the controller's bus.
        topics: topic names of this station.
        clock: the station clock (timestamps of commands).
        ack_timeout_s: real seconds for the driver to accept a command.
        on_bad_input: told about malformed payloads and results for unknown command ids.
        on_command: told about every command just before it is sent (tests and the journal).
        on_change: called after the state or liveness changed.
        patient: while this says True (station held, broker away), a missing ``accepted`` is
            waited for instead of failing the command.
    """

    def __init__(
        self,
        device: str,
        *,
        bus: Bus,
        topics: Topics,
        clock: Clock,
        ack_timeout_s: float,
        on_bad_input: BadInput,
        on_command: CommandSent | None = None,
        on_change: Callable[[str], None] | None = None,
        patient: Callable[[], bool] | None = None,
    ) -> None:
        self.device = device
        self._bus = bus
        self._topics = topics
        self._clock = clock
        self._ack_timeout = ack_timeout_s
        self._on_bad_input = on_bad_input
        self._on_command = on_command
        self._on_change = on_change
        self._pending: PendingRequests[DriverResult] = PendingRequests()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._patient = patient or (lambda: False)
        #: Commands sent and not yet finished, by id (re-sent as they are after an outage).
        self.inflight: dict[str, DriverCommand] = {}
        self.state: DeviceState | None = None
        self.online: bool | None = None

    async def attach(self) -> None:
        """Subscribe to the driver's result, state and liveness topics."""
        t = self._topics
        await self._bus.subscribe(t.driver_result(self.device), self._on_result)
        await self._bus.subscribe(t.driver_state(self.device), self._on_state)
        await self._bus.subscribe(t.driver_online(self.device), self._on_online)

    # ---- inbound ---------------------------------------------------------------------------
    async def _on_result(self, topic: str, payload: bytes) -> None:
        try:
            result = decode(DriverResult, payload)
        except PayloadError as exc:
            self._on_bad_input(topic, exc.reason, payload)
            return
        if result.device != self.device:
            self._on_bad_input(topic, f"result names device {result.device!r}", payload)
            return
        if self._pending.deliver(result.id, result):
            return
        if result.id in self._finished:
            return  # QoS 1 redelivery of a result already handled: its effect happened once
        self._on_bad_input(topic, f"result for unknown command id {result.id!r}", payload)

    async def _on_state(self, topic: str, payload: bytes) -> None:
        if not payload:
            # The retained state was cleared: the driver's state is unknown now, and unknown
            # state is an open interlock (nothing moves on the last good state).
            self.state = None
            if self._on_change:
                self._on_change(self.device)
            return
        try:
            state = decode_as(DeviceStateAdapter, payload)
        except PayloadError as exc:
            self._on_bad_input(topic, exc.reason, payload)
            return
        if state.device != self.device:
            self._on_bad_input(topic, f"state names device {state.device!r}", payload)
            return
        self.state = state
        if self._on_change:
            self._on_change(self.device)

    async def _on_online(self, topic: str, payload: bytes) -> None:
        text = payload.decode("utf-8", errors="replace").strip()
        if text not in (ONLINE, OFFLINE, ""):
            self._on_bad_input(topic, "liveness must be 'online' or 'offline'", payload)
            return
        self.online = text == ONLINE
        if self._on_change:
            self._on_change(self.device)

    # ---- outbound --------------------------------------------------------------------------
    async def command(self, action: str, **args: Any) -> dict[str, Any]:
        """Run ``action`` on the driver and return the ``data`` of its ``done`` result.

        Raises:
            DeviceOffline: the driver's last will says it is offline.
            DeviceTimeout: no ``accepted`` within the ack timeout.
            DeviceFailed: the driver answered ``failed`` (its error code is on the exception).
            BusDisconnected: no broker connection.
        """
        if self.online is False:
            raise DeviceOffline(self.device, action, "offline", "driver reports offline")
        command_id = f"{self.device}-{_BOOT}-{next(_counter)}"
        cmd = DriverCommand(id=command_id, ts=self._clock.now(), action=action, args=args)
        with self._pending.open(command_id) as replies:
            if self._on_command:
                self._on_command(self.device, action, args)
            self.inflight[command_id] = cmd
            try:
                try:
                    await self._bus.publish(self._topics.driver_cmd(self.device), cmd)
                except BusDisconnected as exc:
                    # In doubt, not failed: the driver may have it. The station holds for the
                    # broker and its resume re-sends in-flight commands under their ids; if
                    # nobody holds, the ack deadline below decides.
                    log.warning("%s.%s %s in doubt: %s", self.device, action, command_id, exc)
                result = await self._await_accepted(replies, action)
                while result.status == "accepted":
                    result = await replies.get()
            finally:
                del self.inflight[command_id]
                # Also when abandoned (cancelled, timed out): a late result is then expected,
                # not bad input.
                self._remember(command_id)
        if result.status == "failed":
            raise DeviceFailed(
                self.device, action, result.error_code or "failed", result.error or ""
            )
        return result.data

    async def _await_accepted(
        self, replies: asyncio.Queue[DriverResult], action: str
    ) -> DriverResult:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the get() completes (CPython gh-86296).
                async with asyncio.timeout(self._ack_timeout):
                    return await replies.get()
            except TimeoutError:
                if not self._patient():
                    raise DeviceTimeout(
                        self.device,
                        action,
                        "no_ack",
                        f"not accepted within {self._ack_timeout:g} s",
                    ) from None

    async def resend_inflight(self) -> int:
        """Publish every unfinished command again, under its own id.

        After the broker or the driver was away, a result may have been lost. The driver
        executes a command id once and answers a repeat with its last result, so this recovers
        lost results without running anything twice.
        """
        for cmd in list(self.inflight.values()):
            await self._bus.publish(self._topics.driver_cmd(self.device), cmd)
        return len(self.inflight)

    def _remember(self, command_id: str) -> None:
        self._finished[command_id] = None
        while len(self._finished) > _RECENT_IDS:
            self._finished.popitem(last=False)
