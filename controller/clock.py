"""The one injectable clock: every sleep, deadline and timestamp goes through it.

A station runs at ``time_scale=1``. Tests and planning runs use a scale of 100 or more, so the
same sequencer code swaps a truck in a second of real time. *Station seconds* are what the
config, deadlines and reports speak of; *real seconds* only appear where the physics of the
network, not of the station, sets the time (MQTT round trips, broker reconnect backoff).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime


class Clock:
    """A monotonic clock running ``time_scale`` times faster than real time.

    Args:
        time_scale: station seconds per real second (> 0).
        monotonic: the real monotonic source (injectable for tests).
        wall: the real wall-clock source in epoch seconds (injectable for tests).
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self._monotonic = monotonic
        self._real_start = monotonic()
        self._wall_start = wall()

    def monotonic(self) -> float:
        """Station seconds since this clock was made; use for durations and deadlines."""
        return (self._monotonic() - self._real_start) * self.time_scale

    def time(self) -> float:
        """Station epoch seconds: real wall time at start, then running at the time scale."""
        return self._wall_start + self.monotonic()

    def now(self) -> datetime:
        """Station time as an aware UTC datetime (the ``ts`` of every message)."""
        return datetime.fromtimestamp(self.time(), tz=UTC)

    def to_real(self, station_seconds: float) -> float:
        """Real seconds that ``station_seconds`` take at this clock's scale."""
        return station_seconds / self.time_scale

    async def sleep(self, station_seconds: float) -> None:
        """Sleep for ``station_seconds`` of station time."""
        await asyncio.sleep(max(0.0, station_seconds) / self.time_scale)

    @asynccontextmanager
    async def deadline(self, station_seconds: float | None) -> AsyncIterator[asyncio.Timeout]:
        """``asyncio.timeout`` measured in station seconds (``None``: no deadline).

        Raises ``TimeoutError`` on expiry, like ``asyncio.timeout``.
        """
        if station_seconds is None:
            async with asyncio.timeout(None) as cm:
                yield cm
            return
        async with asyncio.timeout(self.to_real(station_seconds)) as cm:
            yield cm
