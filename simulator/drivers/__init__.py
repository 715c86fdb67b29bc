"""The six simulated drivers, one MQTT peer each, on the protocol in :mod:`.base`."""

from simulator.drivers.action import Action, Refusal
from simulator.drivers.arm import ArmDriver
from simulator.drivers.base import Driver
from simulator.drivers.bay import BayDriver
from simulator.drivers.door import DoorDriver
from simulator.drivers.env import DriverEnv
from simulator.drivers.rack import RackDriver
from simulator.drivers.safety import SafetyDriver
from simulator.drivers.vehicle import VehicleDriver

#: One class per device id of the contract, in ``DEVICES`` order.
DRIVER_CLASSES: tuple[type[Driver], ...] = (
    ArmDriver,
    BayDriver,
    DoorDriver,
    RackDriver,
    VehicleDriver,
    SafetyDriver,
)

__all__ = [
    "DRIVER_CLASSES",
    "Action",
    "ArmDriver",
    "BayDriver",
    "DoorDriver",
    "Driver",
    "DriverEnv",
    "RackDriver",
    "Refusal",
    "SafetyDriver",
    "VehicleDriver",
]
