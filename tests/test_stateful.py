"""Random operator commands and faults against a running station; the invariants hold throughout.

A hypothesis ``RuleBasedStateMachine`` drives a whole station (simulator, controller, operator on
a real Mosquitto) with random steps: every operator command, valid or not, on ``cmd`` and on
``cmd/<user>``, with fresh, repeated and reused ids; malformed commands; trucks arriving; the
e-stop pressed and released; the light curtain broken and restored; driver faults injected
(every kind of :mod:`simulator.faults`); drivers disconnected and reconnected; and time passing.
After every step it checks the invariants of the design brief (``../shared/design.md``):

1. **Pack conservation.** The simulated world and the controller's ledger each have every pack
   in exactly one place, and every pack the controller places is where the world has it, or
   explicitly ``unknown`` with an active alarm naming it, or, while a move is journaled and not
   confirmed, at either end of that move (likewise a truck whose ``bay.release`` is in doubt
   while the swap is held: it may have left). Checked "eventually" (within 3 s real): between a
   driver's ``done`` and the controller confirming it, the two differ for a millisecond by
   design; a lasting difference is a failure. While a driver is disconnected, its reports are
   stale, so the comparison waits for it to come back.
2. **No motion while an interlock is open, or after a halt until the operator resumes.** Every
   motion command the controller sends is inspected at the moment it is sent (a wrapper around
   ``Station.record_sent``, which the controller calls just before publishing): the station
   must be in ``execute`` (a swap) or ``maintenance`` (an operator's manual move), and the
   controller must know the safety relay is ok (no e-stop, light curtain intact) and every
   driver online. So nothing moves while e-stopped, aborting/aborted, held or suspended, that is
   after an abort or e-stop until the operator's next start or resume. Motions sent in the
   milliseconds between the e-stop being pressed in the world and the controller hearing of it
   are counted, not failed (the relay cuts motion power; the drivers refuse them). Also: the
   station never goes back to ``execute`` on its own (held -> execute only by the operator's
   ``resume``, idle -> execute only by ``start``), and an e-stop on the relay latches
   ``estopped`` at once.
3. **Every operator command gets exactly one reply.** Replies on ``reply`` are counted by id:
   as many as commands sent with that id, no more later; ``""`` for unreadable payloads.
5. **A command id seen twice is executed once.** A repeated id (the same payload, or another
   command under the same id) gets the first reply's answer again, and the audit trail has one
   ``CommandHandled`` event per id.

Also: the controller's command handler and outbox tasks never die (no crash).

How it runs: hypothesis state machines are synchronous, so each example builds its station on a
fresh event loop running in a background thread, and every step and check is a coroutine
submitted to it (``run_coroutine_threadsafe``, with a timeout). The station keeps running between
steps, as a real one would, and a check runs atomically with respect to it (a coroutine that
does not await). A fresh loop per example keeps examples apart: nothing one leaves behind can
disturb the next, and the session loop of pytest-asyncio is never touched. The stations share
the session's Mosquitto (it starts a station in ~0.1 s; the embedded broker is much slower),
each under its own station id.

Size: ``SWAPSTATION_STATEFUL_EXAMPLES`` (default 12) examples of
``SWAPSTATION_STATEFUL_STEPS`` (default 30) steps take about a minute here; ``make stateful``
(see the report) runs 200. Hypothesis prints the failing steps, shrunk, and the seed to
reproduce them (``--hypothesis-seed``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import itertools
import json
import os
import sys
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as hs
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from controller.aio import awaiting
from controller.contract import (
    DEVICES,
    DRIVER_ACTIONS,
    MOTION_ACTIONS,
    OPERATOR_COMMANDS,
    CommandHandled,
    Mode,
    OperatorCommand,
    PayloadError,
    Reply,
    decode,
)
from simulator.faults import FAULT_KINDS
from tests.fuzz_payloads import reply_id
from tests.harness import StationUnderTest, far_deadlines, running_station, station_config
from tests.waits import holds_within

EXAMPLES = int(os.environ.get("SWAPSTATION_STATEFUL_EXAMPLES", "12"))
STEPS = int(os.environ.get("SWAPSTATION_STATEFUL_STEPS", "30"))
#: Real seconds an operator waits for a reply before the test calls it lost.
REPLY_TIMEOUT_S = 10.0
#: Real seconds the ledger and the world may take to agree again after a step.
SETTLE_S = 3.0
USER = "alice"
UNKNOWN_ALARMS = ("pack_location_unknown", "recovery_needed", "inventory_mismatch")

T = TypeVar("T")
_examples = itertools.count(1)
#: What the examples got up to (printed at the end: a run that never swaps proves little).
COVERAGE: Counter[str] = Counter()
#: Where a swap task that would not stop was waiting (BUG-H2, fixed), printed at the end.
HANGS: list[str] = []


pytestmark = pytest.mark.timeout(max(600, EXAMPLES * STEPS * 3))


class LoopThread:
    """An event loop running in a thread of its own; run coroutines on it from this one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="station", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            stacks = self._stacks()
            future.cancel()
            raise AssertionError(
                f"step did not finish within {timeout_s:g} s; tasks then:\n{stacks}"
            ) from None

    def _stacks(self) -> str:
        """Where every task of the loop is (to see what a stuck step waits for)."""
        out = io.StringIO()
        for task in asyncio.all_tasks(self.loop):
            task.print_stack(limit=6, file=out)
        return out.getvalue()[-20_000:]

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()


# ---- strategies ----------------------------------------------------------------------------

FLOW = ("start", "resume", "clear", "reset")
HALTS = ("hold", "abort", "estop", "stop")
UNKNOWN_CMDS = ("fly", "START", "reboot")
JUNK_ARGS = hs.dictionaries(
    hs.sampled_from(["x", "speed", "alarm_id", "device"]),
    hs.one_of(hs.integers(-3, 3), hs.text(max_size=3), hs.none()),
    max_size=2,
)
FAULTABLE = [
    (device, action)
    for device, actions in DRIVER_ACTIONS.items()
    for action in actions
    if action != "stop"
]


@hs.composite
def fault_specs(draw: hs.DrawFn) -> str:
    device, action = draw(hs.sampled_from(FAULTABLE))
    kinds = [k for k in FAULT_KINDS if k != "drop" or (device == "arm")]
    kind = draw(hs.sampled_from(kinds))
    if kind == "drop" and action not in ("move", "lift", "lower"):
        action = "move"
    return f"{device}.{action}:{kind}"


@hs.composite
def manual_args(draw: hs.DrawFn) -> dict[str, Any]:
    device = draw(hs.sampled_from(sorted(DRIVER_ACTIONS)))
    action = draw(hs.sampled_from(sorted(DRIVER_ACTIONS[device])))
    args: dict[str, Any] = {}
    if (device, action) == ("arm", "move"):
        target = draw(hs.sampled_from(["home", "vehicle", "slot"]))
        args = {"target": target}
        if target == "slot":
            args["slot"] = draw(hs.integers(1, 8))
    elif action in ("dock", "undock"):
        args = {"slot": draw(hs.integers(1, 8))}
    return {"device": device, "action": action, "args": args}


#: Pack ids for set_location. Drawn from a fixed list, never from the running station:
#: hypothesis replays a failing example and needs the same choices to be offered.
PACKS = (
    *(p.id for p in station_config("x").simulator.initial_packs),
    *(f"TP-{n:05d}" for n in (1, 2, 3)),
    "P-0",
)

MALFORMED = (
    b"not json",
    b"[1, 2]",
    b"",
    b'{"id": 5, "cmd": "start"}',
    b'{"cmd": "start"}',
    b'{"id": "@ID@"}',
    b'{"id": "@ID@", "cmd": "start", "extra": 1}',
    b'{"id": "@ID@", "cmd": 5}',
    b'{"id": "@ID@", "cmd": "resume", "args": []}',
    b'{"id": "@ID@", "cmd": "start", "v": 2}',
    b'{"id": "has space", "cmd": "start"}',
)


# ---- the machine ---------------------------------------------------------------------------


class StationMachine(RuleBasedStateMachine):
    """One station per example; see the module docstring for what is checked."""

    url = ""  # the broker, set by the test

    def __init__(self) -> None:
        super().__init__()
        self.runner = LoopThread()
        self.stack = AsyncExitStack()
        self.n = next(_examples)
        self.cfg = station_config(f"sf{os.getpid()}-{self.n}")
        self.ids = itertools.count(1)
        self.sends: Counter[str] = Counter()
        self.payloads: dict[str, bytes] = {}
        self.decodable: set[str] = set()
        self.replies: defaultdict[str, list[Reply]] = defaultdict(list)
        self.violations: list[str] = []
        self.propagation: list[str] = []
        self.executing: str | None = None
        self.modes_seen: set[Mode] = {Mode.idle}
        #: What happened, for failure messages (hypothesis's own replay of the steps may not
        #: fail the same way: the station runs in real time).
        self.trail: deque[str] = deque(maxlen=60)
        self.steps = 0
        self.st: StationUnderTest | None = None
        try:
            self.st = self.runner.run(self._start(), 60)
        except BaseException:
            self.runner.close()
            raise

    # ---- lifecycle ------------------------------------------------------------------------
    async def _start(self) -> StationUnderTest:
        st = await self.stack.enter_async_context(running_station(self.url, self.cfg, start=False))
        await st.operator.bus.subscribe(st.controller.topics.reply, self._on_reply)
        station = st.controller.station
        original_sent = station.record_sent

        def record_sent(device: str, action: str, args: dict[str, Any]) -> None:
            if (device, action) in MOTION_ACTIONS:
                self._inspect_motion(st, device, action, args)
            original_sent(device, action, args)

        station.record_sent = record_sent  # type: ignore[method-assign]
        original_execute = st.controller.commands.execute

        async def execute(cmd: str, args: dict[str, Any], *, sender: str | None = None) -> None:
            self.executing = cmd
            try:
                await original_execute(cmd, args, sender=sender)
            finally:
                self.executing = None

        st.controller.commands.execute = execute  # type: ignore[method-assign]
        station.mode_listeners.append(self._on_mode)
        return st

    def teardown(self) -> None:
        try:
            if self.st is not None:
                self.runner.run(self._tally(), 30)
                self.runner.run(self._close(), 90)
        finally:
            self.runner.close()

    async def _close(self) -> None:
        """Stop the station; a shutdown that hangs fails the example (BUG-H2: a swap task whose
        cancellation aiomqtt's or transitions' internals swallowed ran on). The stuck task is
        cancelled again so the teardown ends, and where it waited is printed at the end."""
        closing = asyncio.ensure_future(self.stack.aclose())
        hung = False
        while not (await asyncio.wait([closing], timeout=15))[0]:
            for task in asyncio.all_tasks():
                if task.get_name() == "station-execute" and task.cancelling():
                    hung = True
                    HANGS.append(awaiting(task))
                    task.cancel()
        await closing
        assert not hung, f"Controller.stop hung on a swap task that would not stop: {HANGS[-1]}"

    async def _tally(self) -> None:
        assert self.st is not None
        station = self.st.controller.station
        COVERAGE["examples"] += 1
        COVERAGE["steps"] += self.steps
        COVERAGE["commands"] += self.sends.total()
        COVERAGE["commands ok"] += sum(r.ok for rs in self.replies.values() for r in rs)
        COVERAGE["motions sent"] += sum((d, a) in MOTION_ACTIONS for _, d, a in station.sent)
        COVERAGE["motions in propagation window"] += len(self.propagation)
        COVERAGE["faults fired"] += len(self.st.sim.faults.fired)
        for record in station.records:
            COVERAGE[f"swaps {record.result}"] += 1
        for mode in self.modes_seen:
            COVERAGE[f"mode {mode.value}"] += 1

    def do(
        self,
        make: Callable[[StationUnderTest], Awaitable[T]],
        timeout_s: float = 60,
        *,
        label: str | None = None,
    ) -> T:
        """Run ``make(station)`` on the station's loop; note the step in :attr:`trail`."""
        assert self.st is not None
        st = self.st
        label = label or sys._getframe(1).f_code.co_name

        async def go() -> T:
            try:
                return await make(st)
            finally:
                station = st.controller.station
                self.trail.append(
                    f"t={st.clock.monotonic():7.1f} {label} -> {station.mode.value}"
                    f"/{station.phases.phase.value}"
                )

        return self.runner.run(go(), timeout_s)

    # ---- observers (run on the station's loop) ------------------------------------------
    async def _on_reply(self, topic: str, payload: bytes) -> None:
        try:
            reply = decode(Reply, payload)
        except PayloadError as exc:
            self.violations.append(f"unreadable reply {payload[:100]!r}: {exc.reason}")
            return
        self.replies[reply.id].append(reply)

    def _inspect_motion(
        self, st: StationUnderTest, device: str, action: str, args: dict[str, Any]
    ) -> None:
        station, devices, world = st.controller.station, st.controller.devices, st.sim.world
        what = f"{device}.{action}{args or ''} at t={st.clock.monotonic():.1f}"
        wrong = []
        if station.mode not in (Mode.execute, Mode.maintenance):
            wrong.append(f"mode {station.mode.value}")
        if station.mode is Mode.maintenance and self.executing != "manual":
            wrong.append("in maintenance, but not for an operator's manual command")
        safety = devices.safety
        if safety is None:
            wrong.append("safety relay state unknown")
        else:
            if safety.estop_pressed:
                wrong.append("e-stop pressed")
            if safety.light_curtain_broken:
                wrong.append("light curtain broken")
        if devices.offline():
            wrong.append(f"driver(s) offline: {devices.offline()}")
        if wrong:
            self.violations.append(f"motion {what}: {'; '.join(wrong)}")
        elif world.estop_pressed or world.light_curtain_broken:
            self.propagation.append(what)

    def _on_mode(self, new: Mode, previous: Mode) -> None:
        self.modes_seen.add(new)
        if new is not Mode.execute:
            return
        allowed = {
            Mode.idle: ("start",),
            Mode.held: ("resume",),
            Mode.suspended: ("resume", None),  # documented: resumes when a pack is charged
        }.get(previous, ())
        if self.executing not in allowed:
            self.violations.append(
                f"{previous.value} -> execute without the operator (during {self.executing!r})"
            )

    # ---- sending commands -----------------------------------------------------------------
    def new_id(self) -> str:
        return f"c{self.n}-{next(self.ids)}"

    def send(self, payload: bytes, *, user: str | None = None) -> None:
        """Publish one command payload and wait for its reply (exactly one is checked later)."""
        rid = reply_id(payload)
        with_id = rid not in self.payloads
        self.sends[rid] += 1
        if rid and with_id:
            self.payloads[rid] = payload
            try:
                decode(OperatorCommand, payload)
                self.decodable.add(rid)
            except (PayloadError, ValueError, RecursionError):
                pass
        want = self.sends[rid]

        async def go(st: StationUnderTest) -> None:
            topics = st.controller.topics
            topic = topics.cmd_from(user) if user else topics.cmd
            await st.operator.bus.publish(topic, payload)
            if not await holds_within(lambda: len(self.replies[rid]) >= want, REPLY_TIMEOUT_S):
                raise AssertionError(
                    f"no reply to {payload[:120]!r} within {REPLY_TIMEOUT_S:g} s "
                    f"(mode {st.controller.station.mode.value}, executing {self.executing!r})"
                )

        self.do(go, label=f"cmd{'/' + user if user else ''} {payload[:90]!r}")

    def command(self, cmd: str, args: dict[str, Any], user: str | None = None) -> None:
        self.send(json.dumps({"id": self.new_id(), "cmd": cmd, "args": args}).encode(), user=user)

    # ---- rules: operator commands ---------------------------------------------------------
    # Hypothesis picks among the rules evenly, so the rules that halt the station are grouped
    # (one rule each for halting commands, safety inputs and driver links) and the ones that
    # let it run are several: otherwise hardly a swap would get far before the next halt.

    @initialize(
        start=hs.sampled_from([True, True, True, False]),
        trucks=hs.integers(0, 3),
        fault=hs.one_of(hs.none(), fault_specs()),
    )
    def begin(self, start: bool, trucks: int, fault: str | None) -> None:
        """Most examples start swapping at once (the station comes up idle), many with a fault
        armed for the first swap (faults armed later often strike nothing: a station halted by
        the step before does not move)."""
        if fault:
            self.inject_fault(fault)
        if start:
            self.command("start", {})
        if trucks:
            self.do(lambda st: st.sim.arrive(trucks))

    @rule(cmd=hs.sampled_from(FLOW), user=hs.sampled_from([None, USER]))
    def flow_command(self, cmd: str, user: str | None) -> None:
        self.command(cmd, {}, user)

    @rule(cmd=hs.sampled_from(HALTS), user=hs.sampled_from([None, USER]))
    def halting_command(self, cmd: str, user: str | None) -> None:
        self.command(cmd, {}, user)

    @rule(
        cmd=hs.sampled_from([*OPERATOR_COMMANDS, *UNKNOWN_CMDS]),
        args=hs.one_of(hs.just({}), JUNK_ARGS),
        user=hs.sampled_from([None, USER]),
    )
    def any_command(self, cmd: str, args: dict[str, Any], user: str | None) -> None:
        self.command(cmd, args, user)

    @rule(cmd=hs.sampled_from(["maintenance", "leave_maintenance"]))
    def maintenance_mode(self, cmd: str) -> None:
        self.command(cmd, {})

    @rule(args=manual_args())
    def manual_move(self, args: dict[str, Any]) -> None:
        """An operator's manual move (refused outside maintenance), under whatever faults are
        armed: a hang or a disconnect included (their ledger disagreement is fixed)."""
        self.command("manual", args)

    @rule(pack=hs.sampled_from(PACKS))
    def set_location(self, pack: str) -> None:
        """An operator records where a pack is after inspection: where it really is (an
        operator who records a wrong place defeats any ledger; the controller then refuses to
        start while the drivers' sensors disagree, which is not what this machine checks)."""
        assert self.st is not None
        where = self.st.sim.world.locations.get(pack)
        if where is not None:  # not in the station: nothing to inspect
            self.command("set_location", {"pack_id": pack, "location": where})

    @rule(alarm=hs.sampled_from(["all", "A00001", "A00002", "A00003", "A00004", "A99999"]))
    def ack(self, alarm: str) -> None:
        self.command("ack", {"alarm_id": alarm})

    @precondition(lambda self: bool(self.payloads))
    @rule(data=hs.data())
    def repeat_command(self, data: hs.DataObject) -> None:
        """QoS 1 redelivery: the same payload again."""
        rid = data.draw(hs.sampled_from(sorted(self.payloads)), label="id")
        self.send(self.payloads[rid])

    @precondition(lambda self: bool(self.decodable))
    @rule(data=hs.data(), cmd=hs.sampled_from(OPERATOR_COMMANDS))
    def reuse_id(self, data: hs.DataObject, cmd: str) -> None:
        """Another command under an id already used: it must not be executed."""
        rid = data.draw(hs.sampled_from(sorted(self.decodable)), label="id")
        self.send(json.dumps({"id": rid, "cmd": cmd}).encode())

    @rule(template=hs.sampled_from(MALFORMED))
    def malformed_command(self, template: bytes) -> None:
        self.send(template.replace(b"@ID@", self.new_id().encode()))

    @rule()
    def recover(self) -> None:
        """What an operator does to get going again (each command checked like any other)."""

        async def restore(st: StationUnderTest) -> None:
            await st.sim.set_estop(False)
            await st.sim.set_light_curtain(False)
            for device, driver in st.sim.drivers.items():
                if not driver.bus.connected:
                    await st.sim.reconnect(device)
            await st.controller.devices.wait_until(lambda: not st.controller.devices.offline(), 5)

        self.do(restore)
        for cmd in ("ack", "clear", "reset", "start", "resume"):
            self.command(cmd, {"alarm_id": "all"} if cmd == "ack" else {})

    # ---- rules: the world -----------------------------------------------------------------
    @rule(count=hs.integers(1, 2))
    def trucks_arrive(self, count: int) -> None:
        self.do(lambda st: st.sim.arrive(count))

    @rule(what=hs.sampled_from(["estop", "light_curtain"]), tripped=hs.booleans())
    def safety_input(self, what: str, tripped: bool) -> None:
        """Press or release the e-stop, break or restore the light curtain."""

        async def go(st: StationUnderTest) -> None:
            if what == "light_curtain":
                await st.sim.set_light_curtain(tripped)
                return
            await st.sim.set_estop(tripped)
            if tripped and st.sim.drivers["safety"].bus.connected:
                station = st.controller.station
                if not await holds_within(lambda: station.mode is Mode.estopped, 5):
                    raise AssertionError(f"e-stop not latched: mode {station.mode.value}")

        self.do(go)

    @rule(spec=fault_specs())
    def inject_fault(self, spec: str) -> None:
        async def go(st: StationUnderTest) -> None:
            st.sim.inject(spec)

        self.do(go)

    @rule()
    def clear_faults(self) -> None:
        async def go(st: StationUnderTest) -> None:
            st.sim.faults.clear()

        self.do(go)

    @rule(device=hs.sampled_from([*DEVICES, None]))
    def driver_link(self, device: str | None) -> None:
        """Drop one driver's connection (its last will fires), or bring every driver back."""

        async def go(st: StationUnderTest) -> None:
            if device is not None and st.sim.drivers[device].bus.connected:
                await st.sim.disconnect(device)
            elif device is None:
                for name, driver in st.sim.drivers.items():
                    if not driver.bus.connected:
                        await st.sim.reconnect(name)

        self.do(go)

    @rule(station_s=hs.sampled_from([1, 3, 10, 30]))
    def a_moment_passes(self, station_s: int) -> None:
        # time passing is the step itself: what the station does meanwhile is what is tested
        self.do(lambda st: asyncio.sleep(st.clock.to_real(station_s)))

    @rule(station_s=hs.sampled_from([60, 120, 200]))
    def time_passes(self, station_s: int) -> None:
        """About a swap's worth of time (a swap takes ~130 station seconds)."""
        self.do(lambda st: asyncio.sleep(st.clock.to_real(station_s)))

    @rule(phases=hs.integers(1, 12))
    def swap_runs_on(self, phases: int) -> None:
        """Let the swap get ``phases`` phases further (at most 2 s; less if the station stops)."""

        async def go(st: StationUnderTest) -> None:
            station = st.controller.station
            seen: list[Any] = []
            station.phase_listeners.append(seen.append)
            try:
                await holds_within(
                    lambda: len(seen) >= phases or station.mode is not Mode.execute, 2
                )
            finally:
                station.phase_listeners.remove(seen.append)

        self.do(go)

    # ---- invariants -----------------------------------------------------------------------
    @invariant()
    def invariants_hold(self) -> None:
        self.steps += 1
        try:
            self.runner.run(self._check(self.st), 60)  # type: ignore[arg-type]
        except AssertionError as exc:
            trail = "\n  ".join(self.trail)
            raise AssertionError(
                f"{exc}\nthe last steps (station time, step -> mode/phase):\n  {trail}"
            ) from None

    async def _check(self, st: StationUnderTest) -> None:
        # no crash: the controller's long-running tasks are alive
        for name, task in (
            ("command handler", getattr(st.controller.commands, "_task", None)),
            ("outbox", getattr(st.controller.outbox, "_task", None)),
        ):
            if task is None or task.done():
                exc = task.exception() if task is not None and not task.cancelled() else None
                raise AssertionError(f"the controller's {name} task ended: {exc!r}")
        # 2. motion and mode
        assert not self.violations, "\n".join(self.violations)
        # 3. exactly one reply per command
        for rid, sent in self.sends.items():
            got = len(self.replies[rid])
            assert got == sent, f"{got} replies to {sent} command(s) with id {rid!r}"
        stray = set(self.replies) - set(self.sends)
        assert not stray, f"replies to ids never sent: {sorted(stray)}"
        # 5. a repeated id: the first answer again, and executed once
        for rid, replies in self.replies.items():
            answers = {(r.ok, r.error) for r in replies}
            assert rid == "" or len(answers) == 1, f"id {rid!r} answered differently: {answers}"
        try:
            await st.controller.outbox.flush(10)
        except TimeoutError:
            raise AssertionError("the controller's outbox did not empty in 10 s") from None

        def handled() -> Counter[str]:
            return Counter(e.id for e in st.events if isinstance(e, CommandHandled))

        await holds_within(lambda: all(handled()[i] == 1 for i in self.decodable), 3)
        counts = handled()
        wrong = {i: counts[i] for i in self.decodable if counts[i] != 1}
        wrong |= {i: c for i, c in counts.items() if c > 1}
        assert not wrong, f"CommandHandled events per id, want 1 each: {wrong}"
        # 1. pack conservation
        if not await holds_within(lambda: not self._conservation(st), SETTLE_S):
            problems = self._conservation(st)
            assert not problems, "pack conservation:\n" + "\n".join(problems)

    def _conservation(self, st: StationUnderTest) -> list[str]:
        ctl, sim = st.controller, st.sim
        world = sim.world
        out = [f"world: {p}" for p in world.problems()]
        out += [f"ledger: {p}" for p in ctl.ledger.problems() if "location unknown" not in p]
        if not all(d.bus.connected for d in sim.drivers.values()):
            return out  # a driver's reports are stale until it is back
        in_station = ctl.ledger.in_station()
        moving: dict[str, set[str]] = defaultdict(set)
        for move in ctl.store.open_moves():
            moving[move.pack_id] |= {move.src, move.dst}
        alarms = [a for a in ctl.station.alarms.active() if a.code in UNKNOWN_ALARMS]
        # A truck released while the bay's result was lost (its driver dropped mid-release)
        # has left, but the swap is held with bay.release in doubt: the controller keeps the
        # pack on the truck until the operator resumes (departed) or aborts (unknown, alarm).
        run = ctl.station.run
        in_doubt = (
            f"vehicle:{run.vehicle_id}"
            if run is not None and run.vehicle_id and ctl.devices["bay"].inflight
            else None
        )
        for pack, where in sorted(in_station.items()):
            real = world.locations.get(pack)
            if where == real:
                continue
            if where == in_doubt and real is None:
                COVERAGE["truck left while its release was in doubt (held)"] += 1
                continue
            if where == "unknown":
                if not any(pack in a.text for a in alarms):
                    out.append(f"pack {pack} unknown (world: {real}) with no alarm naming it")
                continue
            if where in moving[pack] and real in moving[pack]:
                continue
            out.append(f"pack {pack}: controller says {where}, world says {real}")
        for pack, real in sorted(world.locations.items()):
            if pack not in in_station:
                mine = ctl.ledger.locations.get(pack, "nowhere")
                out.append(f"pack {pack}: world says {real}, controller has it {mine}")
        return out


def test_random_commands_and_faults_keep_the_invariants(
    mosquitto: Any, report: Callable[[str], None]
) -> None:
    StationMachine.url = mosquitto.url
    COVERAGE.clear()
    HANGS.clear()
    try:
        _run()
    finally:
        lines = ["", "Stateful: what the examples did (counts over all examples)"]
        lines += [f"  {key:<32} {count}" for key, count in sorted(COVERAGE.items())]
        lines += [f"  a swap task that would not stop waited in: {where}" for where in HANGS]
        report("\n".join(lines))


def _run() -> None:
    run_state_machine_as_test(
        StationMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )


# ---- reproductions of what the state machine's invariants caught -----------------------------
# Regression tests: each reproduced a bug the state machine caught (all fixed).

BUG_E = (
    "BUG-E: a manual command runs inline in the command handler and DeviceProxy.command waits "
    "for the driver's final result with no deadline. If the action never ends (a hung drive, a "
    "driver whose connection drops mid-action), the command is never answered and every later "
    "command queues behind it: the operator's estop and abort get no reply and are not "
    "executed. (A swap's actions have phase and step deadlines; manual ones have none.)"
)
BUG_F = (
    "BUG-F: Station.manual marks the pack 'unknown' (journaled) whenever a manual arm lift or "
    "lower fails, even when the driver refused it at once (e.g. 'impossible: the pack in slot 1 "
    "is still docked') and nothing moved, and raises no alarm: the pack's place is lost with "
    "no alarm naming it, and start is refused until an operator sets it by hand."
)
BUG_G = (
    "BUG-G: ack then reset deactivates the 'pack_location_unknown' alarm although the pack is "
    "still 'unknown' (AlarmBook.clear_acknowledged clears every acknowledged alarm; reset does "
    "not check the condition): the station then holds a pack of unknown place with no active "
    "alarm (start is refused, with the reason only in the reply)."
)


def _unknown_without_alarm(st: StationUnderTest) -> list[str]:
    ledger, station = st.controller.ledger, st.controller.station
    unknown = [p for p, loc in ledger.locations.items() if loc == "unknown"]
    alarms = [a for a in station.alarms.active() if a.code in UNKNOWN_ALARMS]
    return [p for p in unknown if not any(p in a.text for a in alarms)]


@pytest.mark.timeout(60)
async def test_bug_e_a_hung_manual_move_does_not_block_the_estop(
    mosquitto: Any, station_id: str
) -> None:
    async with running_station(mosquitto.url, station_config(station_id), start=False) as st:
        assert (await st.command("maintenance")).ok
        st.sim.inject("arm.move:hang")
        args = {"device": "arm", "action": "move", "args": {"target": "slot", "slot": 2}}
        first = await st.operator.command("manual", args, timeout_s=3)
        estop = await st.operator.command("estop", {}, timeout_s=3)
        assert first is not None, "the hung manual move was never answered"
        assert estop is not None and estop.ok, "the operator's estop was not answered"
        assert st.controller.station.mode is Mode.estopped


async def test_bug_f_a_refused_manual_lift_loses_no_pack(mosquitto: Any, station_id: str) -> None:
    async with running_station(mosquitto.url, station_config(station_id), start=False) as st:
        assert (await st.command("maintenance")).ok
        move = await st.command(
            "manual", device="arm", action="move", args={"target": "slot", "slot": 1}
        )
        assert move.ok, move.error
        lift = await st.command("manual", device="arm", action="lift", args={})
        assert not lift.ok and "docked" in (lift.error or "")  # refused: nothing moved
        assert st.sim.world.locations["P-1001"] == "slot:1"
        assert _unknown_without_alarm(st) == []


async def test_bug_g_a_pack_of_unknown_place_keeps_its_alarm(
    mosquitto: Any, station_id: str
) -> None:
    # far deadlines: the drop must be what ends the swap (a loaded machine once aborted it on
    # a deadline before the lift, and no pack was unknown)
    cfg = station_config(station_id, **far_deadlines())
    async with running_station(mosquitto.url, cfg) as st:
        st.sim.inject("arm.move:drop")  # the arm loses the truck's pack on its way to the rack
        await st.sim.arrive(1)
        record = await st.next_swap()
        assert record.result == "aborted"
        assert "pack_dropped" in (record.reason or ""), record.reason
        await st.wait_mode(Mode.aborted)
        assert "unknown" in st.controller.ledger.locations.values()
        assert _unknown_without_alarm(st) == []
        for cmd, args in (("ack", {"alarm_id": "all"}), ("clear", {}), ("reset", {})):
            reply = await st.command(cmd, **args)
            assert reply.ok, reply.error
        assert "unknown" in st.controller.ledger.locations.values()
        assert _unknown_without_alarm(st) == [], "a pack of unknown place and no alarm"


BUG_H = (
    "BUG-H: DeviceProxy._await_accepted uses asyncio.wait_for, which on Python 3.11 swallows a "
    "cancellation that arrives just as the awaited get() completes (CPython gh-86296, fixed in "
    "3.12): the cancelled command() then goes on waiting for the driver's 'done'. "
    "cancel_and_wait() on the swap task (Station._halt, stop_waiting, shutdown) then blocks "
    "until the driver answers: for ever if it never does (a hung drive, or at shutdown, where "
    "the swap runs on, finishes and waits for the next truck; the state machine saw "
    "Controller.stop hang this way). In _halt it is a deadlock when the action only ends on "
    "'stop', which _halt sends after the cancel returns. asyncio.timeout() does not lose it."
)


class _FakeBus:
    """Just enough of a Bus for one proxy: records commands, hands back its handlers."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.handlers: dict[str, Callable[[str, bytes], Awaitable[None]]] = {}

    async def publish(self, topic: str, message: Any, **_: Any) -> None:
        self.sent.append(message)

    async def subscribe(self, topic: str, handler: Callable[[str, bytes], Awaitable[None]]) -> None:
        self.handlers[topic] = handler


async def test_bug_h_a_command_cancelled_as_its_driver_accepts_it_stops() -> None:
    from controller.clock import Clock
    from controller.contract import DriverResult, Topics
    from controller.devices.proxy import DeviceProxy

    topics, bus = Topics("bug-h"), _FakeBus()
    proxy = DeviceProxy(
        "arm",
        bus=bus,  # type: ignore[arg-type]
        topics=topics,
        clock=Clock(),
        ack_timeout_s=3.0,
        on_bad_input=lambda *_: None,
    )
    await proxy.attach()
    proxy.online = True
    task = asyncio.create_task(proxy.command("move", target="home"))
    for _ in range(2):  # it publishes, then waits for ``accepted``
        await asyncio.sleep(0)
    assert len(bus.sent) == 1
    accepted = DriverResult(id=bus.sent[0].id, device="arm", action="move", status="accepted")
    await bus.handlers[topics.driver_result("arm")]("", accepted.model_dump_json().encode())
    await asyncio.sleep(0)  # the queue's get() completes...
    task.cancel()  # ...and the station cancels the command in that same instant
    done, _ = await asyncio.wait([task], timeout=1.0)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert done, "the cancelled command went on waiting for the driver's 'done'"
