"""The operator's hands: one driver action at a time, in maintenance mode.

A manual action passes the same interlocks as a swap's, and an arm action that moves a pack is
journaled like the sequencer's: the intent before, the outcome after. Unlike the sequencer, the
place a manual ``lift`` or ``lower`` acts on comes from the arm's *reported* position, which can
be stale (a driver that just came back has not yet republished its state). So the ledger is never
updated from the intent alone: after every arm action, done or not, the packs it may have touched
(the one moved, the one the ledger has in the gripper, the one the arm says it holds) take the
place the sensors report, or ``unknown`` with an alarm when the sensors cannot say. An offline
driver's last report is not a sensor reading: it is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.devices import Devices
from controller.errors import InterlockOpen
from controller.inventory import GRIPPER, UNKNOWN, PackLedger, vehicle_location
from controller.station import interlocks
from controller.station.alarms import AlarmBook
from controller.station.gate import STATE_SETTLE_S

#: How long (real seconds) to let a failed or abandoned arm action come to rest before reading
#: the sensors.
ARM_REST_S = 1.0


@dataclass(frozen=True)
class _Intent:
    move_id: int
    pack_id: str
    dst: str


class HandMoves:
    """Manual driver actions with interlocks, a journal, and the sensors as the last word.

    Args:
        devices: the driver proxies (their reported states are the sensors).
        ledger: where every pack is; journaled.
        alarms: raises ``pack_location_unknown`` when the sensors cannot place a pack.
        inventory_changed: called after every ledger change (republishes the inventory).
    """

    def __init__(
        self,
        *,
        devices: Devices,
        ledger: PackLedger,
        alarms: AlarmBook,
        inventory_changed: Callable[[], None],
    ) -> None:
        self._devices = devices
        self._ledger = ledger
        self._alarms = alarms
        self._inventory_changed = inventory_changed

    async def run(self, device: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run ``device.action(**args)`` if the interlocks allow it; return its result data.

        Raises:
            InterlockOpen: an interlock forbids the action now (nothing was sent).
            SwapstationError: the driver refused, failed or went away (the ledger then follows
                the sensors, see the module docstring).
        """
        reasons = interlocks.for_motion(self._devices, device, action, args)
        if reasons:
            raise InterlockOpen(device, action, reasons)
        intent = self._intent(action) if device == "arm" else None
        try:
            data = await self._devices[device].command(action, **args)
        except BaseException as exc:
            if device == "arm":
                await self._devices.wait_until(self._arm_at_rest, ARM_REST_S)
                self._follow_sensors(intent, f"manual arm.{action}: {exc!r}", done=False)
                self._inventory_changed()
            raise
        if device == "arm":
            if intent is not None:
                await self._devices.wait_until(
                    lambda: self._place(intent.pack_id) == intent.dst, STATE_SETTLE_S
                )
            self._follow_sensors(intent, f"manual arm.{action}", done=True)
        self._inventory_changed()
        return data

    # ---- journaling a pack move ------------------------------------------------------------
    def _intent(self, action: str) -> _Intent | None:
        """Journal the move a ``lift`` or ``lower`` means, judged from the arm's report."""
        arm = self._devices.arm
        if arm is None or action not in ("lift", "lower"):
            return None
        here = self._arm_place(arm.position)
        if here is None:
            return None
        src, dst = (here, GRIPPER) if action == "lift" else (GRIPPER, here)
        pack_id = self._ledger.at(src)
        if pack_id is None:
            return None
        return _Intent(self._ledger.begin_move(pack_id, src, dst), pack_id, dst)

    def _arm_place(self, position: str) -> str | None:
        if position.startswith("slot:"):
            return position
        if position == "vehicle":
            vehicle = self._devices.vehicle
            return vehicle_location(vehicle.vehicle_id) if vehicle and vehicle.vehicle_id else None
        return None

    def _arm_at_rest(self) -> bool:
        arm = self._devices.arm
        return arm is None or not arm.busy

    # ---- the sensors have the last word ----------------------------------------------------
    def _place(self, pack_id: str) -> str:
        """Where the online drivers' sensors put ``pack_id``: one place, or ``unknown``."""
        d = self._devices
        offline = set(d.offline())
        return self._ledger.sensed_at(
            pack_id,
            None if "rack" in offline else d.rack,
            None if "arm" in offline else d.arm,
            None if "vehicle" in offline else d.vehicle,
        )

    def _follow_sensors(self, intent: _Intent | None, reason: str, *, done: bool) -> None:
        ledger = self._ledger
        if intent is not None:
            seen = self._place(intent.pack_id)
            if done and seen == intent.dst:
                ledger.confirm_move(intent.move_id, intent.pack_id, intent.dst)
            else:
                ledger.fail_move(intent.move_id, intent.pack_id, seen, reason)
                self._unknown_alarm(intent.pack_id, seen, reason)
        arm = self._devices.arm
        touched = {ledger.at(GRIPPER), arm.holding.id if arm and arm.holding else None}
        for pack_id in sorted(p for p in touched if p and p in ledger.locations):
            if intent is not None and pack_id == intent.pack_id:
                continue
            seen = self._place(pack_id)
            if seen != ledger.locations[pack_id]:
                ledger.set_location(pack_id, seen, f"sensors after {reason}")
                self._unknown_alarm(pack_id, seen, reason)

    def _unknown_alarm(self, pack_id: str, seen: str, reason: str) -> None:
        if seen != UNKNOWN:
            return
        self._alarms.raise_(
            "pack_location_unknown", f"location unknown for pack {pack_id} after {reason}"
        )
