"""The one gate in front of every driver command (Opentrons' execution manager, in spirit).

Before a command goes out it: waits while the station is held (the motion under way has already
finished; no new one starts), pausing the phase deadline meanwhile; refuses if the station left
execute; checks the interlocks, giving the drivers' retained states a moment to catch up with a
result that just arrived; and records which devices the swap touched, so an abort can tell each
of them to make itself safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from controller.aio import Changes
from controller.clock import Clock
from controller.config import StepPolicy
from controller.contract import MOTION_ACTIONS, Mode
from controller.devices import Devices
from controller.error_table import may_retry
from controller.errors import (
    DeviceError,
    DeviceFailed,
    DeviceTimeout,
    InterlockOpen,
    SwapstationError,
)
from controller.station import interlocks, postconditions

log = logging.getLogger(__name__)

#: Real seconds to let drivers' states catch up before an interlock counts as open.
STATE_SETTLE_S = 1.0


#: The latest retries kept in memory (a long-running controller retries for ever).
RETRIES_KEPT = 1000


class Halted(Exception):
    """The station left execute while a swap waited at the gate."""


class DeadlineExpired(TimeoutError):
    """A :meth:`MotionGate.deadline` ran out. ``awaiting`` names the steps (``device.action``)
    it cut short, so whoever reports the deadline can say what it was waiting for."""

    def __init__(self, awaiting: tuple[str, ...]) -> None:
        self.awaiting = awaiting
        super().__init__(", ".join(awaiting) or "between steps")


class MotionGate:
    def __init__(
        self,
        *,
        devices: Devices,
        clock: Clock,
        mode: Callable[[], Mode],
        steps: Mapping[str, StepPolicy] | None = None,
        settle_s: float = STATE_SETTLE_S,
    ) -> None:
        self._devices = devices
        self._clock = clock
        self._mode = mode
        self._settle_s = settle_s
        self._steps = dict(steps or {})
        #: (device, action, error code) of every retry, for reports and tests.
        self.retries: deque[tuple[str, str, str]] = deque(maxlen=RETRIES_KEPT)
        self._mode_changed = Changes()
        #: Devices commanded since the swap began (told to stop if it fails); the gate's own.
        self.touched: set[str] = set()
        #: Station seconds the swap has spent held; the gate's own.
        self.held_s = 0.0
        self._paused_at: float | None = None
        #: Deadlines now running, with their remaining real seconds while paused.
        self._running: dict[asyncio.Timeout, float | None] = {}
        #: Per running deadline, the steps cancelled under it (named if it is the one expiring).
        self._cut_short: dict[asyncio.Timeout, list[str]] = {}

    def begin_swap(self) -> None:
        """A new swap: nothing touched, nothing held yet."""
        self.touched = set()
        self.held_s = 0.0

    def mode_changed(self) -> None:
        """The station calls this on every mode change.

        It wakes a swap waiting at the gate, and pauses every running deadline (the phase's and
        a step's) while the station is held or suspended, also for a command already under way
        (e.g. one whose driver went offline): time an operator holds the station is not the
        phase's fault. It still counts against the swap's budget.
        """
        self._mode_changed.notify()
        loop = asyncio.get_running_loop()
        paused = self._mode() in (Mode.held, Mode.suspended)
        if paused and self._paused_at is None:
            self._paused_at = loop.time()
            for timeout in self._running:
                self._pause(timeout)
        elif not paused and self._paused_at is not None:
            now = loop.time()
            self.held_s += (now - self._paused_at) * self._clock.time_scale
            self._paused_at = None
            for timeout, remaining in self._running.items():
                if remaining is not None:
                    timeout.reschedule(now + remaining)
                self._running[timeout] = None

    def _pause(self, timeout: asyncio.Timeout) -> None:
        when = timeout.when()
        if when is not None and self._paused_at is not None:
            self._running[timeout] = when - self._paused_at
            timeout.reschedule(None)

    @contextlib.asynccontextmanager
    async def deadline(self, station_seconds: float | None) -> AsyncIterator[asyncio.Timeout]:
        """A deadline in station seconds that stands still while the station is held.

        Raises :class:`DeadlineExpired` (a ``TimeoutError``) naming the steps it cut short.
        """
        try:
            async with self._clock.deadline(station_seconds) as timeout:
                self._running[timeout] = None
                self._cut_short[timeout] = []
                if self._paused_at is not None:
                    self._pause(timeout)
                try:
                    yield timeout
                finally:
                    del self._running[timeout]
                    cut = self._cut_short.pop(timeout)
        except TimeoutError:
            if timeout.expired():
                raise DeadlineExpired(tuple(dict.fromkeys(cut))) from None
            raise

    async def wait_for_execute(self) -> None:
        """Return once the station is in execute; raise :class:`Halted` if it never will be."""
        while (mode := self._mode()) is not Mode.execute:
            if mode not in (Mode.held, Mode.suspended):
                raise Halted(mode.value)
            await self._mode_changed.wait()

    async def send(self, device: str, action: str, **args: Any) -> dict[str, Any]:
        """Send one command through the gate and return the driver's result data.

        A step with a policy in ``swap.steps`` gets its own deadline per attempt and, when the
        failure is one a retry may cure, that many more attempts; before each retry the device
        is told to ``stop`` so a hung action cannot run twice.
        """
        policy = self._steps.get(f"{device}.{action}")
        attempts = 1 + (policy.retries if policy else 0)
        for attempt in range(1, attempts + 1):
            try:
                with self._named_if_cut_short(f"{device}.{action}"):
                    return await self._attempt(device, action, args, policy)
            except TimeoutError:
                deadline = policy.deadline_s if policy else 0.0
                error: DeviceError = DeviceTimeout(
                    device, action, "step_deadline", f"no result within {deadline:g} s"
                )
            except DeviceError as exc:
                error = exc
            if attempt == attempts or not may_retry(device, action, error):
                raise error
            self.retries.append((device, action, error.code))
            log.warning(
                "%s.%s failed (%s); retry %d of %d", device, action, error, attempt, attempts - 1
            )
            await self._make_safe(device)
        raise AssertionError("unreachable")

    async def _attempt(
        self, device: str, action: str, args: dict[str, Any], policy: StepPolicy | None
    ) -> dict[str, Any]:
        """One attempt: through the interlocks, the command under the step's own deadline,
        and the driver's state confirming it."""
        await self._pass(device, action, args)
        async with self.deadline(policy.deadline_s if policy else None):
            data = await self._devices[device].command(action, **args)
        await self._sensors_confirm(device, action, args)
        return data

    @contextlib.contextmanager
    def _named_if_cut_short(self, step: str) -> Iterator[None]:
        """A step cancelled from outside (a phase deadline, a halt, a failed sibling step) is
        one an expiring deadline was waiting for: it names it (see :class:`DeadlineExpired`)."""
        try:
            yield
        except asyncio.CancelledError:
            for steps in self._cut_short.values():
                steps.append(step)
            raise

    async def _sensors_confirm(self, device: str, action: str, args: dict[str, Any]) -> None:
        """Believe a ``done`` only when the driver's own state shows it (see postconditions)."""
        if postconditions.unmet(self._devices, device, action, args) is None:
            return
        await self._devices.wait_until(
            lambda: postconditions.unmet(self._devices, device, action, args) is None,
            self._settle_s,
        )
        reason = postconditions.unmet(self._devices, device, action, args)
        if reason is not None:
            raise DeviceFailed(device, action, "sensor_mismatch", f"reported done, but {reason}")

    async def _pass(self, device: str, action: str, args: dict[str, Any]) -> None:
        """Wait for execute, then check the interlocks (letting driver states catch up)."""
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

    async def _make_safe(self, device: str) -> None:
        try:
            await self._devices[device].command("stop")
        except SwapstationError as exc:
            log.warning("%s did not confirm stop before a retry: %s", device, exc)
