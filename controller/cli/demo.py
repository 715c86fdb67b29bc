"""``swapctl demo``: broker, simulator and controller in one process, N trucks swapped.

The demo drives the station as an operator would: over MQTT, with a ``start`` command, and it
learns the results from the ``events`` topic, not from the controller's insides.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.app import Controller
from controller.bus.login import make_bus
from controller.cli.render import Progress
from controller.clock import Clock
from controller.config import StationConfig
from controller.console import OperatorClient
from controller.contract import Event, SwapFinished, SwapRecord
from controller.embedded_broker import EmbeddedBroker
from controller.errors import SwapstationError
from simulator.app import Simulator

log = logging.getLogger(__name__)


class DemoError(SwapstationError):
    pass


@dataclass
class DemoResult:
    station: str
    swaps: list[SwapRecord] = field(default_factory=list)
    inventory_ok: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.inventory_ok
            and bool(self.swaps)
            and all(r.result == "completed" and r.in_budget for r in self.swaps)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "swaps": [
                {
                    "swap_id": r.swap_id,
                    "vehicle_id": r.vehicle_id,
                    "result": r.result,
                    "duration_s": r.duration_s,
                    "budget_s": r.budget_s,
                    "in_budget": r.in_budget,
                    "phases": r.phases,
                    "pack_out": r.pack_out.model_dump(mode="json") if r.pack_out else None,
                    "pack_in": r.pack_in.model_dump(mode="json") if r.pack_in else None,
                    "queued_s": r.queued_s,
                    "manoeuvre_s": r.manoeuvre_s,
                    "reason": r.reason,
                }
                for r in self.swaps
            ],
            "inventory_ok": self.inventory_ok,
            "problems": self.problems,
        }


def compare_with_world(controller: Controller, world_locations: dict[str, str]) -> list[str]:
    """Where the controller's ledger and the simulated world disagree about a pack."""
    ledger = controller.ledger.in_station()
    problems = list(controller.ledger.problems())
    for pack_id in sorted(set(ledger) | set(world_locations)):
        mine, real = ledger.get(pack_id), world_locations.get(pack_id)
        if mine != real:
            problems.append(f"pack {pack_id}: controller says {mine}, world says {real}")
    return problems


async def run_demo(
    config: StationConfig,
    *,
    swaps: int,
    broker_url: str | None = None,
    progress: bool = True,
    inject: list[str] | None = None,
    scenario: Path | None = None,
) -> DemoResult:
    """Run broker (unless ``broker_url``), simulator and controller; swap ``swaps`` trucks.

    ``inject`` arms simulator faults (``DEVICE.ACTION:KIND``) and ``scenario`` loads a fault
    scenario file, before the first truck; a bad spec raises ``ConfigError`` up front. The demo
    stops at the first swap that does not complete and reports it.
    """
    clock = Clock(config.time_scale)
    result = DemoResult(station=config.station_id)
    finished: asyncio.Queue[SwapRecord] = asyncio.Queue()
    show = Progress(config.swap.budget_s, sys.stdout if progress else sys.stderr)

    def on_event(event: Event) -> None:
        if progress:
            show(event)
        if isinstance(event, SwapFinished):
            finished.put_nowait(event.record)

    async with AsyncExitStack() as stack:
        url = broker_url if broker_url is not None else await _embedded_broker(stack)
        sim = Simulator(config, url=url, clock=clock)
        for spec in inject or []:
            sim.inject(spec)
        if scenario is not None:
            sim.load_scenario(scenario)
        await sim.start()
        stack.push_async_callback(sim.stop)
        controller = Controller(config, url=url, clock=clock)
        await controller.start()
        stack.push_async_callback(controller.stop)
        await controller.wait_ready(15.0)
        operator = OperatorClient(
            make_bus(config, url, client_id=f"demo-op-{config.station_id}"),
            config.station_id,
            on_event=on_event,
        )
        await operator.start()
        stack.push_async_callback(operator.stop)

        reply = await operator.command("start")
        if reply is None or not reply.ok:
            raise DemoError(f"station refused start: {reply.error if reply else 'no reply'}")
        await sim.arrive(swaps)
        await _collect_swaps(result, finished, swaps, controller, config.swap.budget_s)
        await controller.outbox.flush()
        result.problems += compare_with_world(controller, dict(sim.world.locations))
        result.inventory_ok = not result.problems
    return result


async def _embedded_broker(stack: AsyncExitStack) -> str:
    """Start a broker in this process, stopped with ``stack``; its URL."""
    broker = EmbeddedBroker()
    await broker.start()
    stack.push_async_callback(broker.stop)
    return broker.url


async def _collect_swaps(
    result: DemoResult,
    finished: asyncio.Queue[SwapRecord],
    swaps: int,
    controller: Controller,
    budget_s: float,
) -> None:
    """Add each finished swap to ``result`` until ``swaps`` are in or one did not complete, then
    let the last truck drive out before the packs are counted. A demo that outruns its
    wall-clock limit says so in ``result.problems`` instead of hanging."""
    clock = controller.clock
    # Generous wall-clock limit: each truck's budget + manoeuvring, twice over, plus slack.
    per_truck = 2 * (budget_s + 60.0)
    limit_s = swaps * clock.to_real(per_truck) + 30.0
    try:
        async with asyncio.timeout(limit_s):
            while len(result.swaps) < swaps:
                record = await finished.get()
                result.swaps.append(record)
                if record.result != "completed":
                    break
            await controller.devices.wait_until(
                lambda: (bay := controller.devices.bay) is not None and bay.vehicle is None,
                clock.to_real(120.0) + 5.0,
            )
    except TimeoutError:
        result.problems.append(f"demo did not finish within {limit_s:.0f} s")
