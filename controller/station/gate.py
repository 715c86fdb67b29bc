"""The one gate in front of every driver command (Opentrons' execution manager, in spirit).

Before a command goes out it: waits while the station is held (the motion under way has already
finished; no new one starts), pausing the phase deadline meanwhile; refuses if the station left
execute; checks the interlocks, giving the drivers' retained states a moment to catch up with a
result that just arrived; and records which devices the swap touched, so an abort can tell each
of them to make itself safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controller.clock import Clock
from controller.contract import MOTION_ACTIONS, Mode
from controller.devices import Devices
from controller.errors import InterlockOpen
from controller.station import interlocks

#: Real seconds to let drivers' states catch up before an interlock counts as open.
STATE_SETTLE_S = 1.0


class Halted(Exception):
    """The station left execute while a swap waited at the gate."""


class MotionGate:
    def __init__(
        self,
        *,
        devices: Devices,
        clock: Clock,
        mode: Callable[[], Mode],
        settle_s: float = STATE_SETTLE_S,
    ) -> None:
        self._devices = devices
        self._clock = clock
        self._mode = mode
        self._settle_s = settle_s
        self._mode_changed = asyncio.Event()
        self.touched: set[str] = set()
        self.deadline: asyncio.Timeout | None = None
        self.held_s = 0.0

    def mode_changed(self) -> None:
        """The station calls this on every mode change to wake a waiting swap."""
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()

    async def wait_for_execute(self) -> None:
        """Return once the station is in execute; raise :class:`Halted` if it never will be.

        While held or suspended the phase deadline is paused: the time an operator holds the
        station is not the phase's fault. (It still counts against the swap's budget.)
        """
        if self._mode() is Mode.execute:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = self.deadline
        when = deadline.when() if deadline is not None else None
        remaining = None if when is None else when - started
        if deadline is not None:
            deadline.reschedule(None)
        try:
            while (mode := self._mode()) is not Mode.execute:
                if mode not in (Mode.held, Mode.suspended):
                    raise Halted(mode.value)
                await self._mode_changed.wait()
        finally:
            now = loop.time()
            self.held_s += (now - started) * self._clock.time_scale
            if deadline is not None and remaining is not None:
                deadline.reschedule(now + remaining)

    async def send(self, device: str, action: str, **args: Any) -> dict[str, Any]:
        """Send one command through the gate and return the driver's result data."""
        await self.wait_for_execute()
        reasons = interlocks.for_motion(self._devices, device, action, args)
        if reasons:
            await self._devices.wait_until(
                lambda: not interlocks.for_motion(self._devices, device, action, args),
                self._settle_s,
            )
            reasons = interlocks.for_motion(self._devices, device, action, args)
            if reasons:
                raise InterlockOpen(device, action, reasons)
            await self.wait_for_execute()
        if (device, action) in MOTION_ACTIONS:
            self.touched.add(device)
        return await self._devices[device].command(action, **args)
