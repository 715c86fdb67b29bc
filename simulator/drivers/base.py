"""The command protocol every simulated driver speaks (architecture: "Drivers").

A :class:`Driver` is one MQTT peer with its own :class:`~controller.bus.Bus` (own client id,
own last will), so it can go offline alone, exactly as a real driver would. It subscribes to
``drivers/<device>/cmd`` and for each command:

1. decodes it; bad input (not JSON, wrong schema, oversized, unknown action, bad args) gets an
   :class:`~controller.contract.ErrorEvent` on ``drivers/<device>/events`` and, when a command
   id can be read, a ``failed`` result. Nothing changes.
2. answers a command id it has seen with the last result it sent for it (bounded LRU), so a
   QoS 1 redelivery is executed once.
3. refuses with ``failed`` what cannot be done now: ``busy`` (one action at a time), ``estop`` /
   ``light_curtain`` (the relay cuts motion power), ``impossible`` (the physics says no).
4. otherwise answers ``accepted`` and runs the action as a task that takes the configured time
   (``nominal_s + per_m_s * distance``, +- jitter, in station seconds), then ``done`` or
   ``failed``. An armed fault (:mod:`simulator.faults`) may change how the action goes.

``stop`` is never busy: it halts the running action (which is answered ``failed``/``stopped``),
clears a latched fault and answers ``done``.

A final answer (``done``/``failed``) goes out after every changed device state has been
published, so a controller that sees ``done`` and then reads a retained state topic sees the
world after the action. The action's time runs from the command's arrival.

The parts of an action are in :mod:`.action`; what drivers share in :mod:`.env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ClassVar

from controller.bus import LastWill, PayloadTooLarge
from controller.config import ActionTiming
from controller.contract import (
    DRIVER_ACTIONS,
    MOTION_ACTIONS,
    OFFLINE,
    ONLINE,
    DriverCommand,
    DriverResult,
    ErrorEvent,
    Message,
    PayloadError,
    Topics,
    decode,
)
from controller.errors import BusDisconnected
from simulator.drivers.action import (
    Prepare,
    Refusal,
    Running,
    check_args,
    readable_id,
    slot_arg,
)
from simulator.drivers.env import DriverEnv
from simulator.faults import INJECTED_FAULT, FaultSpec

log = logging.getLogger(__name__)

#: How many command ids a driver remembers for duplicate detection.
RESULT_MEMORY = 1024
_DEFAULT_TIMING = ActionTiming(nominal_s=1.0, jitter=0.0)


class Driver:
    """Base of the six simulated drivers; subclasses add ``state()`` and ``plan_<action>``."""

    device: ClassVar[str]

    def __init__(self, env: DriverEnv) -> None:
        self.env = env
        self.world = env.world
        self.clock = env.clock
        self.topics = Topics(env.config.station_id)
        self.fault: str | None = None
        seed = env.config.simulator.seed
        self._rng = random.Random(f"{seed}:{self.device}") if seed is not None else random.Random()
        self.bus = env.make_bus(
            f"sim-{env.config.station_id}-{self.device}",
            LastWill(self.topics.driver_online(self.device), OFFLINE),
            self.device,
        )
        self.bus.on_connect(self._on_connect)
        self._results: OrderedDict[str, DriverResult] = OrderedDict()
        self._current: Running | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._state_lock = asyncio.Lock()
        self._last_state: dict[str, Any] | None = None
        self._subscribed = False

    # ---- what subclasses provide ------------------------------------------------------------
    def state(self) -> Message:
        """The retained state model of this device, read from the world."""
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._subscribed:  # a handler registered twice would answer every command twice
            await self.bus.subscribe(
                self.topics.driver_cmd(self.device),
                self._on_command,
                on_retained=self._on_retained_command,
            )
            self._subscribed = True
        await self.bus.start()

    async def close(self) -> None:
        """Cancel every action (answering nothing), say ``offline`` and disconnect cleanly."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._current = None
        if self.bus.connected:
            with contextlib.suppress(BusDisconnected):
                await self.bus.publish(self.topics.driver_online(self.device), OFFLINE, retain=True)
        await self.bus.stop()

    async def disconnect(self) -> None:
        """Lose the network: the broker publishes our last will; actions carry on."""
        log.warning("%s: dropping the connection (last will fires)", self.device)
        await self.bus.kill()

    async def reconnect(self) -> None:
        """Come back after :meth:`disconnect`: online again, state republished."""
        if not self.bus.connected:
            await self.bus.start()

    @property
    def busy(self) -> bool:
        return self._current is not None

    async def _on_connect(self) -> None:
        await self.bus.publish(self.topics.driver_online(self.device), ONLINE, retain=True)
        await self.publish_state(force=True)

    # ---- state ----------------------------------------------------------------------------
    async def publish_state(self, *, force: bool = False) -> None:
        """Publish the retained state if it changed (or ``force``); skip while offline."""
        async with self._state_lock:
            state = self.state()
            key = state.model_dump(mode="json", exclude={"ts"})
            if key == self._last_state and not force:
                return
            if not self.bus.connected:
                return
            try:
                await self.bus.publish(self.topics.driver_state(self.device), state, retain=True)
            except (BusDisconnected, PayloadTooLarge) as exc:
                log.info("%s: state not published: %s", self.device, exc)
                return
            self._last_state = key

    # ---- commands -------------------------------------------------------------------------
    async def _on_command(self, topic: str, payload: bytes) -> None:
        received = self.clock.monotonic()
        try:
            cmd = decode(DriverCommand, payload)
        except PayloadError as exc:
            cmd_id, action_name = readable_id(payload)
            failed = None
            if cmd_id is not None:
                failed = DriverResult(
                    ts=self.clock.now(),
                    id=cmd_id,
                    device=self.device,
                    action=(action_name or "?")[:64],
                    status="failed",
                    error_code="bad_request",
                    error=exc.reason[:1000],
                )
            await self._bad_input(topic, exc.reason, exc.excerpt, failed)
            return
        previous = self._results.get(cmd.id)
        if previous is not None:
            self._results.move_to_end(cmd.id)
            log.info(
                "%s: command %s seen again; repeating %s", self.device, cmd.id, previous.status
            )
            await self._publish_result(previous)
            return
        if cmd.action == "stop":
            await self._answer(self._result(cmd, "accepted"))
            self._spawn(self._do_stop(cmd), f"{self.device}:stop:{cmd.id}")
            return
        try:
            prepare = self._plan(cmd)
        except Refusal as r:
            failed = self._result(cmd, "failed", code=r.code, error=r.text)
            self._remember(failed)
            excerpt = payload[:120].decode("utf-8", errors="replace")
            await self._bad_input(topic, r.text, excerpt, failed)
            return
        motion = (self.device, cmd.action) in MOTION_ACTIONS
        try:
            if self._current is not None:
                run = self._current
                raise Refusal("busy", f"busy with {run.cmd.action} (command {run.cmd.id})")
            if motion:
                self._check_safety()
            action = prepare()
        except Refusal as r:
            log.info("%s: refused %s %s: %s", self.device, cmd.action, cmd.id, r)
            await self._answer(self._result(cmd, "failed", code=r.code, error=r.text))
            return
        fault = self.env.faults.take(
            self.device,
            cmd.action,
            cmd.id,
            lambda spec: spec.kind != "drop" or action.on_drop is not None,
        )
        run = Running(
            cmd=cmd,
            action=action,
            motion=motion,
            started=received,
            duration=self.duration(cmd.action, action.distance_m),
        )
        self._current = run
        accepted = self._result(cmd, "accepted")
        self._remember(accepted)
        await self._publish_result(accepted)
        run.task = self._spawn(self._run(run, fault), f"{self.device}:{cmd.action}:{cmd.id}")
        await self.env.flush_states()

    def _plan(self, cmd: DriverCommand) -> Prepare:
        if cmd.action not in DRIVER_ACTIONS.get(self.device, {}):
            known = ", ".join(sorted(DRIVER_ACTIONS.get(self.device, {})))
            raise Refusal("unknown_action", f"{self.device} has no action {cmd.action!r} ({known})")
        planner: Callable[[dict[str, Any]], Prepare] = getattr(self, f"plan_{cmd.action}")
        return planner(cmd.args)

    def _check_safety(self) -> None:
        if self.world.estop_pressed:
            raise Refusal("estop", "the e-stop is pressed: motion power is off")
        if self.world.light_curtain_broken:
            raise Refusal("light_curtain", "the light curtain is broken: motion power is off")

    def duration(self, action: str, distance_m: float = 0.0) -> float:
        """Station seconds for ``action``: nominal + per metre, with the configured jitter."""
        timing = self.env.config.simulator.actions.get(f"{self.device}.{action}", _DEFAULT_TIMING)
        base = timing.nominal_s + timing.per_m_s * distance_m
        return max(0.0, base * (1.0 + self._rng.uniform(-timing.jitter, timing.jitter)))

    # ---- running an action ----------------------------------------------------------------
    async def _run(self, run: Running, fault: FaultSpec | None) -> None:
        try:
            data = await self._perform(run, fault)
            result = self._result(run.cmd, "done", data=data)
        except Refusal as r:
            result = self._result(run.cmd, "failed", code=r.code, error=r.text)
        except asyncio.CancelledError:
            if run.halt_code is None:  # shutdown: answer nothing
                if self._current is run:
                    self._current = None
                raise
            run.action.halt(self._progress(run))
            result = self._result(run.cmd, "failed", code=run.halt_code, error=run.halt_text)
        if self._current is run:
            self._current = None
        log.info("%s: %s %s -> %s %s", self.device, run.cmd.action, run.cmd.id,
                 result.status, result.error_code or "")  # fmt: skip
        # States first, then the answer, then the listeners (world snapshot, traffic): the
        # controller waits for the answer; nobody waits for the snapshot.
        await self._answer(result)
        self.world.changed()

    async def _perform(self, run: Running, fault: FaultSpec | None) -> dict[str, Any] | None:
        action = run.action
        if run.motion:
            self._check_safety()  # tripped while `accepted` was on its way
        if action.begin is not None:
            action.begin()
        self.world.changed()
        kind = fault.kind if fault is not None else None
        if kind in ("estop", "light_curtain"):
            assert kind is not None
            await self.env.trip(kind, self)
            if run.motion:
                action.halt(0.0)
                raise Refusal(kind, f"{kind} tripped as {run.cmd.action} started")
        elif kind == "hang":
            run.duration = math.inf
            await asyncio.Event().wait()  # until stopped
        elif kind == "slow" and fault is not None:
            run.duration *= fault.factor
        if kind in ("fail", "disconnect", "drop"):
            await self._sleep_until(run.started + run.duration / 2)
            if kind == "fail":
                action.halt(0.0)
                raise Refusal(INJECTED_FAULT, f"injected fault in {self.device}.{run.cmd.action}")
            if kind == "drop" and action.on_drop is not None:
                action.on_drop(0.5)
                self.fault = f"pack dropped during {run.cmd.action}"
                raise Refusal("pack_dropped", f"the arm lost its pack during {run.cmd.action}")
            if kind == "disconnect":
                await self.disconnect()
        await self._sleep_until(run.started + run.duration)
        if kind == "lie":
            action.halt(0.0)
            return action.lie() if action.lie is not None else None
        return action.finish()

    async def _sleep_until(self, station_time: float) -> None:
        """Sleep to a deadline counted from the command's arrival.

        The action starts when the command arrives, not when ``accepted`` has been delivered,
        so the time spent publishing (about a millisecond per QoS 1 round trip) is not added
        to every action; at time scale 200 that would be a fifth of a station second each.
        """
        await self.clock.sleep(station_time - self.clock.monotonic())

    def _progress(self, run: Running) -> float:
        if not run.duration or math.isinf(run.duration):
            return 0.0
        return min(1.0, max(0.0, (self.clock.monotonic() - run.started) / run.duration))

    async def halt(self, code: str, text: str, *, motion_only: bool = False) -> None:
        """Cancel the running action; it answers ``failed`` with error code ``code``."""
        run = self._current
        if run is None or run.task is None or run.task is asyncio.current_task():
            return
        if motion_only and not run.motion:
            return
        run.halt_code, run.halt_text = code, text
        run.task.cancel()
        await asyncio.wait([run.task])

    async def _do_stop(self, cmd: DriverCommand) -> None:
        await self.halt("stopped", f"halted by stop command {cmd.id}")
        self.fault = None
        await self.clock.sleep(self.duration("stop"))
        self.world.changed()
        await self._answer(self._result(cmd, "done"))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- answering ------------------------------------------------------------------------
    def _result(
        self,
        cmd: DriverCommand,
        status: str,
        *,
        code: str | None = None,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> DriverResult:
        return DriverResult.model_validate(
            {
                "ts": self.clock.now(),
                "id": cmd.id,
                "device": self.device,
                "action": cmd.action,
                "status": status,
                "error_code": code,
                "error": error[:1000] if error else None,
                "data": data or {},
            }
        )

    def _remember(self, result: DriverResult) -> None:
        self._results[result.id] = result
        self._results.move_to_end(result.id)
        while len(self._results) > RESULT_MEMORY:
            self._results.popitem(last=False)

    async def _answer(self, result: DriverResult) -> None:
        """Remember and publish ``result``.

        A final answer goes out after every changed device state, so whoever sees ``done``
        and then reads a retained state sees the world after the action. ``accepted`` goes
        out first (the controller waits for it on a real-seconds deadline), the state after.
        """
        self._remember(result)
        if result.status == "accepted":
            await self._publish_result(result)
            await self.env.flush_states()
        else:
            await self.env.flush_states()
            await self._publish_result(result)

    async def _publish_result(self, result: DriverResult) -> None:
        try:
            await self.bus.publish(self.topics.driver_result(self.device), result)
        except BusDisconnected as exc:
            log.warning("%s: result %s %s lost: %s", self.device, result.id, result.status, exc)
        except ValueError as exc:  # e.g. an unencodable string echoed from a bad command
            safe = result.model_copy(update={"action": "?", "data": {}})
            log.info(
                "%s: result %s not encodable (%s); sent without the action",
                self.device,
                result.id,
                exc,
            )
            with contextlib.suppress(BusDisconnected, ValueError):
                await self.bus.publish(self.topics.driver_result(self.device), safe)

    async def _on_retained_command(self, topic: str, payload: bytes) -> None:
        """A retained driver command is stale by nature: never carried out, no result."""
        if payload:
            excerpt = payload[:120].decode("utf-8", errors="replace")
            reason = "retained command ignored: driver commands are never retained"
            await self._bad_input(topic, reason, excerpt, None)

    async def _bad_input(
        self, topic: str, reason: str, excerpt: str, failed: DriverResult | None
    ) -> None:
        """Unusable input: an error event, and a ``failed`` result when the id was readable."""
        log.warning("%s: bad command on %s: %s", self.device, topic, reason)
        event = ErrorEvent(
            ts=self.clock.now(),
            station=self.env.config.station_id,
            source=self.device,
            topic=topic,
            error=reason,
            payload_excerpt=excerpt[:200],
        )
        try:
            await self.bus.publish(self.topics.driver_events(self.device), event)
        except BusDisconnected as exc:
            log.warning("%s: error event not published: %s", self.device, exc)
        if failed is not None:
            await self._publish_result(failed)

    # ---- argument helpers for subclasses --------------------------------------------------
    def check_args(
        self, args: dict[str, Any], *, required: Iterable[str] = (), optional: Iterable[str] = ()
    ) -> None:
        check_args(args, required=required, optional=optional)

    def slot_arg(self, args: dict[str, Any]) -> int:
        return slot_arg(args, self.world.slots)
