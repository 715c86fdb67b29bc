"""A whole station for tests: simulator + controller + an operator, on a real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from controller.app import Controller
from controller.bus import Bus
from controller.bus.login import make_bus
from controller.clock import Clock
from controller.config import StationConfig, load_config
from controller.console import OperatorClient
from controller.contract import DEVICES, Event, Mode, PhaseChanged, SwapFinished, SwapRecord
from simulator.app import Simulator
from tests.waits import holds_within

TEST_SCALE = 200.0
E = TypeVar("E")


#: Deadlines are multiplied by this in tests: at 200x, a 50 ms hiccup of a shared 2-core machine
#: is 10 station seconds, and MQTT round trips are real milliseconds. Tests about deadlines set
#: the one deadline they test explicitly.
DEADLINE_SLACK = 4.0


def slacken_deadlines(swap: dict[str, Any]) -> None:
    """Multiply the phase and step deadlines of a station file's ``swap`` section (a plain
    dict) by :data:`DEADLINE_SLACK`."""
    swap["phase_deadlines_s"] = {
        k: v * DEADLINE_SLACK for k, v in swap["phase_deadlines_s"].items()
    }
    for step in swap["steps"].values():
        if step.get("deadline_s"):
            step["deadline_s"] *= DEADLINE_SLACK


#: A deadline no phase or step of a nominal swap comes near (5 real seconds at 200x).
FAR_S = 1000.0


def far_deadlines(near: dict[str, float] | None = None) -> dict[str, Any]:
    """:func:`station_config` changes that move every phase and step deadline far away, but
    the phase deadlines in ``near``: for a test whose subject is not a deadline (or is one
    phase's), so that a loaded machine's stall cannot end the swap somewhere else."""
    base = load_config().swap
    phases = dict.fromkeys(base.phase_deadlines_s, FAR_S) | (near or {})
    steps = {name: {**step.model_dump(), "deadline_s": FAR_S} for name, step in base.steps.items()}
    return {"swap__phase_deadlines_s": phases, "swap__steps": steps}


def station_config(
    station_id: str, *, time_scale: float = TEST_SCALE, **changes: Any
) -> StationConfig:
    """The shipped station file, with a test's station id, time scale and changes.

    ``changes`` use ``__`` for nesting: ``swap__phase_deadlines_s={...}``.
    """
    cfg = load_config()
    data = cfg.model_dump()
    data.update(station_id=station_id, time_scale=time_scale)
    slacken_deadlines(data["swap"])
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return StationConfig.model_validate(data)


@dataclass
class StationUnderTest:
    config: StationConfig
    url: str
    clock: Clock
    sim: Simulator
    controller: Controller
    operator: OperatorClient
    events: list[Event] = field(default_factory=list)
    finished: asyncio.Queue[SwapRecord] = field(default_factory=asyncio.Queue)

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, SwapFinished):
            self.finished.put_nowait(event.record)

    async def command(self, cmd: str, **args: Any) -> Any:
        reply = await self.operator.command(cmd, args, timeout_s=5.0)
        assert reply is not None, f"no reply to {cmd}"
        return reply

    async def next_swap(self, timeout_s: float = 30.0) -> SwapRecord:
        return await asyncio.wait_for(self.finished.get(), timeout_s)

    async def wait_mode(self, mode: Mode, timeout_s: float = 10.0) -> None:
        ok = await holds_within(lambda: self.controller.station.mode is mode, timeout_s)
        assert ok, f"mode is {self.controller.station.mode.value}, wanted {mode.value}"

    async def wait_phase(self, phase: str, timeout_s: float = 30.0) -> None:
        ok = await holds_within(
            lambda: self.controller.station.phases.phase.value == phase, timeout_s
        )
        assert ok, f"phase never reached {phase}"

    async def wait_events(self, kind: type[E], count: int = 1, timeout_s: float = 5.0) -> list[E]:
        """The events of ``kind`` received so far, once there are at least ``count``."""
        await holds_within(
            lambda: len([e for e in self.events if isinstance(e, kind)]) >= count, timeout_s
        )
        found = [e for e in self.events if isinstance(e, kind)]
        assert len(found) >= count, f"{len(found)} {kind.__name__} event(s), wanted {count}"
        return found

    def awaiting_results(self) -> list[str]:
        """The devices the controller sent a command it has no result for yet."""
        devices = self.controller.devices
        return [d for d in DEVICES if devices[d].inflight]

    async def wait_no_command_in_flight(self, timeout_s: float = 10.0) -> None:
        """Until every command the controller sent has its result (the motion under way, if
        any, has finished)."""
        ok = await holds_within(lambda: not self.awaiting_results(), timeout_s)
        assert ok, f"commands still in flight to {self.awaiting_results()}"

    def controller_heard_every_driver(self) -> bool:
        """The controller holds, for every driver, the state that driver last published."""
        for name, driver in self.sim.drivers.items():
            published = driver._last_state
            state = self.controller.devices[name].state
            if published is not None and (
                state is None or state.model_dump(mode="json", exclude={"ts"}) != published
            ):
                return False
        return True

    async def wait_world_settled(self, timeout_s: float = 10.0) -> None:
        """Until the simulated hardware has finished what it was doing (a released truck has
        left), has published its states, and the controller has taken them in."""
        assert await settle_world(self.sim, timeout_s), "the simulated hardware did not settle"
        ok = await holds_within(self.controller_heard_every_driver, timeout_s)
        assert ok, "the controller never received the drivers' last states"
        await self.controller.outbox.flush()

    def phases_seen(self) -> list[str]:
        return [e.phase.value for e in self.events if isinstance(e, PhaseChanged) and e.phase]

    def motions_after(self, t: float) -> list[tuple[float, str, str]]:
        from controller.contract import MOTION_ACTIONS

        return [
            s for s in self.controller.station.sent if s[0] > t and (s[1], s[2]) in MOTION_ACTIONS
        ]


@asynccontextmanager
async def running_station(
    url: str,
    config: StationConfig,
    *,
    start: bool = True,
    clock: Clock | None = None,
    sim_config: StationConfig | None = None,
    operator_config: StationConfig | None = None,
    sim_state: Path | None = None,
) -> AsyncIterator[StationUnderTest]:
    """The simulator, the controller and an operator client, each with its own station file
    when given (``sim_config``, ``operator_config``: on a secured broker each process logs in
    with its own account, as on a station); otherwise all three use ``config``. ``sim_state``:
    the file the simulated world is kept in across restarts."""
    clock = clock or Clock(config.time_scale)
    op_config = operator_config or config
    async with AsyncExitStack() as stack:
        sim = Simulator(sim_config or config, url=url, clock=clock, state_file=sim_state)
        await sim.start()
        stack.push_async_callback(sim.stop)
        controller = Controller(config, url=url, clock=clock)
        await controller.start()
        stack.push_async_callback(controller.stop)
        await controller.wait_ready(10.0)
        sut = StationUnderTest(config, url, clock, sim, controller, operator=None)  # type: ignore[arg-type]
        operator = OperatorClient(
            make_bus(op_config, url, client_id=f"op-{config.station_id}"),
            config.station_id,
            on_event=sut.on_event,
            username=op_config.broker.username,
        )
        await operator.start()
        stack.push_async_callback(operator.stop)
        sut.operator = operator
        if start:
            reply = await sut.command("start")
            assert reply.ok, reply.error
        yield sut


async def raw_client(url: str, client_id: str) -> Bus:
    bus = Bus(url, client_id=client_id)
    await bus.start()
    return bus


async def settle_world(sim: Simulator, timeout_s: float = 10.0, quiet_polls: int = 3) -> bool:
    """Wait until the simulated hardware has finished what it was doing: no driver action
    running and no truck moving in the bay (a released truck has left), for ``quiet_polls``
    polls in a row; then publish every state. False on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    quiet = 0
    w = sim.world
    while loop.time() < end:
        busy = any(d.busy for d in sim.drivers.values())
        moving = w.bay is not None and w.bay.phase != "stopped"
        quiet = 0 if busy or moving else quiet + 1
        if quiet >= quiet_polls:
            await sim.flush()
            return True
        await asyncio.sleep(0.01)
    return False
