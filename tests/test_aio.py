"""controller.aio: waiting for changes, and stopping tasks that do not want to stop."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.aio import Changes, awaiting, cancel_and_wait
from tests.waits import until

pytestmark = pytest.mark.timeout(30)


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What transitions and 3.11's wait_for did to the swap task: the first cancellation is
    lost. cancel_and_wait says where the task waits and cancels it again."""

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)  # runs on as if never cancelled

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    await cancel_and_wait(task, nag_s=0.05)
    assert task.cancelled()
    assert any(
        "stubborn did not stop" in r.getMessage() and "stubborn:" in r.getMessage()
        for r in caplog.records
    )


async def test_cancel_and_wait_leaves_the_callers_cancellation_alone() -> None:
    async def worker() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # slow cleanup: the caller is cancelled meanwhile

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(task))
    await until(lambda: task.cancelling() > 0, "cancel_and_wait cancels the worker")
    caller.cancel()  # while it waits for the worker's slow cleanup
    with pytest.raises(asyncio.CancelledError):
        await caller
    await cancel_and_wait(task)


async def test_awaiting_names_the_whole_chain() -> None:
    async def inner() -> None:
        await asyncio.sleep(3600)

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    chain = awaiting(task)
    assert chain.startswith("outer:") and "inner:" in chain and "sleep:" in chain
    await cancel_and_wait(task)


async def test_changes_wait_until() -> None:
    changes, box = Changes(), {"n": 0}

    async def bump() -> None:
        for _ in range(3):
            await asyncio.sleep(0.01)
            box["n"] += 1
            changes.notify()

    bumper = asyncio.create_task(bump())
    assert await changes.wait_until(lambda: box["n"] == 3, 5)
    assert not await changes.wait_until(lambda: box["n"] == 4, 0.05)
    await bumper
