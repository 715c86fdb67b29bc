"""The one physical world every simulated driver of a process shares.

Drivers are separate MQTT peers, but the hardware they stand for touches the same objects: the
arm lifts the pack the bay unlocked from the truck the traffic source drove in. So the state of
those objects lives here, once, and drivers only read it and change it through the methods
below. Pack moves go through :meth:`World.move_pack` alone, which keeps the conservation
invariant (every pack in exactly one place) true by construction; :meth:`World.problems` checks
it anyway, because tests compare this ground truth with the controller's inventory.

Locations of packs: ``slot:<n>``, ``gripper``, ``vehicle:<vehicle_id>`` (the truck in the bay),
``floor`` (dropped by the arm). Packs on trucks still queueing outside are not in the station
and so not in the world; a pack that left on a truck is listed in ``departed``.

Geometry is one rail (metres, ``config.simulator.layout``): the vehicle position, home, then the
slots at ``first_slot_m + (slot - 1) * slot_pitch_m``. The door between bay and rack sits
half-way between ``vehicle_m`` and ``home_m``: the arm may cross that point only while the door
is open, and the door may not close on the arm.

Nothing here is async: every change is a plain method call followed by :meth:`changed`, which
tells the listeners (the state publisher, the traffic source) to look again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import PackInfo, SimWorld
from controller.contract.drivers import WorldPack

log = logging.getLogger(__name__)

GRIPPER = "gripper"
FLOOR = "floor"
#: Half the width of the arm's carriage: within this distance of the door plane it is "in the
#: doorway" and the door may not close.
ARM_HALF_WIDTH_M = 0.5
#: Charging power falls linearly from full at this SoC to TAPER_FLOOR at 100 %.
TAPER_START_SOC = 0.8
TAPER_FLOOR = 0.1
#: ``sim/world`` lists only the most recent departed packs: the payload limit is 64 KiB and a
#: simulator fed at a rate runs for ever. ``World.departed`` keeps them all.
SNAPSHOT_DEPARTED = 100

DoorPosition = Literal["open", "closed", "moving", "halted"]
TruckPhase = Literal["queued", "entering", "stopped", "departing"]


def slot_location(slot: int) -> str:
    return f"slot:{slot}"


def vehicle_location(vehicle_id: str) -> str:
    return f"vehicle:{vehicle_id}"


#: Station seconds per integration step of the charging taper.
CHARGE_STEP_S = 10.0


def charge_power_kw(soc: float, charger_kw: float) -> float:
    """Charger power for a pack at ``soc``: full below 80 %, tapering linearly to 10 % at 100 %.

    A full pack draws nothing. The taper is the usual constant-current/constant-voltage shape
    reduced to a line, which is what makes "charge to 90 %" much quicker than "charge to 100 %".
    """
    if soc >= 1.0 or charger_kw <= 0:
        return 0.0
    if soc <= TAPER_START_SOC:
        return charger_kw
    frac = (soc - TAPER_START_SOC) / (1.0 - TAPER_START_SOC)
    return charger_kw * (1.0 - frac * (1.0 - TAPER_FLOOR))


@dataclass
class Slot:
    """One rack slot: its charger, and whether the pack in it is connected (docked)."""

    number: int
    charger_kw: float
    pack_types: tuple[str, ...]
    docked: bool = False
    charging_kw: float = 0.0
    out_of_service: bool = False


@dataclass
class Truck:
    """A truck, from joining the queue until it leaves with a pack.

    Times are station seconds of the world's clock (``clock.monotonic()``); the bay reports
    durations computed from them, never timestamps (architecture: one process's own clock).
    """

    vehicle_id: str
    plate: str
    pack_type: str
    pack: PackInfo = field(repr=False)
    joined_at: float
    phase: TruckPhase = "queued"
    hv_on: bool = True
    secured: bool = False
    locks_locked: bool = True
    released: bool = False
    position_error_mm: float = 0.0
    entered_at: float | None = None
    stopped_at: float | None = None

    @property
    def queued_s(self) -> float | None:
        return None if self.entered_at is None else self.entered_at - self.joined_at

    @property
    def manoeuvre_s(self) -> float | None:
        if self.entered_at is None or self.stopped_at is None:
            return None
        return self.stopped_at - self.entered_at


class World:
    """Packs, rack, arm, door, the truck in the bay and the queue, and the safety inputs.

    Args:
        config: the station file; the rack, pack types, layout and initial packs come from it.
        clock: the station clock (for the bay's queue and manoeuvre times).
    """

    def __init__(self, config: StationConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        layout = config.simulator.layout
        self.vehicle_m = layout.vehicle_m
        self.home_m = layout.home_m
        self.door_m = (layout.vehicle_m + layout.home_m) / 2.0
        self._first_slot_m = layout.first_slot_m
        self._slot_pitch_m = layout.slot_pitch_m
        self.slots: dict[int, Slot] = {
            s.slot: Slot(s.slot, s.charger_kw, tuple(s.pack_types)) for s in config.rack.slots
        }
        self.packs: dict[str, PackInfo] = {}
        self.locations: dict[str, str] = {}
        self.departed: list[WorldPack] = []
        for p in config.simulator.initial_packs:
            pack = PackInfo(
                id=p.id,
                type=p.type,
                soc=p.soc,
                health=p.health,
                capacity_kwh=config.rack.pack_types[p.type].capacity_kwh,
            )
            self.add_pack(pack, slot_location(p.slot))
            self.slots[p.slot].docked = True
        # the arm
        self.arm_m: float = self.home_m
        self.arm_moving_to: str | None = None
        self.arm_path: tuple[float, float] | None = None
        #: Where the arm is lifting or lowering right now (the rack may not dock there).
        self.arm_working_at: str | None = None
        # the door, the bay and the queue
        self.door: DoorPosition = "closed"
        self.bay: Truck | None = None
        self.queue: deque[Truck] = deque()
        # the safety relay's inputs
        self.estop_pressed = False
        self.light_curtain_broken = False
        self._listeners: list[Callable[[], None]] = []
        self.version = 0

    # ---- change notification --------------------------------------------------------------
    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (synchronously, so it must only set a flag) after every change."""
        self._listeners.append(listener)

    def changed(self) -> None:
        self.version += 1
        for listener in list(self._listeners):
            listener()

    # ---- packs ------------------------------------------------------------------------------
    def add_pack(self, pack: PackInfo, location: str) -> None:
        if pack.id in self.packs or any(d.pack.id == pack.id for d in self.departed):
            raise ValueError(f"pack {pack.id} already exists")
        if self.pack_at(location) is not None:
            raise ValueError(f"{location} already holds a pack")
        self.packs[pack.id] = pack
        self.locations[pack.id] = location

    def move_pack(self, pack_id: str, to: str) -> None:
        """The only way a pack changes place; ``to`` must be free (except the floor)."""
        if pack_id not in self.packs:
            raise ValueError(f"no pack {pack_id} in the station")
        if to != FLOOR and self.pack_at(to) is not None:
            raise ValueError(f"{to} already holds a pack")
        log.debug("pack %s: %s -> %s", pack_id, self.locations[pack_id], to)
        self.locations[pack_id] = to

    def pack_at(self, location: str) -> PackInfo | None:
        for pack_id, where in self.locations.items():
            if where == location:
                return self.packs[pack_id]
        return None

    def slot_pack(self, slot: int) -> PackInfo | None:
        return self.pack_at(slot_location(slot))

    @property
    def gripper_pack(self) -> PackInfo | None:
        return self.pack_at(GRIPPER)

    @property
    def vehicle_pack(self) -> PackInfo | None:
        """The pack on the truck in the bay, if any."""
        return None if self.bay is None else self.pack_at(vehicle_location(self.bay.vehicle_id))

    def existing_ids(self) -> set[str]:
        ids = set(self.packs) | {d.pack.id for d in self.departed}
        ids |= {t.pack.id for t in self.queue}
        return ids

    # ---- rail geometry ------------------------------------------------------------------
    def slot_m(self, slot: int) -> float:
        return self._first_slot_m + (slot - 1) * self._slot_pitch_m

    def place_m(self, place: str) -> float:
        """Rail position of ``home``, ``vehicle`` or ``slot:<n>``."""
        if place == "home":
            return self.home_m
        if place == "vehicle":
            return self.vehicle_m
        if place.startswith("slot:"):
            return self.slot_m(int(place.removeprefix("slot:")))
        raise ValueError(f"unknown place {place!r}")

    def arm_place(self) -> str:
        """``home``, ``vehicle``, ``slot:<n>``, ``moving``, or ``rail:<m>`` when halted between."""
        if self.arm_moving_to is not None:
            return "moving"
        for place in ("vehicle", "home", *(slot_location(n) for n in sorted(self.slots))):
            if abs(self.place_m(place) - self.arm_m) < 1e-6:
                return place
        return f"rail:{self.arm_m:.2f}"

    def crosses_door(self, a_m: float, b_m: float) -> bool:
        lo, hi = sorted((a_m, b_m))
        return lo - ARM_HALF_WIDTH_M < self.door_m < hi + ARM_HALF_WIDTH_M and lo != hi

    def arm_in_doorway(self) -> bool:
        """The arm stands in the door plane or is moving through it."""
        if self.arm_path is not None and self.crosses_door(*self.arm_path):
            return True
        return abs(self.arm_m - self.door_m) < ARM_HALF_WIDTH_M

    def arm_on_vehicle_side(self) -> bool:
        """The arm is between the door and the truck (or in the doorway)."""
        if self.arm_in_doorway():
            return True
        return (self.arm_m - self.door_m) * (self.vehicle_m - self.door_m) > 0

    # ---- the bay --------------------------------------------------------------------------
    def truck_stopped(self) -> Truck | None:
        """The truck in the bay if it has stopped there (and not begun to leave)."""
        if self.bay is not None and self.bay.phase == "stopped":
            return self.bay
        return None

    def enter_bay(self, truck: Truck) -> None:
        """``truck`` leaves the queue and starts manoeuvring in; its pack enters the station."""
        if self.bay is not None:
            raise ValueError("the bay is occupied")
        self.queue.remove(truck)
        truck.phase = "entering"
        truck.entered_at = self.clock.monotonic()
        self.bay = truck
        self.add_pack(truck.pack, vehicle_location(truck.vehicle_id))

    def stop_in_bay(self) -> None:
        if self.bay is None:
            raise ValueError("no truck in the bay")
        self.bay.phase = "stopped"
        self.bay.stopped_at = self.clock.monotonic()

    def depart(self) -> Truck:
        """The truck in the bay drives away; the pack on it (if any) goes with it."""
        truck = self.bay
        if truck is None:
            raise ValueError("no truck in the bay")
        pack = self.vehicle_pack
        if pack is not None:
            del self.packs[pack.id]
            del self.locations[pack.id]
            self.departed.append(WorldPack(pack=pack, location=vehicle_location(truck.vehicle_id)))
        self.bay = None
        return truck

    # ---- charging -------------------------------------------------------------------------
    def charge(self, dt_s: float, *, max_step_s: float = CHARGE_STEP_S) -> bool:
        """Advance charging by ``dt_s`` station seconds; return whether anything changed.

        The taper is integrated in steps of at most ``max_step_s``, so a late tick (a loaded
        machine at a high time scale) charges as a punctual one would; each slot then reports
        the power it draws now, at the pack's new state of charge, as a charger's meter does.
        """
        changed = False
        for slot in self.slots.values():
            pack = self.slot_pack(slot.number)
            kw = 0.0
            if pack is not None and slot.docked and not slot.out_of_service:
                soc, left = pack.soc, max(dt_s, 0.0)
                while left > 0 and soc < 1.0:
                    step = min(left, max_step_s)
                    energy_kwh = charge_power_kw(soc, slot.charger_kw) * step / 3600.0
                    soc = min(1.0, soc + energy_kwh / pack.capacity_kwh)
                    left -= step
                if round(soc, 6) != pack.soc:
                    self.packs[pack.id] = pack.model_copy(update={"soc": round(soc, 6)})
                    changed = True
                kw = charge_power_kw(round(soc, 6), slot.charger_kw)
            if slot.charging_kw != round(kw, 3):
                slot.charging_kw = round(kw, 3)
                changed = True
        return changed

    # ---- ground truth -----------------------------------------------------------------------
    def snapshot(self) -> SimWorld:
        """Where every pack is, as the ``sim/world`` payload (``ts`` from the station clock).

        ``departed`` holds the last :data:`SNAPSHOT_DEPARTED` packs that left on trucks.
        """
        packs = [
            WorldPack(pack=self.packs[pid], location=where)
            for pid, where in sorted(self.locations.items(), key=lambda kv: (kv[1], kv[0]))
        ]
        departed = self.departed[-SNAPSHOT_DEPARTED:]
        return SimWorld(ts=self.clock.now(), packs=packs, departed=departed)

    def problems(self) -> list[str]:
        """Conservation check: each pack in exactly one place, each place holding at most one."""
        out: list[str] = []
        seen: dict[str, str] = {}
        for pid, where in self.locations.items():
            if where != FLOOR and where in seen:
                out.append(f"{where} holds {seen[where]} and {pid}")
            seen[where] = pid
        if set(self.locations) != set(self.packs):
            out.append("pack table and location table disagree")
        gone = [d.pack.id for d in self.departed]
        if len(set(gone)) != len(gone) or set(gone) & set(self.packs):
            out.append("a departed pack is still listed (or twice)")
        return out
