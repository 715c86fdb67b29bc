"""The simulated world outlives the simulator process, as real hardware outlives its drivers.

A real station's packs stay where they are when a driver process restarts; a simulator that
forgot its world on restart would contradict the controller's journal (the pack the journal put
in slot 7 "back" in slot 1) and leave the operator stuck for no physical reason. So the world is
saved to a file after every change and restored from it at start; a fresh world is an explicit
choice (``swapctl sim --fresh``).

What is saved is what is physical: every pack and its place (including the gripper and the
floor), the rack's docking, the arm's rail position, the door, the truck in the bay and the
queue, the packs that left on trucks, and how many trucks have come (so ids are not reused).
Motions do not survive: the process that moved them is gone, so the arm stays where it was, a
moving door counts as halted, a truck that was driving in has stopped and one that was leaving
has left. Times are kept as ages, because each process's monotonic clock starts anew.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.contract import PackInfo
from controller.contract.drivers import WorldPack
from controller.errors import ConfigError
from simulator.traffic import Traffic
from simulator.world import Truck, World

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class _Saved(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SavedSlot(_Saved):
    docked: bool
    out_of_service: bool = False


class SavedTruck(_Saved):
    vehicle_id: str
    plate: str
    pack_type: str
    pack: PackInfo
    phase: Literal["queued", "entering", "stopped", "departing"]
    age_s: float = Field(description="Station seconds since it joined the queue")
    in_bay_s: float | None = Field(default=None, description="Station seconds since it entered")
    stopped_s: float | None = Field(default=None, description="Station seconds since it stopped")
    hv_on: bool
    secured: bool
    locks_locked: bool
    position_error_mm: float


class SavedWorld(_Saved):
    """The file's content (JSON)."""

    format: int = FORMAT_VERSION
    station_id: str
    packs: list[WorldPack]
    departed: list[WorldPack]
    slots: dict[int, SavedSlot]
    arm_m: float
    door: Literal["open", "closed", "moving", "halted"]
    bay: SavedTruck | None
    queue: list[SavedTruck]
    trucks_so_far: int = Field(ge=0)


def save(world: World, traffic: Traffic, path: Path) -> None:
    """Write the world to ``path`` atomically (a crash mid-write leaves the previous file)."""
    data = _capture(world, traffic).model_dump_json(indent=1)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def restore(world: World, traffic: Traffic, path: Path) -> bool:
    """Load the world saved in ``path`` into ``world`` (a fresh one); False if there is none.

    Raises :class:`ConfigError` naming the file if it is unreadable or belongs to another
    station: a wrong world is worse than a fresh one, and the choice is the operator's.
    """
    if not path.exists():
        return False
    try:
        saved = SavedWorld.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise ConfigError(str(path), "simulated world", f"unreadable ({exc}); use --fresh") from exc
    if saved.station_id != world.config.station_id:
        raise ConfigError(
            str(path),
            "station_id",
            f"is {saved.station_id!r}, not {world.config.station_id!r} (another file, or --fresh)",
        )
    _apply(saved, world, traffic)
    return True


def physical_key(world: World) -> tuple[object, ...]:
    """What changes when something moves (not when a pack merely charges): a change of it is
    saved at once, a charge-only change at most every few seconds."""
    bay = world.bay
    truck = None if bay is None else (bay.vehicle_id, bay.phase, bay.secured, bay.locks_locked)
    return (
        tuple(sorted(world.locations.items())),
        tuple((n, s.docked, s.out_of_service) for n, s in sorted(world.slots.items())),
        round(world.arm_m, 3),
        world.door,
        truck,
        None if bay is None else bay.hv_on,
        len(world.queue),
        len(world.departed),
    )


def describe(world: World) -> str:
    """One line for the log: what the restored world holds."""
    truck = f"truck {world.bay.vehicle_id} in the bay" if world.bay else "no truck in the bay"
    return f"{len(world.packs)} packs, {truck}, {len(world.queue)} queueing"


# ---- capture and apply ----------------------------------------------------------------------
def _capture(world: World, traffic: Traffic) -> SavedWorld:
    now = world.clock.monotonic()
    return SavedWorld(
        station_id=world.config.station_id,
        packs=[WorldPack(pack=world.packs[p], location=loc) for p, loc in world.locations.items()],
        departed=list(world.departed),
        slots={
            n: SavedSlot(docked=s.docked, out_of_service=s.out_of_service)
            for n, s in world.slots.items()
        },
        arm_m=world.arm_m,
        door=world.door,
        bay=_truck_out(world.bay, now) if world.bay else None,
        queue=[_truck_out(t, now) for t in world.queue],
        trucks_so_far=traffic.trucks_so_far,
    )


def _apply(saved: SavedWorld, world: World, traffic: Traffic) -> None:
    now = world.clock.monotonic()
    world.packs.clear()
    world.locations.clear()
    for wp in saved.packs:
        world.add_pack(wp.pack, wp.location)
    world.departed[:] = saved.departed
    for n, slot in saved.slots.items():
        if n in world.slots:
            world.slots[n].docked = slot.docked
            world.slots[n].out_of_service = slot.out_of_service
    world.arm_m = saved.arm_m
    world.door = "halted" if saved.door == "moving" else saved.door
    world.queue.extend(_truck_in(t, now) for t in saved.queue)
    traffic.trucks_so_far = saved.trucks_so_far
    if saved.bay is not None:
        truck = _truck_in(saved.bay, now)
        if truck.phase == "departing":  # it was driving off: it has gone, with its pack
            world.bay = truck
            world.depart()
        else:
            truck.phase = "stopped"  # one that was driving in has stopped since
            truck.stopped_at = truck.stopped_at if truck.stopped_at is not None else now
            world.bay = truck
    world.changed()


def _truck_out(truck: Truck, now: float) -> SavedTruck:
    def age(t: float | None) -> float | None:
        return None if t is None else now - t

    return SavedTruck(
        vehicle_id=truck.vehicle_id,
        plate=truck.plate,
        pack_type=truck.pack_type,
        pack=truck.pack,
        phase=truck.phase,
        age_s=now - truck.joined_at,
        in_bay_s=age(truck.entered_at),
        stopped_s=age(truck.stopped_at),
        hv_on=truck.hv_on,
        secured=truck.secured,
        locks_locked=truck.locks_locked,
        position_error_mm=truck.position_error_mm,
    )


def _truck_in(saved: SavedTruck, now: float) -> Truck:
    def at(age: float | None) -> float | None:
        return None if age is None else now - age

    return Truck(
        vehicle_id=saved.vehicle_id,
        plate=saved.plate,
        pack_type=saved.pack_type,
        pack=saved.pack,
        joined_at=now - saved.age_s,
        phase=saved.phase,
        hv_on=saved.hv_on,
        secured=saved.secured,
        locks_locked=saved.locks_locked,
        position_error_mm=saved.position_error_mm,
        entered_at=at(saved.in_bay_s),
        stopped_at=at(saved.stopped_s),
    )
