"""What every driver of one simulator shares, and how its MQTT clients are made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.bus import Bus, LastWill
from controller.clock import Clock
from controller.config import StationConfig
from simulator.faults import FaultBook
from simulator.world import World

if TYPE_CHECKING:
    from simulator.drivers.base import Driver

#: Makes one MQTT client: ``(client_id, last will) -> Bus``. The CLI passes one that takes
#: credentials from the environment; the default takes them from the station file.
BusFactory = Callable[[str, LastWill | None], Bus]


def config_bus_factory(config: StationConfig, url: str) -> BusFactory:
    """Clients with the credentials, TLS files and timings of ``config.broker``."""
    broker = config.broker

    def make(client_id: str, will: LastWill | None) -> Bus:
        return Bus(
            url,
            client_id=client_id,
            will=will,
            username=broker.username,
            password=broker.password,
            ca_file=broker.ca_file,
            cert_file=broker.cert_file,
            key_file=broker.key_file,
            keepalive_s=broker.keepalive_s,
            reconnect_min_s=broker.reconnect_min_s,
            reconnect_max_s=broker.reconnect_max_s,
        )

    return make


@dataclass
class DriverEnv:
    """What every driver of one simulator shares."""

    config: StationConfig
    clock: Clock
    world: World
    faults: FaultBook
    #: Makes a driver's MQTT client: ``make_bus(client_id, will)``.
    make_bus: BusFactory
    #: Trip a safety input ("estop" or "light_curtain"): halts motion on every driver but
    #: the one given (the driver whose fault tripped it, which halts itself).
    trip: Callable[[str, Driver], Awaitable[None]]
    #: Publish every device state that changed since it was last published, now.
    flush_states: Callable[[], Awaitable[None]]
