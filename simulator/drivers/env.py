"""What every driver of one simulator shares, and how its MQTT clients are made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.bus import Bus, LastWill
from controller.bus.login import make_bus
from controller.clock import Clock
from controller.config import StationConfig
from simulator.faults import FaultBook
from simulator.world import World

if TYPE_CHECKING:
    from simulator.drivers.base import Driver

#: Makes one MQTT client: ``(client_id, last will, account) -> Bus``. ``account`` is the driver
#: the client plays (it logs in with that driver's own account when the environment has one, see
#: :func:`controller.bus.login.broker_credentials`), or None for the simulator's own client.
BusFactory = Callable[[str, LastWill | None, str | None], Bus]


def config_bus_factory(config: StationConfig, url: str) -> BusFactory:
    """Clients with the login of ``config.broker`` and the environment, and its timings."""

    def make(client_id: str, will: LastWill | None, account: str | None) -> Bus:
        return make_bus(config, url, client_id=client_id, will=will, account=account)

    return make


@dataclass
class DriverEnv:
    """What every driver of one simulator shares."""

    config: StationConfig
    clock: Clock
    world: World
    faults: FaultBook
    #: Makes a driver's MQTT client: ``make_bus(client_id, will, device)``.
    make_bus: BusFactory
    #: Trip a safety input ("estop" or "light_curtain"): halts motion on every driver but
    #: the one given (the driver whose fault tripped it, which halts itself).
    trip: Callable[[str, Driver], Awaitable[None]]
    #: Publish every device state that changed since it was last published, now.
    flush_states: Callable[[], Awaitable[None]]
