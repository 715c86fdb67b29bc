"""The trucks in the bay: which one is next, which were served, and when they leave with a pack.

One owner for the fact "this truck has been swapped (or is being swapped) and is still here":
it keeps the station from swapping a truck twice, and tells the ledger when a served truck has
left, taking its pack out of the station. A truck's own pack enters the ledger as soon as its
vehicle link reports it, so no pack in the station goes untracked, even if a swap is halted
before ``identify`` answers.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.contract import VehicleInBay
from controller.devices import Devices
from controller.inventory import PackLedger

#: The plate of a truck the bay sees without reading its plate.
NO_PLATE = "?"


class TrucksInBay:
    """The station's view of the trucks in its bay.

    Args:
        devices: the bay and vehicle link report the trucks.
        ledger: told when a truck brings a pack and when a served truck leaves with one.
        inventory_changed: called after every ledger change (republishes the inventory).
    """

    def __init__(
        self, *, devices: Devices, ledger: PackLedger, inventory_changed: Callable[[], None]
    ) -> None:
        self._devices = devices
        self._ledger = ledger
        self._inventory_changed = inventory_changed
        #: Trucks swapped (or being swapped) and still in the bay: plate -> vehicle id.
        self._served: dict[str, str | None] = {}

    async def next_unserved(self) -> tuple[str, VehicleInBay]:
        """Wait for a truck stopped in the bay that has not been swapped yet."""

        def ready() -> bool:
            bay = self._devices.bay
            v = bay.vehicle if bay else None
            return bool(v and v.stopped and (v.plate or NO_PLATE) not in self._served)

        await self._devices.wait_until(ready, None)
        bay = self._devices.bay
        assert bay is not None and bay.vehicle is not None
        return bay.vehicle.plate or NO_PLATE, bay.vehicle

    def served(self, plate: str, vehicle_id: str | None) -> None:
        """``plate`` is being (or has been) swapped; ``vehicle_id`` once identify read it."""
        self._served[plate] = vehicle_id

    def check_departures(self, swapping: str | None) -> None:
        """A served truck no longer in the bay has left with its pack. Checked on every bay
        report and when a swap ends (a truck may leave before its swap's last result arrives,
        e.g. when that result was lost with the broker). ``swapping``: the plate whose swap is
        under way, which stays served whatever the bay reads meanwhile."""
        bay = self._devices.bay
        plate = bay.vehicle.plate if bay and bay.vehicle else None
        for served, vehicle_id in list(self._served.items()):
            if served not in (plate, swapping):
                del self._served[served]
                if vehicle_id:
                    self._ledger.depart(vehicle_id)
                self._inventory_changed()

    def learn_pack(self) -> None:
        """The truck's pack enters the ledger as soon as its vehicle link reports it."""
        vehicle = self._devices.vehicle
        if vehicle is None or vehicle.pack is None or not vehicle.vehicle_id:
            return
        if vehicle.pack.id not in self._ledger.locations:
            self._ledger.arrive(vehicle.pack, vehicle.vehicle_id)
            self._inventory_changed()
