"""The simulator: one world, six drivers, the traffic source, and the ``sim/*`` topics.

:class:`Simulator` is what the CLI (``swapctl sim``/``demo``) and the tests start. It owns every
task it creates (state publisher, charge tick, bay traffic, rate arrivals, driver actions) and
stops them all in :meth:`Simulator.stop`, so a test that used it leaks nothing.

Besides the six driver clients it has one client of its own (``sim-<station>``) that publishes
the ground truth on ``sim/world`` (retained, after every change) and takes ``sim/control``
(see :mod:`simulator.control`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.bus import PayloadTooLarge
from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import DEVICES, ErrorEvent, Topics
from controller.errors import BusDisconnected
from simulator import persist
from simulator.control import ControlError, apply_control, parse_control
from simulator.drivers import DRIVER_CLASSES, Driver, DriverEnv
from simulator.drivers.env import BusFactory, config_bus_factory
from simulator.faults import FaultBook, FaultSpec
from simulator.scenario import Scenario
from simulator.scenario import load_scenario as read_scenario
from simulator.traffic import Traffic
from simulator.world import World

log = logging.getLogger(__name__)

#: Real seconds between saves of a world in which only charging changed (see _save_world).
SAVE_EVERY_S = 5.0


class Simulator:
    """Simulated station hardware as MQTT peers of the contract.

    Args:
        config: the station file (rack, layout, initial packs, action times, traffic).
        url: the broker, ``mqtt://host:port``; credentials and TLS come from ``config.broker``.
        clock: the station clock (its time scale makes the hardware fast or slow).
        faults: fault specs armed from the start (``"arm.lift:fail"``, see :mod:`.faults`).
        bus_factory: makes each MQTT client, ``(client_id, will, account) -> Bus``; by default
            from ``config.broker`` and the ``SWAPSTATION_MQTT_*`` environment, each driver with
            its own account when the environment has one (see :mod:`controller.bus.login`).
        state_file: where the world is kept across restarts (:mod:`simulator.persist`); it is
            restored from there at start unless ``fresh``. None: the world lives in memory.
        fresh: start from the station file's initial packs even if ``state_file`` exists.
    """

    def __init__(
        self,
        config: StationConfig,
        *,
        url: str,
        clock: Clock,
        faults: Iterable[str | FaultSpec] = (),
        bus_factory: BusFactory | None = None,
        state_file: Path | None = None,
        fresh: bool = False,
    ) -> None:
        self.config = config
        self.url = url
        self.clock = clock
        self.topics = Topics(config.station_id)
        self.world = World(config, clock)
        self.faults = FaultBook(faults)
        self.traffic = Traffic(config, clock, self.world)
        make_bus = bus_factory or config_bus_factory(config, url)
        env = DriverEnv(
            config=config,
            clock=clock,
            world=self.world,
            faults=self.faults,
            make_bus=make_bus,
            trip=self._trip,
            flush_states=self.flush_states,
        )
        self.drivers: dict[str, Driver] = {cls.device: cls(env) for cls in DRIVER_CLASSES}
        self.bus = make_bus(f"sim-{config.station_id}", None, None)
        self.bus.on_connect(self._publish_world_forced)
        self._dirty = asyncio.Event()
        self.world.subscribe(self._dirty.set)
        self._world_lock = asyncio.Lock()
        self._last_world: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._started_once = False
        self.state_file = state_file
        self._fresh = fresh
        self._saved_key: tuple[object, ...] | None = None
        self._saved_at = 0.0
        self.scenario: Scenario | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect every driver (each publishes ``online`` and its state) and start the world."""
        if self._started:
            raise RuntimeError("simulator already started")
        if not self._started_once:  # handlers stay registered on the bus across restarts
            await self.bus.subscribe(self.topics.sim_control, self._on_control)
        self._started = self._started_once = True
        self._restore_world()
        try:
            # One at a time: amqtt 0.12.1 walks its whole subscription table (awaiting inside
            # the loop) as a client connects, and drops that connection if the table changes
            # meanwhile ("dictionary changed size during iteration"); the client then waits
            # 5 s for a SUBACK. Connecting our own clients in turn keeps us from causing that.
            await self.bus.start()
            for driver in self.drivers.values():
                await driver.start()
        except BaseException:
            await self.stop()
            raise
        self._spawn(self._publish_loop(), "sim:publisher")
        self._spawn(self._charge_loop(), "sim:charging")
        self._spawn(self.traffic.run_bay(), "sim:bay-traffic")
        if self.scenario is not None and self.scenario.arrivals:
            await self.arrive(self.scenario.arrivals)
        if self.scenario is not None and self.scenario.rate_per_hour:
            self.start_traffic(self.scenario.rate_per_hour)
        log.info("simulator for %s running on %s", self.config.station_id, self.url)

    async def stop(self) -> None:
        """Stop every task, say ``offline`` for each driver and disconnect cleanly."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(d.close() for d in self.drivers.values()), return_exceptions=True)
        await self.bus.stop()
        self._save_world(force=True)
        self._started = False

    # ---- the world across restarts ------------------------------------------------------------
    def _restore_world(self) -> None:
        if self.state_file is None:
            return
        if self._fresh:
            log.warning(
                "simulated world: FRESH, from the station file (%s is overwritten)", self.state_file
            )
        elif persist.restore(self.world, self.traffic, self.state_file):
            log.warning(
                "simulated world restored from %s: %s",
                self.state_file,
                persist.describe(self.world),
            )
        else:
            log.warning("simulated world: new, kept in %s", self.state_file)
        self._fresh = False  # a restart of this same object restores what it saved
        self._save_world(force=True)

    def _save_world(self, *, force: bool = False) -> None:
        """Save the world when something moved, or every SAVE_EVERY_S while packs charge."""
        if self.state_file is None:
            return
        key = persist.physical_key(self.world)
        now = time.monotonic()
        if force or key != self._saved_key or now - self._saved_at >= SAVE_EVERY_S:
            persist.save(self.world, self.traffic, self.state_file)
            self._saved_key, self._saved_at = key, now

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    # ---- what tests and the CLI call --------------------------------------------------------
    async def arrive(self, count: int = 1) -> list[str]:
        """``count`` trucks join the queue; returns their vehicle ids."""
        trucks = self.traffic.arrive(count)
        await self.flush()
        return [t.vehicle_id for t in trucks]

    def start_traffic(self, rate_per_hour: float, count: int | None = None) -> None:
        """Trucks at ``rate_per_hour`` (Poisson, station time): ``count`` of them, or forever."""
        if not rate_per_hour > 0:
            raise ValueError(f"rate_per_hour must be > 0, got {rate_per_hour}")
        self._spawn(self.traffic.run_rate(rate_per_hour, count), "sim:arrivals")

    def load_scenario(self, path: str | Path) -> Scenario:
        """Arm a scenario file's faults now; its trucks (if any) come at :meth:`start`.

        Raises ``ConfigError`` naming the file, the field and the reason.
        """
        scenario = read_scenario(path)
        for spec in scenario.fault_specs():
            self.faults.add(spec)
        self.scenario = scenario
        return scenario

    def inject(self, spec: str | FaultSpec) -> FaultSpec:
        """Arm a fault spec now (raises ``ConfigError`` for a bad spec)."""
        return self.faults.add(spec)

    async def set_estop(self, pressed: bool) -> None:
        """Press or release the e-stop; pressing halts every running motion."""
        await self._set_safety("estop", pressed)

    async def set_light_curtain(self, broken: bool) -> None:
        """Break or restore the light curtain; breaking it halts every running motion."""
        await self._set_safety("light_curtain", broken)

    async def disconnect(self, device: str) -> None:
        """Drop ``device``'s connection uncleanly: the broker publishes its last will."""
        await self._driver(device).disconnect()

    async def reconnect(self, device: str) -> None:
        """Bring ``device`` back online after :meth:`disconnect`."""
        await self._driver(device).reconnect()

    def _driver(self, device: str) -> Driver:
        if device not in self.drivers:
            raise ValueError(f"unknown device {device!r}; devices: {', '.join(DEVICES)}")
        return self.drivers[device]

    # ---- safety ---------------------------------------------------------------------------
    async def _trip(self, kind: str, exempt: Driver | None) -> None:
        """A fault trips a safety input; ``exempt`` (the faulted driver) halts itself."""
        await self._set_safety(kind, True, exempt=exempt)

    async def _set_safety(self, kind: str, tripped: bool, *, exempt: Driver | None = None) -> None:
        """Set a relay input. Tripping it cuts motion power: every running motion halts."""
        if kind == "estop":
            self.world.estop_pressed = tripped
            text = "the e-stop was pressed"
        else:
            self.world.light_curtain_broken = tripped
            text = "the light curtain was broken"
        self.world.changed()
        if tripped:
            await asyncio.gather(
                *(
                    d.halt(kind, text, motion_only=True)
                    for d in self.drivers.values()
                    if d is not exempt
                )
            )
        await self.flush()

    # ---- publishing state -----------------------------------------------------------------
    async def flush(self) -> None:
        """Publish every device state and the world snapshot that changed, now."""
        await asyncio.gather(self.flush_states(), self._publish_world())

    async def flush_states(self) -> None:
        """Publish every device state that changed, now (drivers do this before answering)."""
        await asyncio.gather(*(d.publish_state() for d in self.drivers.values()))

    async def _publish_world_forced(self) -> None:
        await self._publish_world(force=True)

    async def _publish_world(self, *, force: bool = False) -> None:
        async with self._world_lock:
            snapshot = self.world.snapshot()
            key = snapshot.model_dump(mode="json", exclude={"ts"})
            if (key == self._last_world and not force) or not self.bus.connected:
                return
            try:
                await self.bus.publish(self.topics.sim_world, snapshot, retain=True)
            except (BusDisconnected, PayloadTooLarge) as exc:
                log.info("sim/world not published: %s", exc)
                return
            self._last_world = key

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self._save_world()
                await self.flush()
            except Exception:  # one bad publish must not end the state publishing for good
                log.exception("publishing (or saving) the simulated states failed")

    async def _charge_loop(self) -> None:
        tick = self.config.simulator.charge_tick_s
        last = self.clock.monotonic()
        while True:
            await self.clock.sleep(tick)
            now = self.clock.monotonic()
            if self.world.charge(now - last):
                self.world.changed()
            last = now

    # ---- sim/control ----------------------------------------------------------------------
    async def _on_control(self, topic: str, payload: bytes) -> None:
        try:
            control = parse_control(payload)
            await apply_control(self, control)
        except ControlError as exc:
            log.warning("sim/control refused: %s", exc.reason)
            event = ErrorEvent(
                ts=self.clock.now(),
                station=self.config.station_id,
                source="simulator",
                topic=topic,
                error=exc.reason,
                payload_excerpt=exc.excerpt[:200],
            )
            try:
                await self.bus.publish(self.topics.sim_events, event)
            except BusDisconnected:
                log.warning("error event for sim/control not published")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task the simulator owns (stopped in :meth:`stop`)."""
        self._spawn(coro, name)
