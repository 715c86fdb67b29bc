"""Request/reply by id: one small registry of what is waiting for which id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

R = TypeVar("R")


class PendingRequests(Generic[R]):
    """Routes replies to whoever waits on their id.

    A reply for an id nobody waits for is reported (``deliver`` returns ``False``) so the caller
    can raise an error event, and is otherwise dropped: it changes nothing.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Queue[R]] = {}

    @contextmanager
    def open(self, request_id: str) -> Iterator[asyncio.Queue[R]]:
        """Wait for replies to ``request_id`` while inside the block."""
        if request_id in self._waiting:
            raise ValueError(f"request id {request_id!r} is already pending")
        queue: asyncio.Queue[R] = asyncio.Queue()
        self._waiting[request_id] = queue
        try:
            yield queue
        finally:
            del self._waiting[request_id]

    def deliver(self, request_id: str, reply: R) -> bool:
        queue = self._waiting.get(request_id)
        if queue is None:
            return False
        queue.put_nowait(reply)
        return True

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)
