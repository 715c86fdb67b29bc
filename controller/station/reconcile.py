"""``reconcile``: the documented way out when the journal contradicts the sensors.

At start-up the controller never overwrites a confirmed place the sensors contradict (the
journal is the truth until an operator says otherwise): it raises ``inventory_mismatch`` and
``start`` is refused. This is how the operator says otherwise. Without ``adopt`` it is a
preview: every pack the journal and the sensors disagree about, and what reconcile would do.
With ``adopt`` (``all``, or the pack ids the preview listed) it journals the changes, each with
the operator's name in the location log:

- a pack the sensors report at exactly one place gets that place (``adopt``), including a pack
  the journal had gone with a truck, or did not know;
- a pack the journal has in a slot or the gripper that the sensors see nowhere, and that is not
  on the truck in the bay, is recorded as gone from the station (``departed:unknown``): it is
  not here, and the operator confirmed it (``gone``);
- a pack reported at several places, a pack whose place is ``unknown`` that no sensor places
  (it may be on the floor: never written off), or one whose new place another pack still holds
  in the journal, is left as it is and named (``left``): inspect it, then ``set_location``.

Then the alarms whose condition is gone return to normal, and the inventory is republished.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from controller.contract import ArmState, PackInfo, RackState, VehicleState
from controller.contract.results import ReconcileChange, ReconcileReport
from controller.inventory import GRIPPER, UNKNOWN, PackLedger, slot_location, vehicle_location
from controller.station.alarms import AlarmBook
from controller.store.locations import departed, holds_one

log = logging.getLogger(__name__)

#: Where a pack the sensors see nowhere goes: gone from the station, nobody knows on what.
GONE = departed("unknown")

Sensors = tuple[RackState | None, ArmState | None, VehicleState | None]


def _reported(sensors: Sensors) -> dict[str, list[tuple[str, PackInfo]]]:
    """Every pack the sensors report, with each place (and the pack's data) they report it at."""
    rack, arm, vehicle = sensors
    out: dict[str, list[tuple[str, PackInfo]]] = {}
    for s in rack.slots if rack is not None else []:
        if s.pack is not None:
            out.setdefault(s.pack.id, []).append((slot_location(s.slot), s.pack))
    if arm is not None and arm.holding is not None:
        out.setdefault(arm.holding.id, []).append((GRIPPER, arm.holding))
    if vehicle is not None and vehicle.pack is not None and vehicle.vehicle_id:
        out.setdefault(vehicle.pack.id, []).append(
            (vehicle_location(vehicle.vehicle_id), vehicle.pack)
        )
    return out


def plan(
    ledger: PackLedger, sensors: Sensors, chosen: frozenset[str] | None = None
) -> list[ReconcileChange]:
    """What reconcile does, pack by pack, making only the changes of ``chosen`` (None: all)."""
    reported = _reported(sensors)
    in_station = ledger.in_station()
    changes: list[ReconcileChange] = []
    for pack_id, loc in sorted(in_station.items()):
        places = [p for p, _ in reported.get(pack_id, [])]
        if len(places) > 1:
            why = f"the sensors report it at {len(places)} places"
            changes.append(
                ReconcileChange(pack_id=pack_id, ledger=loc, sensors=places, action="left", why=why)
            )
        elif places and places[0] != loc:
            changes.append(
                ReconcileChange(
                    pack_id=pack_id, ledger=loc, sensors=places, action="adopt", to=places[0]
                )
            )
        elif not places and loc == UNKNOWN:
            why = "no sensor places it: inspect, then set_location"
            changes.append(
                ReconcileChange(pack_id=pack_id, ledger=loc, sensors=[], action="left", why=why)
            )
        elif not places and not loc.startswith("vehicle:"):  # a truck's pack is read later
            why = "the sensors see it nowhere and it is not on the truck in the bay"
            changes.append(
                ReconcileChange(
                    pack_id=pack_id, ledger=loc, sensors=[], action="gone", to=GONE, why=why
                )
            )
    for pack_id, seen in sorted(reported.items()):
        places = [p for p, _ in seen]
        if pack_id in in_station or all(p.startswith("vehicle:") for p in places):
            continue  # agreed on above, or a truck's own pack (the ledger learns it at identify)
        was = ledger.locations.get(pack_id)
        if len(places) > 1:
            why = f"the sensors report it at {len(places)} places"
            changes.append(
                ReconcileChange(pack_id=pack_id, ledger=was, sensors=places, action="left", why=why)
            )
        else:
            why = "the journal does not know it" if was is None else "the journal had it gone"
            changes.append(
                ReconcileChange(
                    pack_id=pack_id,
                    ledger=was,
                    sensors=places,
                    action="adopt",
                    to=places[0],
                    why=why,
                )
            )
    if chosen is not None:
        changes = [
            c if c.pack_id in chosen or c.action == "left" else _left(c, "not chosen in adopt")
            for c in changes
        ]
    return _without_collisions(ledger, changes)


def _left(change: ReconcileChange, why: str) -> ReconcileChange:
    return change.model_copy(update={"action": "left", "to": None, "why": why})


def _without_collisions(
    ledger: PackLedger, changes: list[ReconcileChange]
) -> list[ReconcileChange]:
    """Leave every change whose new place another pack would still hold afterwards (a pack
    that is left keeps its place), until none collides: reconcile never puts two packs in one
    place."""
    while True:
        after = dict(ledger.locations)
        after.update({c.pack_id: c.to for c in changes if c.to is not None})
        held = Counter(loc for loc in after.values() if holds_one(loc))
        clash = next((c for c in changes if c.to is not None and held[c.to] > 1), None)
        if clash is None:
            return changes
        others = sorted(p for p, loc in after.items() if loc == clash.to and p != clash.pack_id)
        why = f"{clash.to} would still hold {', '.join(others)} in the journal"
        changes = [_left(c, why) if c is clash else c for c in changes]


def report(
    ledger: PackLedger, sensors: Sensors, *, chosen: frozenset[str] | None = None
) -> ReconcileReport:
    """The preview: nothing changes."""
    changes = plan(ledger, sensors, chosen)
    return ReconcileReport(
        applied=False, changes=changes, consistent_after=all(c.action != "left" for c in changes)
    )


def apply(
    ledger: PackLedger,
    sensors: Sensors,
    alarms: AlarmBook,
    *,
    by: str | None,
    chosen: frozenset[str] | None,
    inventory_changed: Callable[[], None],
) -> ReconcileReport:
    """Journal the changes (each with who did it), then return to normal the alarms whose
    condition is gone, and republish the inventory."""
    changes = plan(ledger, sensors, chosen)
    who = by or "an operator (no broker user)"
    reported = _reported(sensors)
    for c in changes:
        if c.to is None:
            continue
        if c.action == "gone":
            reason = f"reconcile by {who}: {c.why}"
        else:
            reason = f"reconcile by {who}: the sensors report it at {c.to}"
            ledger.packs[c.pack_id] = reported[c.pack_id][0][1]
        ledger.set_location(c.pack_id, c.to, reason)
        log.info("reconcile by %s: %s %s -> %s", who, c.pack_id, c.ledger, c.to)
    rack = sensors[0]
    if rack is not None:
        ledger.refresh_rack(rack)
    if not ledger.disagreements(*sensors):
        alarms.clear_where("inventory_mismatch", lambda _: True)
    if not any(loc == UNKNOWN for loc in ledger.locations.values()):
        alarms.clear_where("pack_location_unknown", lambda _: True)
    inventory_changed()
    return ReconcileReport(
        applied=True,
        by=by,
        changes=changes,
        consistent_after=not ledger.disagreements(*sensors) and not ledger.problems(),
    )
