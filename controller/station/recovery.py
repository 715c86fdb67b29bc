"""Reconciling the journal with the sensors: after a restart, once the drivers report, and after
a halt.

The journal (the ledger's store) says where every pack was last *confirmed*; the drivers' sensors
say where packs are *now*. This module decides, in one place, when the sensors may settle a
pack's place (it was ``unknown``, or a cut-short move left it in doubt) and when a disagreement is
an alarm for an operator instead (a confirmed place the sensors contradict is never overwritten
silently). It never moves anything: the station comes up halted and an operator finishes by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.clock import Clock
from controller.contract import PackInfo, Severity
from controller.devices import Devices
from controller.inventory import UNKNOWN, PackLedger
from controller.station.alarms import AlarmBook


@dataclass(frozen=True)
class ComeUpHalted:
    """Why the station must come up aborted after a (re)start."""

    reason: str
    #: A swap or a pack move was in flight: raise ``recovery_needed`` saying where packs are.
    recovery_needed: bool


class JournalRecovery:
    """The journal against the sensors.

    Args:
        devices: the driver proxies (their reported states are the sensors).
        ledger: where every pack is, with its journal.
        alarms: raises ``recovery_needed`` and ``inventory_mismatch``.
        clock: stamps the journal.
        inventory_changed: called after every ledger change (republishes the inventory).
    """

    def __init__(
        self,
        *,
        devices: Devices,
        ledger: PackLedger,
        alarms: AlarmBook,
        clock: Clock,
        inventory_changed: Callable[[], None],
    ) -> None:
        self._devices = devices
        self._ledger = ledger
        self._store = ledger.journal
        self._alarms = alarms
        self._clock = clock
        self._inventory_changed = inventory_changed
        #: The journal failed its start-up check: nothing clears that but another journal.
        self._damaged = False

    def recover(self) -> ComeUpHalted | None:
        """Load the ledger and the alarms from the journal after a (re)start, and check the
        journal (SQLite's own checks, and that the pack locations equal a replay of their log).

        Returns why the station must come up aborted, or None when it may come up idle: a
        damaged journal (``journal_damaged``: its pack locations cannot be trusted), a swap or a
        pack move in flight at the restart (its moves are closed as failed and its
        packs become ``unknown`` until the sensors place them), or serious alarms nobody cleared
        (a restart is not a reset).
        """
        store, ledger = self._store, self._ledger
        ledger.load(store.pack_locations())
        history = store.alarm_history(1)
        listed = store.active_alarms(include_unacknowledged=True)
        self._alarms.load(listed, history[0].info.id if history else None)
        damage = store.check_integrity()
        if damage:
            text = "the journal failed its start-up check: " + "; ".join(damage[:5])
            self._damaged = True
            self._alarms.raise_("journal_damaged", text[:2000])
            return ComeUpHalted(f"journal damaged ({len(damage)} problem(s))", False)
        in_flight = store.swap_in_flight()
        open_moves = store.open_moves()
        if in_flight is None and not open_moves:
            serious = [a for a in self._alarms.active() if a.severity is not Severity.warning]
            if not serious:
                return None
            return ComeUpHalted(
                f"restarted with unresolved alarm(s): {serious[0].code}", recovery_needed=False
            )
        for move in open_moves:
            ledger.fail_move(move.move_id, move.pack_id, UNKNOWN, "controller restarted mid-move")
        if in_flight is not None:
            store.end_swap(in_flight, "aborted", self._clock.now())
        return ComeUpHalted(
            f"recovery needed: swap {in_flight or '?'} was in flight at restart", True
        )

    def raise_recovery_alarm(self, reason: str) -> None:
        """The ``recovery_needed`` alarm, saying where every pack is."""
        ledger = self._ledger
        where = ", ".join(f"{p} at {loc}" for p, loc in sorted(ledger.in_station().items()))
        unknown = sorted(p for p, loc in ledger.locations.items() if loc == UNKNOWN)
        text = f"{reason}. Packs: {where}."
        if unknown:
            text += f" Location unknown: {', '.join(unknown)}."
        self._alarms.raise_("recovery_needed", text)

    def seed_and_reconcile(self) -> None:
        """Once rack, arm and vehicle have reported: learn the packs, and reconcile the journal
        with the sensors. A pack whose move was cut short (``unknown``) takes the place the
        sensors report, if exactly one; a confirmed place the sensors contradict is not
        overwritten but raised as an alarm for an operator to inspect."""
        d, ledger = self._devices, self._ledger
        if d.rack is None or d.arm is None or d.vehicle is None:
            return
        ledger.seed(d.rack, d.arm, d.vehicle)
        here = d.vehicle.vehicle_id if d.vehicle.connected else None
        for loc in sorted(set(ledger.in_station().values())):
            gone = loc.removeprefix("vehicle:")
            if loc.startswith("vehicle:") and gone != here:
                # The journal has it on a truck the vehicle link no longer sees: the truck
                # drove away while the controller was down, and took its pack.
                ledger.depart(gone)
        mismatches = []
        for pack_id, loc in sorted(ledger.in_station().items()):
            places = ledger.reported_at(pack_id, d.rack, d.arm, d.vehicle)
            if loc == UNKNOWN and len(places) == 1:
                ledger.set_location(pack_id, places[0], "reconciled with the sensors")
            elif loc != UNKNOWN and places and loc not in places:
                mismatches.append(f"{pack_id}: journal {loc}, sensors {', '.join(places)}")
        named = {m.split(":")[0] for m in mismatches}
        for problem in ledger.disagreements(d.rack, d.arm, d.vehicle):
            # every other disagreement too (a pack the sensors report nowhere, or one the
            # journal has gone with a truck): start would refuse on it, so an alarm says it
            if problem.split(":")[0].removeprefix("pack ") not in named:
                mismatches.append(problem)
        if mismatches:
            self._alarms.raise_(
                "inventory_mismatch",
                "the journal and the drivers disagree: " + "; ".join(mismatches),
            )
        self._inventory_changed()

    def follow_sensors(self, *packs: PackInfo | None) -> None:
        """After a halt, once the devices confirmed ``stop``, their states are final: each pack
        of the cut-short swap is where the sensors report it, or ``unknown`` if none does (a
        failed move was judged while the hardware was still moving)."""
        d, ledger = self._devices, self._ledger
        in_station = ledger.in_station()
        for pack in packs:
            if pack is None or pack.id not in in_station:  # unknown to us, or left on a truck
                continue
            where = ledger.sensed_at(pack.id, d.rack, d.arm, d.vehicle)
            if ledger.locations[pack.id] != where:
                ledger.set_location(pack.id, where, "after the halt, per the sensors")
                self._inventory_changed()

    def standing_alarms(self) -> frozenset[str]:
        """Alarm codes whose condition still holds: a reset must not retire them."""
        codes = {"journal_damaged"} if self._damaged else set()
        if any(loc == UNKNOWN for loc in self._ledger.locations.values()):
            codes.add("pack_location_unknown")
        d = self._devices
        if self._ledger.seeded and self._ledger.disagreements(d.rack, d.arm, d.vehicle):
            codes.add("inventory_mismatch")
        return frozenset(codes)
