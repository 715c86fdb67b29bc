"""Alarms: what went wrong, how bad, what to do. Raised, acknowledged, shelved, cleared.

An alarm's severity and hint come from its code's row in :data:`controller.error_table.ALARMS`,
never from whoever raises it, so the same code always means the same thing to an operator.

The book is the one owner of the station's alarms: every change it makes (raised,
acknowledged and by whom, shelved and unshelved and by whom, cleared) it also writes to the
journal itself, so no caller can change an alarm and forget the record, or record a change the
book did not make.

The states are ISA-18.2's (IEC 62682): *active unacknowledged*, *active acknowledged*,
*returned to normal unacknowledged* (the condition went away before anyone acknowledged it: it
stays on the list, ``active`` false, until acknowledged) and *normal* (off the list). Any alarm
on the list may be *shelved* for a limited time with a reason: it is then published apart from
the annunciated list and comes back by itself when the shelf time ends (a timer task), or at
``unshelve``. A reset still retires the acknowledged alarms of a halt (``clear_acknowledged``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol

from controller.clock import Clock
from controller.contract import AlarmInfo
from controller.contract.results import MAX_RESULT_BYTES, AlarmHistory, AlarmOccurrence
from controller.error_table import ALARMS, hint


class AlarmJournal(Protocol):
    """Where alarms are recorded (the store); the book writes every change there."""

    def raise_alarm(self, alarm: AlarmInfo) -> bool: ...
    def ack_alarm(self, alarm_id: str, by: str | None, at: datetime) -> bool: ...
    def clear_alarm(self, alarm_id: str, at: datetime) -> bool: ...
    def shelve_alarm(
        self, alarm_id: str, until: datetime, by: str | None, reason: str, at: datetime
    ) -> bool: ...
    def unshelve_alarm(self, alarm_id: str, by: str | None, at: datetime) -> bool: ...


class AlarmBook:
    """The station's alarms.

    Args:
        on_raise: publishes each new alarm as an event (after it is recorded).
        journal: records every raise, acknowledgement and clearing.
        on_change: told after an acknowledgement, shelving or clearing (the list changed).
        spawn: runs the shelf timer as a task its owner stops on shutdown.
    """

    def __init__(
        self,
        clock: Clock,
        on_raise: Callable[[AlarmInfo], None],
        *,
        journal: AlarmJournal,
        on_change: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]] | None = None,
    ) -> None:
        self._clock = clock
        self._on_raise = on_raise
        self._journal = journal
        self._on_change = on_change
        self._spawn = spawn
        self._seq = itertools.count(1)
        #: The alarm list: active alarms, and those that returned to normal unacknowledged.
        self.alarms: dict[str, AlarmInfo] = {}
        self._shelves_changed = asyncio.Event()
        self._timer: asyncio.Task[Any] | None = None

    def raise_(self, code: str, text: str, fields: dict[str, str] | None = None) -> AlarmInfo:
        """Raise alarm ``code`` (a key of ``ALARMS``) saying ``text``; ``fields`` fill in the
        hint's names (device, action...)."""
        alarm = AlarmInfo(
            id=f"A{next(self._seq):05d}",
            code=code,
            severity=ALARMS[code].severity,
            text=text[:1000],
            hint=hint(code, fields)[:1000],
            raised_at=self._clock.now(),
        )
        self.alarms[alarm.id] = alarm
        self._journal.raise_alarm(alarm)
        self._on_raise(alarm)
        return alarm

    def acknowledge(self, alarm_id: str, by: str | None) -> bool:
        """Acknowledge an alarm on the list, recording who (``by``: the broker user that sent
        the ``ack``; None where no broker vouches for a name). One that returned to normal
        leaves the list. False if no such alarm is on the list."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            return False
        if alarm.active:
            self.alarms[alarm_id] = alarm.model_copy(update={"acknowledged": True})
        else:
            del self.alarms[alarm_id]  # returned to normal, now seen: normal
        self._journal.ack_alarm(alarm_id, by, self._clock.now())
        self._on_change()
        return True

    def clear_acknowledged(self, keep: frozenset[str] = frozenset()) -> list[str]:
        """On reset, acknowledged alarms stop being active, except those whose code is in
        ``keep`` (their condition still holds); returns the ids cleared."""
        cleared = []
        for alarm_id, alarm in list(self.alarms.items()):
            if alarm.acknowledged and alarm.active and alarm.code not in keep:
                # the journal keeps its history; memory keeps the active ones only (bounded)
                del self.alarms[alarm_id]
                self._journal.clear_alarm(alarm_id, self._clock.now())
                cleared.append(alarm_id)
        self._on_change()
        return cleared

    def clear_where(self, code: str, condition: Callable[[AlarmInfo], bool]) -> list[str]:
        """Active alarms of ``code`` whose condition is gone (``condition`` says which) return
        to normal: an acknowledged one leaves the list, an unacknowledged one stays on it
        (``active`` false) until acknowledged. Returns their ids."""
        gone = [a.id for a in self.alarms.values() if a.active and a.code == code and condition(a)]
        now = self._clock.now()
        for alarm_id in gone:
            alarm = self.alarms.pop(alarm_id)
            if not alarm.acknowledged:
                self.alarms[alarm_id] = alarm.model_copy(
                    update={"active": False, "cleared_at": now}
                )
            self._journal.clear_alarm(alarm_id, now)
        if gone:
            self._on_change()
        return gone

    # ---- shelving ------------------------------------------------------------------------
    def shelve(self, alarm_id: str, minutes: float, reason: str, *, by: str | None) -> str | None:
        """Shelve an alarm on the list for ``minutes`` (again: a new shelf replaces the old
        one); journaled with who and why. Returns why not, or None."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            listed = ", ".join(self.alarms) or "none"
            return f"no alarm {alarm_id!r} on the list (listed: {listed})"
        now = self._clock.now()
        until = now + timedelta(minutes=minutes)
        self._journal.shelve_alarm(alarm_id, until, by, reason, now)
        self.alarms[alarm_id] = alarm.model_copy(
            update={"shelved_until": until, "shelved_by": by, "shelve_reason": reason}
        )
        self._shelf_changed()
        return None

    def unshelve(self, alarm_id: str, *, by: str | None) -> bool:
        """Put a shelved alarm back on the annunciation (``by`` None: its time ended)."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None or alarm.shelved_until is None:
            return False
        self._journal.unshelve_alarm(alarm_id, by, self._clock.now())
        self.alarms[alarm_id] = alarm.model_copy(
            update={"shelved_until": None, "shelved_by": None, "shelve_reason": None}
        )
        self._shelf_changed()
        return True

    def unshelve_expired(self) -> list[str]:
        """Unshelve every alarm whose shelf time has ended; returns their ids."""
        now = self._clock.now()
        due = [a.id for a in self.shelved() if a.shelved_until and a.shelved_until <= now]
        for alarm_id in due:
            self.unshelve(alarm_id, by=None)
        return due

    def _shelf_changed(self) -> None:
        self._on_change()
        self._shelves_changed.set()
        idle = self._timer is None or self._timer.done()
        if self._spawn is not None and idle and self.shelved():
            self._timer = self._spawn(self._run_timer())

    async def _run_timer(self) -> None:
        """Until no alarm is shelved: sleep until the next shelf ends (or shelves change)."""
        while ends := [a.shelved_until for a in self.shelved() if a.shelved_until]:
            self._shelves_changed.clear()
            wait_s = (min(ends) - self._clock.now()).total_seconds()
            if wait_s > 0:
                try:
                    await asyncio.wait_for(
                        self._shelves_changed.wait(), self._clock.to_real(wait_s) + 0.001
                    )
                    continue
                except TimeoutError:
                    pass
            self.unshelve_expired()

    def load(self, listed: list[AlarmInfo], newest_id: str | None) -> None:
        """After a restart: the alarms still on the list in the store (active, or returned to
        normal unacknowledged), without raising them again, and ids that continue after the
        newest ever raised (ids stay unique across restarts). Their shelves run on."""
        for alarm in listed:
            self.alarms[alarm.id] = alarm
        if newest_id and newest_id[1:].isdigit():
            self._seq = itertools.count(int(newest_id[1:]) + 1)
        if any(a.shelved_until for a in listed):
            self._shelf_changed()

    def active(self) -> list[AlarmInfo]:
        """Alarms whose condition holds (shelved or not)."""
        return [a for a in self.alarms.values() if a.active]

    def listed(self) -> list[AlarmInfo]:
        """The whole alarm list, shelved alarms included."""
        return list(self.alarms.values())

    def annunciated(self) -> list[AlarmInfo]:
        """The list an operator is shown: every alarm on it but the shelved ones."""
        return [a for a in self.alarms.values() if a.shelved_until is None]

    def shelved(self) -> list[AlarmInfo]:
        return [a for a in self.alarms.values() if a.shelved_until is not None]


class AlarmHistoryJournal(Protocol):
    def alarm_occurrences(
        self, since: datetime, until: datetime, limit: int
    ) -> list[AlarmOccurrence]: ...


def alarm_history(
    journal: AlarmHistoryJournal, since: datetime, until: datetime, *, limit: int
) -> AlarmHistory:
    """The alarm occurrences on the list at some time in [since, until), oldest first, as one
    reply holds them (the newest left out, and ``truncated`` said, when they do not fit)."""
    found = journal.alarm_occurrences(since, until, limit + 1)
    truncated = len(found) > limit
    found = found[:limit]
    while True:
        history = AlarmHistory(since=since, until=until, alarms=found, truncated=truncated)
        if len(json.dumps(history.model_dump(mode="json"))) <= MAX_RESULT_BYTES or not found:
            return history
        found, truncated = found[: len(found) * 3 // 4], True
