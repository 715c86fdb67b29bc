"""Shared pieces of every payload: the envelope (schema version and timestamp), packs, alarms."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1

#: Largest payload any peer must accept. Larger payloads are refused with an error event.
MAX_PAYLOAD_BYTES: Final = 64 * 1024

#: Deepest JSON nesting accepted (our own payloads nest 4 deep at most).
MAX_JSON_DEPTH: Final = 32

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Soc = Annotated[float, Field(ge=0.0, le=1.0, description="State of charge, 0..1")]


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


class Message(BaseModel):
    """Envelope of every JSON payload: schema version ``v`` and timestamp ``ts``.

    Unknown fields are refused (``extra="forbid"``): a peer speaking another schema version gets
    a clear error instead of being half-understood.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION, description="Schema version")
    ts: AwareDatetime = Field(
        default_factory=utcnow, description="When the sender made the message (with timezone)"
    )


class Part(BaseModel):
    """A nested value object (no envelope of its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PackInfo(Part):
    """A battery pack as its BMS or the rack reports it."""

    id: Id
    type: Id = Field(description="Pack type, e.g. HT-282")
    soc: Soc
    health: float = Field(default=1.0, ge=0.0, le=1.0, description="State of health, 0..1")
    temperature_c: float = Field(default=25.0, ge=-40.0, le=120.0)
    capacity_kwh: float = Field(gt=0.0, le=2000.0)
    cycles: int = Field(default=0, ge=0, description="Full charge cycles so far (wear levelling)")


class Severity(StrEnum):
    warning = "warning"
    error = "error"
    critical = "critical"
    fatal = "fatal"


class AlarmInfo(Part):
    """An alarm as operators see it: what, how bad, and what to do about it."""

    id: Id
    code: str = Field(min_length=1, max_length=64)
    severity: Severity
    text: str = Field(max_length=1000)
    hint: str = Field(default="", max_length=1000)
    raised_at: AwareDatetime
    acknowledged: bool = False
    active: bool = Field(
        default=True,
        description="Its condition holds. False with acknowledged false: it returned to normal "
        "before anyone acknowledged it (ISA-18.2 'RTN unacknowledged'); it stays listed until "
        "acknowledged",
    )
    cleared_at: AwareDatetime | None = Field(
        default=None, description="When its condition returned to normal"
    )
    shelved_until: AwareDatetime | None = Field(
        default=None,
        description="Shelved (hidden from the annunciation, listed apart) until then; it comes "
        "back by itself at that time",
    )
    shelved_by: str | None = Field(default=None, max_length=64, description="Who shelved it")
    shelve_reason: str | None = Field(default=None, max_length=500, description="Why")
