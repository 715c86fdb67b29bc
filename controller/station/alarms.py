"""Alarms: what went wrong, how bad, what to do. Raised, acknowledged, cleared.

An alarm's severity and hint come from its code's row in :data:`controller.error_table.ALARMS`,
never from whoever raises it, so the same code always means the same thing to an operator.

The book is the one owner of the station's alarms: every change it makes (raised,
acknowledged and by whom, cleared) it also writes to the journal itself, so no caller can
change an alarm and forget the record, or record a change the book did not make.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from controller.clock import Clock
from controller.contract import AlarmInfo
from controller.error_table import ALARMS, hint


class AlarmJournal(Protocol):
    """Where alarms are recorded (the store); the book writes every change there."""

    def raise_alarm(self, alarm: AlarmInfo) -> bool: ...
    def ack_alarm(self, alarm_id: str, by: str | None, at: datetime) -> bool: ...
    def clear_alarm(self, alarm_id: str, at: datetime) -> bool: ...


class AlarmBook:
    """The station's alarms.

    Args:
        on_raise: publishes each new alarm as an event (after it is recorded).
        journal: records every raise, acknowledgement and clearing.
        on_change: told after an acknowledgement or clearing (the alarm list changed).
    """

    def __init__(
        self,
        clock: Clock,
        on_raise: Callable[[AlarmInfo], None],
        *,
        journal: AlarmJournal,
        on_change: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._on_raise = on_raise
        self._journal = journal
        self._on_change = on_change
        self._seq = itertools.count(1)
        self.alarms: dict[str, AlarmInfo] = {}

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
        """Acknowledge an active alarm, recording who (``by``: the broker user that sent the
        ``ack``; None where no broker vouches for a name). False if no such alarm is active."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None or not alarm.active:
            return False
        self.alarms[alarm_id] = alarm.model_copy(update={"acknowledged": True})
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
        """Clear active alarms of ``code`` whose condition is gone (acknowledged or not: they
        describe a state that no longer holds); returns their ids."""
        gone = [a.id for a in self.alarms.values() if a.active and a.code == code and condition(a)]
        for alarm_id in gone:
            del self.alarms[alarm_id]
            self._journal.clear_alarm(alarm_id, self._clock.now())
        if gone:
            self._on_change()
        return gone

    def load(self, active: list[AlarmInfo], newest_id: str | None) -> None:
        """After a restart: the alarms still active in the store, without raising them again,
        and ids that continue after the newest ever raised (ids stay unique across restarts)."""
        for alarm in active:
            self.alarms[alarm.id] = alarm
        if newest_id and newest_id[1:].isdigit():
            self._seq = itertools.count(int(newest_id[1:]) + 1)

    def active(self) -> list[AlarmInfo]:
        return [a for a in self.alarms.values() if a.active]
