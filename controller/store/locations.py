"""Where a pack can be, as a string, and the conservation check over a set of locations.

Forms: ``slot:<n>`` (a rack slot), ``gripper`` (the arm), ``vehicle:<id>`` (on the truck in the
bay), ``departed:<id>`` (left on that truck), ``unknown`` (recovery could not tell: explicit,
never a silent gap). Strings rather than a class keep them readable in the journal, in alarm
texts and on the wire. Typos are refused at the door (:func:`validate_location`), because a
journal that says ``slot3`` is worse than one that says nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Final

from controller.store.errors import InvalidLocation

GRIPPER: Final = "gripper"
UNKNOWN: Final = "unknown"

_ID = r"[A-Za-z0-9_.:\-]{1,64}"  # the contract's Id
_LOCATION = re.compile(rf"^(?:gripper|unknown|slot:[1-9][0-9]{{0,5}}|(?:vehicle|departed):{_ID})$")

#: Kinds of place that hold at most one pack. ``departed:<id>`` holds every pack that ever left
#: on that truck, and ``unknown`` any number.
SINGLE_OCCUPANCY_KINDS: Final = frozenset({"slot", "gripper", "vehicle"})


def slot(number: int) -> str:
    """``slot(3) == "slot:3"``."""
    return f"slot:{number}"


def vehicle(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


def departed(vehicle_id: str) -> str:
    return f"departed:{vehicle_id}"


def is_valid_location(location: str) -> bool:
    return _LOCATION.match(location) is not None


def validate_location(location: str) -> str:
    """Return ``location`` unchanged, or raise :class:`InvalidLocation`."""
    if not isinstance(location, str) or not is_valid_location(location):
        raise InvalidLocation(str(location))
    return location


def location_kind(location: str) -> str:
    """``"slot:3" -> "slot"``, ``"gripper" -> "gripper"``."""
    return location.split(":", 1)[0]


def holds_one(location: str) -> bool:
    """True if at most one pack can be at ``location`` (a slot, the gripper, a vehicle)."""
    return location_kind(location) in SINGLE_OCCUPANCY_KINDS


def _place_order(location: str) -> tuple[str, int, str]:
    """Sort ``slot:2`` before ``slot:10``."""
    kind, _, rest = location.partition(":")
    return (kind, int(rest), "") if rest.isdigit() else (kind, 0, rest)


def check_conservation(locations: Mapping[str, str]) -> list[str]:
    """Human-readable problems with ``{pack_id: location}``; empty when consistent.

    A mapping already puts every pack in exactly one place; what can still be wrong is two
    packs in a place that holds one (two packs in slot 3 means one of them is not there), and
    a location that is not a location at all. Packs at ``unknown`` are not a conservation
    problem here: they are explicit, and the caller raises the alarm that says so.
    """
    problems: list[str] = []
    by_place: dict[str, list[str]] = defaultdict(list)
    for pack_id, location in sorted(locations.items()):
        if not is_valid_location(location):
            problems.append(f"pack {pack_id} has an invalid location {location!r}")
        elif holds_one(location):
            by_place[location].append(pack_id)
    for place, packs in sorted(by_place.items(), key=lambda item: _place_order(item[0])):
        if len(packs) > 1:
            problems.append(f"{place} holds {len(packs)} packs: {', '.join(packs)}")
    return problems
