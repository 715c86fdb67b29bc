"""What a command that says more than ok returns, in its reply's ``result``.

Two commands answer with data: ``reconcile`` (what it would change, or changed, between the
journal and the sensors) and ``alarm_history`` (alarm occurrences in a time range). A reply is
one MQTT message, so each result fits one payload (:data:`MAX_RESULT_BYTES`); the alarm history
says when it was cut short (``truncated``) and an operator narrows the range.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import AwareDatetime, Field

from controller.contract.common import AlarmInfo, Part

#: A result's JSON stays under this, leaving room for the reply around it (64 KiB payloads).
MAX_RESULT_BYTES: Final = 56 * 1024

ReconcileAction = Literal["adopt", "gone", "left"]


class ReconcileChange(Part):
    """One pack whose place the journal and the sensors disagree about, and what reconcile
    does about it: ``adopt`` the one place the sensors report, record it ``gone`` (the
    sensors see it nowhere and it is not on the truck in the bay: ``departed:unknown``), or
    leave it (``left``: ambiguous, or its place is not free; ``why`` says, and the operator
    inspects and uses set_location)."""

    pack_id: str
    ledger: str | None = Field(description="Where the journal has it (null: it does not know it)")
    sensors: list[str] = Field(description="Every place the sensors report it at")
    action: ReconcileAction
    to: str | None = Field(default=None, description="Its place after reconcile (not for left)")
    why: str = ""


class ReconcileReport(Part):
    """``reconcile``'s result: the preview (``applied`` false) or what was journaled."""

    applied: bool
    by: str | None = Field(default=None, description="Who applied it (the broker user)")
    changes: list[ReconcileChange] = Field(default_factory=list)
    consistent_after: bool = Field(
        description="The journal agrees with the sensors once these changes are made"
    )


class AlarmShelf(Part):
    """One shelving of an alarm occurrence: who, why, until when, and how it ended."""

    shelved_at: AwareDatetime
    shelved_by: str | None
    reason: str
    until: AwareDatetime
    unshelved_at: AwareDatetime | None = None
    unshelved_by: str | None = Field(
        default=None, description="Who unshelved it (null: the shelf time ended, or no user)"
    )


class AlarmOccurrence(Part):
    """One occurrence of an alarm with its whole life: raised, acknowledged (by whom),
    shelved, returned to normal."""

    alarm: AlarmInfo
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    cleared_at: AwareDatetime | None = None
    shelves: list[AlarmShelf] = Field(default_factory=list)


class AlarmHistory(Part):
    """``alarm_history``'s result: occurrences on the alarm list at some time in
    [since, until), oldest first."""

    since: AwareDatetime
    until: AwareDatetime
    alarms: list[AlarmOccurrence]
    truncated: bool = Field(
        default=False, description="More occurred than one reply holds: the newest are left out"
    )
