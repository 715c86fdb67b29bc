"""Small asyncio pieces used across the controller and its operator tools."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Changes:
    """Lets tasks wait until a condition holds, re-checked after every :meth:`notify`.

    Cheaper and simpler than an ``asyncio.Condition`` for "something changed, look again":
    ``notify`` is synchronous, so it can be called from bus handlers and state callbacks.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiter; later waiters wait for the next change."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        """Wait for the next change."""
        await self._event.wait()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait (real seconds) until ``predicate()`` holds; False if it still does not."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    await self._event.wait()
        except TimeoutError:
            return predicate()
        return True


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, nag_s: float = 5.0) -> None:
    """Cancel ``task`` (unless it is the caller or done) and wait until it has stopped.

    A task still running ``nag_s`` seconds after its cancellation lost it somewhere (a library
    that catches ``CancelledError``, as transitions and 3.11's ``wait_for`` can): it is logged
    with where it waits, and cancelled again, rather than hanging a halt or a shutdown for ever.
    """
    if task is None or task is asyncio.current_task() or task.done():
        return
    task.cancel()
    while not (await asyncio.wait([task], timeout=nag_s))[0]:
        log.warning(
            "task %s did not stop %g s after its cancellation; cancelling again. It waits in %s",
            task.get_name(),
            nag_s,
            awaiting(task),
        )
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits, as the whole chain of coroutines ("f:12 -> g:40 -> wait:213").

    ``Task.get_stack`` shows only the outermost frame; this follows ``cr_await``, which is what
    one needs to tell why a task will not stop.
    """
    out: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return " -> ".join(out) or repr(task.get_coro())
