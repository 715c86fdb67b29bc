"""Waiting for a condition in a test, instead of sleeping and hoping it has happened.

A test that sleeps a fixed time for "X has happened by now" fails on a loaded machine and wastes
time on a quiet one. :func:`until` polls the condition (cheaply: 10 ms) and fails the test,
naming what it waited for, only when the condition still does not hold at the timeout. Sleeps
that remain in the suite measure "nothing happens during this time" and say so in a comment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

POLL_S = 0.01


async def holds_within(predicate: Callable[[], object], timeout_s: float) -> bool:
    """True as soon as ``predicate()`` holds; False if it still does not after ``timeout_s``
    (real seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(POLL_S)
    return bool(predicate())


async def until(predicate: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail the test with ``what`` if it does not in time."""
    assert await holds_within(predicate, timeout_s), f"timed out after {timeout_s:g} s: {what}"
