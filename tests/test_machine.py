"""The mode and phase machines keep a task's cancellation (transitions would swallow it)."""

from __future__ import annotations

import asyncio

import pytest

from controller.contract import Mode, Phase
from controller.station.machine import ModeMachine, PhaseMachine

pytestmark = pytest.mark.timeout(60)


async def _cancel_at_every_point(run: object, steps: int) -> tuple[int, int]:
    """Cancel ``run()`` after 0..steps-1 loop turns; count the cancellations that were lost."""
    lost = cancelled = 0
    for delay in range(steps):
        task = asyncio.create_task(run())  # type: ignore[operator]
        for _ in range(delay):
            await asyncio.sleep(0)
        if not task.cancel():
            continue  # already finished: nothing to lose
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
        else:
            lost += 1
    return lost, cancelled


async def test_a_cancelled_phase_change_cancels_the_task() -> None:
    """The swap task is cancelled by halts and shutdown; a cancellation that lands inside a
    ``next_phase`` trigger used to be swallowed, and the swap went on (a hung shutdown in CI)."""

    async def swap_phases() -> None:
        phases = PhaseMachine(lambda new, old: None)
        for phase in list(Phase)[1:]:
            await phases.advance(phase)
        await phases.end_swap()

    lost, cancelled = await _cancel_at_every_point(swap_phases, 60)
    assert lost == 0, f"{lost} cancellations were swallowed by the phase machine"
    assert cancelled > 10  # the cancellations did land inside the triggers


async def test_a_cancelled_mode_change_cancels_the_task() -> None:
    async def modes() -> None:
        machine = ModeMachine(lambda new, old: None)
        for trigger in ("start", "hold", "resume", "abort", "finish_abort", "clear", "reset"):
            assert await machine.fire(trigger)
        assert machine.mode is Mode.idle

    lost, cancelled = await _cancel_at_every_point(modes, 40)
    assert lost == 0, f"{lost} cancellations were swallowed by the mode machine"
    assert cancelled > 5
