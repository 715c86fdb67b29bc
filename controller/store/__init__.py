"""SQLite persistence: the journal of physical moves, swaps, alarms and the command log.

The only package that touches SQL (an import-linter contract enforces it), and the source of
truth for where packs are.
"""

from controller.store.alarms import AlarmRecord
from controller.store.commands import CommandRecord
from controller.store.errors import (
    InvalidLocation,
    MoveEnded,
    MoveRefused,
    NotFound,
    StoreBusy,
    StoreError,
    SwapConflict,
)
from controller.store.journal import Move, MoveStatus
from controller.store.location_log import LocationChange
from controller.store.locations import (
    GRIPPER,
    UNKNOWN,
    check_conservation,
    departed,
    holds_one,
    is_valid_location,
    location_kind,
    slot,
    validate_location,
    vehicle,
)
from controller.store.schema import SCHEMA_VERSION
from controller.store.store import Store
from controller.store.swaps import SwapResult

__all__ = [
    "GRIPPER",
    "SCHEMA_VERSION",
    "UNKNOWN",
    "AlarmRecord",
    "CommandRecord",
    "InvalidLocation",
    "LocationChange",
    "Move",
    "MoveEnded",
    "MoveRefused",
    "MoveStatus",
    "NotFound",
    "Store",
    "StoreBusy",
    "StoreError",
    "SwapConflict",
    "SwapResult",
    "check_conservation",
    "departed",
    "holds_one",
    "is_valid_location",
    "location_kind",
    "slot",
    "validate_location",
    "vehicle",
]
