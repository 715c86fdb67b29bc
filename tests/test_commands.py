"""The operator commands' facts have one owner each: the alarm book records its own
acknowledgements and clearings."""

from __future__ import annotations

import pytest

from controller.clock import Clock
from controller.contract import Severity
from controller.station.alarms import AlarmBook
from controller.store import Store

pytestmark = pytest.mark.timeout(60)


# ---- the alarm book owns its records -------------------------------------------------------
def test_the_alarm_book_records_its_own_acknowledgements_and_clearings() -> None:
    raised: list[str] = []
    changes: list[None] = []
    with Store.open(None) as store:
        book = AlarmBook(
            Clock(),
            lambda alarm: raised.append(alarm.id),
            journal=store,
            on_change=lambda: changes.append(None),
        )
        first = book.raise_("door_fault", Severity.error, "door stuck")
        second = book.raise_("estop", Severity.critical, "e-stop")
        assert raised == [first.id, second.id]
        assert [a.id for a in store.active_alarms()] == [first.id, second.id]
        assert book.acknowledge(first.id, by="li-wei") and not book.acknowledge("A99", by=None)
        assert book.clear_acknowledged(keep=frozenset({"estop"})) == [first.id]
        assert [a.id for a in store.active_alarms()] == [second.id]
        [record] = [r for r in store.alarm_history() if r.info.id == first.id]
        assert record.acknowledged_by == "li-wei" and record.cleared_at is not None
        assert len(changes) == 2  # the acknowledgement and the reset
