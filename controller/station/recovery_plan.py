"""Recovery plans for a cut-short swap, computed from the sensors.

Two ways out, as an operator would think of them: **finish** the swap (the truck leaves with a
charged pack) or **give back** the truck's own pack. Each plan is the list of driver actions that
gets there from where the hardware is *now*, in an order that satisfies the interlocks (door open
before the arm crosses it, truck clamped and HV off before anything happens at the vehicle, locks
open before a pack is lifted from or lowered onto it), and each ends the same way: pack locked,
HV on, the BMS asked which pack it has, arm home, door closed, truck released. A truck is never
released with its locks open or HV off: no plan can express it.

Planning replays the steps on a small model of the bench (:class:`_Bench`), so every step sees
the effects of the ones before it. Nothing here sends anything; the station runs a plan step by
step, checking the interlocks and the sensors after each, and plans again if a step fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.config import RackConfig
from controller.contract import ArmState, BayState, DoorState, PackInfo, RackState, VehicleState
from controller.contract.bay import RecoveryPlan, RecoveryStep


class CannotPlan(Exception):
    """No plan of this kind exists from here; the message says why, for the operator."""


@dataclass
class _Bench:
    """What the plan has done so far, as the sensors would report it."""

    rack_config: RackConfig
    truck_pack: PackInfo | None
    gripper: PackInfo | None
    slots: dict[int, PackInfo | None]
    docked: dict[int, bool]
    out_of_service: set[int]
    arm_at: str
    door: str
    secured: bool
    hv_on: bool | None
    locked: bool | None
    #: The pack the truck's BMS has already confirmed (a verify need not be repeated).
    verified: str | None = None
    steps: list[RecoveryStep] = field(default_factory=list)

    def step(self, device: str, action: str, why: str, **args: Any) -> None:
        self.steps.append(RecoveryStep(device=device, action=action, args=args, why=why))

    # ---- the arm and the door ----------------------------------------------------------------
    def arm_to(self, target: str, slot: int | None = None) -> None:
        place = f"slot:{slot}" if target == "slot" else target
        if self.arm_at == place:
            return
        if "vehicle" in (place, self.arm_at):
            self.door_open()
        if place == "vehicle":
            self.ready_vehicle()
        args: dict[str, Any] = {"target": target} | ({"slot": slot} if slot else {})
        self.step("arm", "move", f"arm to {place}", **args)
        self.arm_at = place

    def door_open(self) -> None:
        if self.door != "open":
            self.step("door", "open", "the arm passes through the doorway")
            self.door = "open"

    # ---- the truck -----------------------------------------------------------------------------
    def ready_vehicle(self) -> None:
        if not self.secured:
            self.step("bay", "secure", "clamp the truck before working at it")
            self.secured = True
        if self.hv_on is not False:
            self.step("vehicle", "hv_off", "high voltage off before working at the pack")
            self.hv_on = False

    def unlock(self) -> None:
        if self.locked is not False:
            self.ready_vehicle()
            self.step("bay", "unlock", "open the pack locks")
            self.locked = False

    def take_from_truck(self) -> None:
        assert self.truck_pack is not None
        self._at_truck("lift", f"lift pack {self.truck_pack.id} off the truck")
        self.gripper, self.truck_pack = self.truck_pack, None

    def put_on_truck(self) -> None:
        assert self.gripper is not None
        self._at_truck("lower", f"lower pack {self.gripper.id} onto the truck")
        self.truck_pack, self.gripper = self.gripper, None

    def _at_truck(self, action: str, why: str) -> None:
        self.arm_to("vehicle")
        self.unlock()
        self.step("arm", action, why)

    # ---- the rack ------------------------------------------------------------------------------
    def stow(self) -> None:
        """Put the gripper's pack in the free slot nearest the bay that takes its type."""
        assert self.gripper is not None
        slot = self.free_slot(self.gripper.type)
        self.arm_to("slot", slot)
        self.step("arm", "lower", f"put pack {self.gripper.id} in slot {slot}")
        self.slots[slot], self.gripper = self.gripper, None
        self.step("rack", "dock", f"dock slot {slot} so the pack charges", slot=slot)
        self.docked[slot] = True

    def take_from_slot(self, slot: int) -> None:
        pack = self.slots[slot]
        assert pack is not None
        if self.docked.get(slot):
            self.step("rack", "undock", f"undock slot {slot} to take pack {pack.id}", slot=slot)
            self.docked[slot] = False
        self.arm_to("slot", slot)
        self.step("arm", "lift", f"take pack {pack.id} from slot {slot}")
        self.gripper, self.slots[slot] = pack, None

    def free_slot(self, pack_type: str) -> int:
        for cfg in sorted(self.rack_config.slots, key=lambda s: s.slot):
            n = cfg.slot
            free = self.slots.get(n) is None and n not in self.out_of_service
            if free and pack_type in cfg.pack_types:
                return n
        raise CannotPlan(f"no free slot takes a {pack_type} pack")

    def slot_of(self, pack_id: str) -> int | None:
        return next((n for n, p in self.slots.items() if p is not None and p.id == pack_id), None)

    # ---- the end every plan shares -------------------------------------------------------------
    def send_truck_off(self) -> None:
        if self.gripper is not None:
            self.stow()
        for n, pack in sorted(self.slots.items()):
            if pack is not None and not self.docked.get(n):
                self.step("rack", "dock", f"dock slot {n} so pack {pack.id} charges", slot=n)
                self.docked[n] = True
        assert self.truck_pack is not None
        if self.locked is not True:
            self.ready_vehicle()
            self.step("bay", "lock", "close the pack locks")
            self.locked = True
        if self.hv_on is not True:
            self.step("vehicle", "hv_on", "high voltage back on")
            self.hv_on = True
        if self.verified != self.truck_pack.id:
            self.step("vehicle", "verify", f"the BMS must report pack {self.truck_pack.id}")
            self.verified = self.truck_pack.id
        self.arm_to("home")
        if self.door != "closed":
            self.step("door", "close", "close the doorway")
            self.door = "closed"
        if self.secured:
            self.step("bay", "release", "unclamp the truck: it may drive off")
            self.secured = False


def propose(
    *,
    arm: ArmState,
    bay: BayState,
    door: DoorState,
    rack: RackState,
    vehicle: VehicleState,
    rack_config: RackConfig,
    own_pack: str | None,
    verified: str | None = None,
) -> tuple[list[RecoveryPlan], dict[str, str]]:
    """Every plan that exists from here, and for each that does not, why not.

    ``own_pack`` is the pack the truck arrived with (the cut-short swap's ``pack_out``), if
    known; ``verified`` the pack the truck's BMS has confirmed since (no second verify).
    Needs every device's state: a plan from unknown state would be a guess.
    """
    if bay.vehicle is None:
        return [], no_plan("no truck in the bay")
    if not vehicle.connected:
        why = "the vehicle link is down: nobody can see which pack the truck has"
        return [], no_plan(why)
    plans: list[RecoveryPlan] = []
    why_not: dict[str, str] = {}
    for name, make in (("finish", _finish), ("give_back", _give_back)):
        bench = _bench(
            arm=arm, bay=bay, door=door, rack=rack, vehicle=vehicle, rack_config=rack_config
        )
        bench.verified = verified
        try:
            plans.append(make(bench, own_pack))
        except CannotPlan as exc:
            why_not[name] = str(exc)
    return plans, why_not


def no_plan(why: str) -> dict[str, str]:
    """Why there is neither plan (the ``unavailable`` of a proposal)."""
    return dict.fromkeys(("finish", "give_back"), why)


def _bench(
    *,
    arm: ArmState,
    bay: BayState,
    door: DoorState,
    rack: RackState,
    vehicle: VehicleState,
    rack_config: RackConfig,
) -> _Bench:
    return _Bench(
        rack_config=rack_config,
        truck_pack=vehicle.pack if vehicle.connected else None,
        gripper=arm.holding,
        slots={s.slot: s.pack for s in rack.slots},
        docked={s.slot: s.docked for s in rack.slots},
        out_of_service={s.slot for s in rack.slots if s.out_of_service},
        arm_at=arm.position,
        door=door.position,
        secured=bay.secured,
        hv_on=vehicle.hv_on if vehicle.connected else None,
        locked=bay.pack_locked,
    )


def _deliver(bench: _Bench, target: PackInfo) -> None:
    """Get ``target`` onto the truck (clearing the gripper and the truck of other packs first),
    then send the truck off."""
    wrong_on_truck = bench.truck_pack is not None and bench.truck_pack.id != target.id
    if bench.gripper is not None and (bench.gripper.id != target.id or wrong_on_truck):
        bench.stow()
    if wrong_on_truck:
        bench.take_from_truck()
        bench.stow()
    if bench.truck_pack is None:
        if bench.gripper is None:
            slot = bench.slot_of(target.id)
            assert slot is not None, f"pack {target.id} vanished from the plan's rack"
            bench.take_from_slot(slot)
        bench.put_on_truck()
    bench.send_truck_off()


def _charged(bench: _Bench, own_pack: str | None) -> PackInfo:
    """The pack the truck should leave with to finish the swap: one already on it or in the
    gripper if charged, else the fullest charged pack of its type in the rack."""
    swappable = bench.rack_config.swappable_soc
    known = [p for p in (bench.truck_pack, bench.gripper) if p is not None]
    on_hand = [p for p in known if p.id != own_pack and p.soc >= swappable]
    if on_hand:
        return on_hand[0]
    types = {p.type for p in known} or {t for s in bench.rack_config.slots for t in s.pack_types}
    ready = _ready_in_rack(bench, types, swappable)
    if not ready:
        wanted = "/".join(sorted(types))
        raise CannotPlan(f"no charged {wanted} pack (at least {swappable:.0%}) in the rack")
    return max(ready, key=lambda p: (p.soc, p.health))


def _ready_in_rack(bench: _Bench, types: set[str], swappable: float) -> list[PackInfo]:
    in_service = [p for n, p in bench.slots.items() if p and n not in bench.out_of_service]
    return [p for p in in_service if p.type in types and p.soc >= swappable]


def _finish(bench: _Bench, own_pack: str | None) -> RecoveryPlan:
    target = _charged(bench, own_pack)
    _deliver(bench, target)
    return RecoveryPlan(
        name="finish",
        summary=f"finish the swap: the truck leaves with pack {target.id} ({target.soc:.0%})",
        steps=bench.steps,
        pack_for_truck=target.id,
    )


def _give_back(bench: _Bench, own_pack: str | None) -> RecoveryPlan:
    if own_pack is None:
        raise CannotPlan("the truck's own pack is not known (no swap record names it)")
    where = [p for p in (bench.truck_pack, bench.gripper) if p is not None and p.id == own_pack]
    slot = bench.slot_of(own_pack)
    if not where and slot is None:
        raise CannotPlan(f"no sensor sees pack {own_pack} (truck, gripper or rack)")
    target = where[0] if where else bench.slots.get(slot or 0)
    assert target is not None
    _deliver(bench, target)
    return RecoveryPlan(
        name="give_back",
        summary=f"give the truck its own pack {own_pack} back ({target.soc:.0%})",
        steps=bench.steps,
        pack_for_truck=own_pack,
    )
