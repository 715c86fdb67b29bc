"""Trucks: they queue, manoeuvre into the bay, stop, and after ``bay.release`` drive away.

Each truck brings its own depleted pack (a fresh, unique pack id; type and SoC from
``simulator.traffic``) and leaves with whatever pack is on it when released, so the pack it
takes away is recorded in the world's ``departed`` list. Trucks come as a given count
(:meth:`Traffic.arrive`) or at a rate (:meth:`Traffic.run_rate`: Poisson arrivals, i.e.
exponential gaps, which is how independent trucks arrive at a station).

One task (:meth:`Traffic.run_bay`) moves trucks through the bay, one at a time, and owns the
times the bay reports: how long a truck queued and how long it took to manoeuvre in.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from controller.clock import Clock
from controller.config import ActionTiming, StationConfig
from controller.contract import PackInfo
from controller.errors import ConfigError
from simulator.world import Truck, World

log = logging.getLogger(__name__)

#: Largest number of trucks one ``arrive`` may add (a guard against a typo in a control op).
MAX_ARRIVALS = 1000


class Traffic:
    """The truck source and the bay's entry/exit choreography."""

    def __init__(self, config: StationConfig, clock: Clock, world: World) -> None:
        self.config = config
        self.clock = clock
        self.world = world
        tc = config.simulator.traffic
        if tc.pack_type not in config.rack.pack_types:
            raise ConfigError(
                "station config",
                "simulator.traffic.pack_type",
                f"{tc.pack_type!r} is not one of rack.pack_types {sorted(config.rack.pack_types)}",
            )
        seed = config.simulator.seed
        self._rng = random.Random(f"{seed}:traffic") if seed is not None else random.Random()
        self._count = 0
        self._wake = asyncio.Event()
        world.subscribe(self._wake.set)
        #: Every truck that has left, in order.
        self.departed: list[Truck] = []

    @property
    def trucks_so_far(self) -> int:
        """How many trucks have come (their ids are numbered on from it)."""
        return self._count

    @trucks_so_far.setter
    def trucks_so_far(self, count: int) -> None:
        self._count = count

    # ---- making trucks ----------------------------------------------------------------------
    def _new_truck(self) -> Truck:
        tc = self.config.simulator.traffic
        self._count += 1
        n = self._count
        taken = self.world.existing_ids()
        pack_id = f"TP-{n:05d}"
        while pack_id in taken:
            n += 1
            pack_id = f"TP-{n:05d}"
        lo, hi = sorted((tc.soc_min, tc.soc_max))
        pack = PackInfo(
            id=pack_id,
            type=tc.pack_type,
            soc=round(self._rng.uniform(lo, hi), 4),
            health=round(self._rng.uniform(0.9, 1.0), 3),
            temperature_c=round(self._rng.uniform(20.0, 35.0), 1),
            capacity_kwh=self.config.rack.pack_types[tc.pack_type].capacity_kwh,
        )
        return Truck(
            vehicle_id=f"CQ-T{self._count:04d}",
            plate=f"YU-D{self._count:05d}",
            pack_type=tc.pack_type,
            pack=pack,
            joined_at=self.clock.monotonic(),
            position_error_mm=round(self._rng.uniform(-25.0, 25.0), 1),
        )

    def arrive(self, count: int = 1) -> list[Truck]:
        """``count`` trucks join the queue now."""
        if not 1 <= count <= MAX_ARRIVALS:
            raise ValueError(f"count must be 1..{MAX_ARRIVALS}, got {count}")
        trucks = [self._new_truck() for _ in range(count)]
        self.world.queue.extend(trucks)
        log.info("%d truck(s) queue: %s", count, ", ".join(t.vehicle_id for t in trucks))
        self.world.changed()
        return trucks

    # ---- the bay ---------------------------------------------------------------------------
    def _jittered(self, timing: ActionTiming) -> float:
        return max(0.0, timing.nominal_s * (1.0 + self._rng.uniform(-timing.jitter, timing.jitter)))

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._wake.clear()
            if condition():
                return
            await self._wake.wait()

    async def run_bay(self) -> None:
        """Forever: next truck in, stop, wait for release, drive out."""
        tc = self.config.simulator.traffic
        w = self.world
        while True:
            await self._until(lambda: w.bay is None and bool(w.queue))
            truck = w.queue[0]
            w.enter_bay(truck)
            log.info("%s enters the bay (queued %.1f s)", truck.vehicle_id, truck.queued_s or 0)
            w.changed()
            await self.clock.sleep(self._jittered(tc.manoeuvre_s))
            w.stop_in_bay()
            log.info("%s stopped in the bay", truck.vehicle_id)
            w.changed()
            await self._until(lambda t=truck: t.released)  # type: ignore[misc]
            await self.clock.sleep(self._jittered(tc.depart_s))
            w.depart()
            self.departed.append(truck)
            log.info("%s left the station", truck.vehicle_id)
            w.changed()

    async def run_rate(self, rate_per_hour: float, count: int | None = None) -> None:
        """Poisson arrivals at ``rate_per_hour`` (station time), ``count`` trucks or forever."""
        if not rate_per_hour > 0:
            raise ValueError(f"rate_per_hour must be > 0, got {rate_per_hour}")
        sent = 0
        while count is None or sent < count:
            await self.clock.sleep(self._rng.expovariate(rate_per_hour / 3600.0))
            self.arrive(1)
            sent += 1
