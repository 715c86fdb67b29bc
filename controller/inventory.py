"""Where every pack is, as the controller knows it, and which pack to use next.

The ledger is moved only by *confirmed* moves (a driver's ``done``, cross-checked with the
drivers' sensors), so it never guesses. Every move goes through the journal in the store: the
intent is written (and fsynced) before the motion is commanded, the confirmation after, so
after a crash the journal says where every pack is, or which pack's place is uncertain. Driver
reports refresh the packs' state of charge and are compared with the ledger to find
disagreements. Locations are the journal's vocabulary (:mod:`controller.store.locations`):
``slot:<n>``, ``gripper``, ``vehicle:<id>``, ``departed:<id>`` (left on a truck), ``unknown``.
"""

from __future__ import annotations

from collections import Counter

from controller.clock import Clock
from controller.config import RackConfig
from controller.contract import ArmState, Inventory, PackInfo, RackState, SlotInfo, VehicleState
from controller.store import Store
from controller.store.locations import GRIPPER, UNKNOWN, departed, location_kind
from controller.store.locations import slot as slot_location
from controller.store.locations import vehicle as vehicle_location

__all__ = ["GRIPPER", "UNKNOWN", "PackLedger", "slot_location", "vehicle_location"]


class PackLedger:
    """Every pack the station has seen, and its one location."""

    def __init__(self, rack: RackConfig, *, journal: Store, clock: Clock) -> None:
        self._rack = rack
        self.journal = journal
        self._clock = clock
        self._slot_cfg = {s.slot: s for s in rack.slots}
        self.packs: dict[str, PackInfo] = {}
        self.locations: dict[str, str] = {}
        self._docked: dict[int, bool] = {}
        self._charging_kw: dict[int, float] = {}
        self._out_of_service: set[int] = set()
        self.seeded = False

    # ---- seeding and refreshing from driver reports ----------------------------------------
    def seed(self, rack: RackState, arm: ArmState | None, vehicle: VehicleState | None) -> None:
        """Learn the packs from the drivers' first reports.

        On a fresh journal the drivers' word is taken for where packs are. On a journal that
        already knows packs (a restart), the journal stays the truth: the reports only supply
        the packs' data, and :meth:`disagreements` says where they differ.
        """
        reported: dict[str, tuple[PackInfo, str]] = {}
        for s in rack.slots:
            if s.pack is not None:
                reported[s.pack.id] = (s.pack, slot_location(s.slot))
        if arm is not None and arm.holding is not None:
            reported[arm.holding.id] = (arm.holding, GRIPPER)
        if vehicle is not None and vehicle.pack is not None and vehicle.vehicle_id:
            reported[vehicle.pack.id] = (vehicle.pack, vehicle_location(vehicle.vehicle_id))
        known = self.journal.pack_locations()
        if not known:
            self.journal.seed_packs({p: loc for p, (_, loc) in reported.items()}, self._clock.now())
            known = self.journal.pack_locations()
        self.locations = dict(known)
        self.packs = {p: info for p, (info, _) in reported.items()}
        for pack_id in self.locations:
            if pack_id not in self.packs:
                self.packs[pack_id] = _placeholder(pack_id)
        self.refresh_rack(rack)
        self.seeded = True

    def load(self, locations: dict[str, str]) -> None:
        """Take the journal's locations (start-up); pack data follows from driver reports."""
        self.locations = dict(locations)
        for pack_id in self.locations:
            self.packs.setdefault(pack_id, _placeholder(pack_id))

    def refresh_rack(self, rack: RackState) -> None:
        """Update state of charge and charger data of packs the ledger has in slots."""
        for s in rack.slots:
            self._docked[s.slot] = s.docked
            self._charging_kw[s.slot] = s.charging_kw
            if s.out_of_service:
                self._out_of_service.add(s.slot)
            else:
                self._out_of_service.discard(s.slot)
            if s.pack is not None and self.locations.get(s.pack.id) == slot_location(s.slot):
                self.packs[s.pack.id] = s.pack

    # ---- confirmed moves, through the journal ----------------------------------------------
    def arrive(self, pack: PackInfo, vehicle_id: str) -> None:
        """A truck arrived with ``pack`` (read by the vehicle link)."""
        self.packs[pack.id] = pack
        self._set(pack.id, vehicle_location(vehicle_id), "arrived on the truck")

    def begin_move(self, pack_id: str, src: str, dst: str, *, swap_id: str | None = None) -> int:
        """Journal the intent to move a pack, before the motion is commanded."""
        where = self.locations.get(pack_id)
        if where != src:
            raise ValueError(f"pack {pack_id} is at {where}, not {src}")
        occupant = self.at(dst)
        if occupant is not None and occupant != pack_id:
            raise ValueError(f"{dst} already holds pack {occupant}")
        return self.journal.begin_move(pack_id, src, dst, swap_id=swap_id, at=self._clock.now())

    def confirm_move(self, move_id: int, pack_id: str, dst: str) -> None:
        """The move happened (driver done, sensors agree)."""
        self.journal.confirm_move(move_id, self._clock.now())
        self.locations[pack_id] = dst

    def fail_move(self, move_id: int, pack_id: str, where: str, reason: str) -> None:
        """The move did not complete; ``where`` is where the drivers now report the pack, or
        ``unknown``."""
        self.journal.fail_move(move_id, reason[:500], self._clock.now(), location=where)
        self.locations[pack_id] = where

    def set_location(self, pack_id: str, location: str, reason: str) -> None:
        """An operator's finding after inspection, or reconciliation."""
        self._set(pack_id, location, reason)

    def depart(self, vehicle_id: str) -> None:
        """The truck left: its pack is no longer in the station."""
        for pack_id, loc in list(self.locations.items()):
            if loc == vehicle_location(vehicle_id):
                self._set(pack_id, departed(vehicle_id), "left on the truck")

    def _set(self, pack_id: str, location: str, reason: str) -> None:
        self.journal.set_location(pack_id, location, reason, self._clock.now())
        self.locations[pack_id] = location
        if pack_id not in self.packs:
            self.packs[pack_id] = _placeholder(pack_id)

    # ---- queries ---------------------------------------------------------------------------
    def at(self, location: str) -> str | None:
        for pack_id, loc in self.locations.items():
            if loc == location:
                return pack_id
        return None

    def in_station(self) -> dict[str, str]:
        return {p: loc for p, loc in self.locations.items() if location_kind(loc) != "departed"}

    def choose_charged(self, pack_type: str, *, exclude: set[int] | None = None) -> int | None:
        """The slot of the best swappable pack of ``pack_type``: highest SoC, then health."""
        best: tuple[float, float, int] | None = None
        for pack_id, loc in self.locations.items():
            slot = _slot_of(loc)
            if slot is None or slot in self._out_of_service or slot in (exclude or set()):
                continue
            pack = self.packs[pack_id]
            if pack.type != pack_type or pack.soc < self._rack.swappable_soc:
                continue
            key = (pack.soc, pack.health, -slot)
            if best is None or key > best:
                best = key
        return None if best is None else -best[2]

    def choose_free(self, pack_type: str, *, exclude: set[int] | None = None) -> int | None:
        """The free slot nearest the bay (lowest number) that takes ``pack_type``."""
        occupied = {_slot_of(loc) for loc in self.locations.values()}
        for s in sorted(self._rack.slots, key=lambda s: s.slot):
            if s.slot in occupied or s.slot in self._out_of_service or s.slot in (exclude or set()):
                continue
            if pack_type in s.pack_types:
                return s.slot
        return None

    def problems(self) -> list[str]:
        """Conservation check: no location holds two packs; every slot exists."""
        out = []
        counts = Counter(loc for loc in self.in_station().values() if loc != "unknown")
        for loc, n in sorted(counts.items()):
            if n > 1:
                ids = sorted(p for p, lc in self.locations.items() if lc == loc)
                out.append(f"{loc} holds {n} packs: {', '.join(ids)}")
        for pack_id, loc in sorted(self.locations.items()):
            slot = _slot_of(loc)
            if slot is not None and slot not in self._slot_cfg:
                out.append(f"pack {pack_id} in slot {slot}, which the rack does not have")
            if loc == "unknown":
                out.append(f"pack {pack_id}: location unknown")
        return out

    def disagreements(
        self, rack: RackState | None, arm: ArmState | None, vehicle: VehicleState | None
    ) -> list[str]:
        """Where the drivers' reports differ from the ledger."""
        reported: dict[str, str] = {}
        if rack is not None:
            for s in rack.slots:
                if s.pack is not None:
                    reported[s.pack.id] = slot_location(s.slot)
        if arm is not None and arm.holding is not None:
            reported[arm.holding.id] = GRIPPER
        if vehicle is not None and vehicle.pack is not None and vehicle.vehicle_id:
            reported[vehicle.pack.id] = vehicle_location(vehicle.vehicle_id)
        out = []
        for pack_id, loc in sorted(self.in_station().items()):
            seen = reported.get(pack_id)
            if seen != loc and not (loc.startswith("vehicle:") and seen is None):
                out.append(f"pack {pack_id}: ledger says {loc}, drivers say {seen or 'nowhere'}")
        here = self.in_station()
        for pack_id, loc in sorted(reported.items()):
            # A truck's own pack is unknown to the ledger until the swap identifies it.
            if pack_id in here or loc.startswith("vehicle:"):
                continue
            if pack_id in self.locations:  # the journal has it gone with a truck
                gone = self.locations[pack_id]
                out.append(f"pack {pack_id}: drivers report it at {loc}, ledger says {gone}")
            else:
                out.append(f"pack {pack_id}: drivers report it at {loc}, ledger does not know it")
        return out

    def reported_at(
        self,
        pack_id: str,
        rack: RackState | None,
        arm: ArmState | None,
        vehicle: VehicleState | None,
    ) -> list[str]:
        """Every place the drivers' sensors report ``pack_id`` at."""
        places = []
        if rack is not None:
            places += [slot_location(s.slot) for s in rack.slots if s.pack and s.pack.id == pack_id]
        if arm is not None and arm.holding is not None and arm.holding.id == pack_id:
            places.append(GRIPPER)
        if vehicle is not None and vehicle.pack is not None and vehicle.pack.id == pack_id:
            places.append(vehicle_location(vehicle.vehicle_id or "?"))
        return places

    def sensed_at(
        self,
        pack_id: str,
        rack: RackState | None,
        arm: ArmState | None,
        vehicle: VehicleState | None,
    ) -> str:
        """The one place the sensors report ``pack_id`` at; ``unknown`` if none or several."""
        places = self.reported_at(pack_id, rack, arm, vehicle)
        return places[0] if len(places) == 1 else UNKNOWN

    def snapshot(
        self,
        station: str,
        vehicle_id: str | None,
        sensors: tuple[RackState | None, ArmState | None, VehicleState | None] | None = None,
    ) -> Inventory:
        """The inventory as published; with ``sensors`` (no swap under way: mid-swap they lead
        the ledger by a moment) it also says where the journal and the drivers disagree, so it
        never claims a consistency it does not have."""
        slots = []
        for cfg in sorted(self._rack.slots, key=lambda s: s.slot):
            pack_id = self.at(slot_location(cfg.slot))
            slots.append(
                SlotInfo(
                    slot=cfg.slot,
                    pack=self.packs[pack_id] if pack_id else None,
                    docked=self._docked.get(cfg.slot, False),
                    charger_kw=cfg.charger_kw,
                    charging_kw=self._charging_kw.get(cfg.slot, 0.0),
                    out_of_service=cfg.slot in self._out_of_service,
                )
            )
        gripper = self.at(GRIPPER)
        on_vehicle = self.at(vehicle_location(vehicle_id)) if vehicle_id else None
        problems = self.problems()
        if sensors is not None and self.seeded:
            problems += self.disagreements(*sensors)
        return Inventory(
            ts=self._clock.now(),
            station=station,
            slots=slots,
            gripper=self.packs[gripper] if gripper else None,
            vehicle=self.packs[on_vehicle] if on_vehicle else None,
            vehicle_id=vehicle_id,
            swappable_soc=self._rack.swappable_soc,
            consistent=not problems,
            problems=problems,
        )


def _placeholder(pack_id: str) -> PackInfo:
    """A pack the journal knows but no driver has described yet (type and SoC unknown)."""
    return PackInfo(id=pack_id, type="unknown", soc=0.0, capacity_kwh=1.0)


def _slot_of(location: str) -> int | None:
    if location.startswith("slot:"):
        try:
            return int(location[5:])
        except ValueError:
            return None
    return None
