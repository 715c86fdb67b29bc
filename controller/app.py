"""The controller assembled: bus, device proxies, pack ledger, station, operator commands.

This is where the parts are put together (the simulator is never chosen here: a simulated
driver and a real one look the same from the broker).
"""

from __future__ import annotations

import logging
from typing import Any

from controller.bus import LastWill
from controller.bus.login import make_bus
from controller.clock import Clock
from controller.config import StationConfig
from controller.contract import OFFLINE, ONLINE, ErrorEvent, Mode, Topics
from controller.devices import Devices
from controller.errors import BusError
from controller.inventory import PackLedger
from controller.station import CommandHandler, Station
from controller.station.outbox import Outbox
from controller.store import Store

log = logging.getLogger(__name__)

#: Real seconds between status messages when nothing changes (consoles judge liveness by age).
STATUS_HEARTBEAT_S = 2.0


class Controller:
    """One station's controller.

    Args:
        config: the station file.
        url: broker URL (the embedded broker's, or the station's Mosquitto).
        clock: the station clock.
        client_id: MQTT client id (default ``ctl-<station_id>``).
    """

    def __init__(
        self, config: StationConfig, *, url: str, clock: Clock, client_id: str | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.topics = Topics(config.station_id)
        self.bus = make_bus(
            config,
            url,
            client_id=client_id or f"ctl-{config.station_id}",
            will=LastWill(self.topics.controller, OFFLINE),
        )
        self.outbox = Outbox(self.bus)
        self.store = Store.open(config.database)
        self.ledger = PackLedger(config.rack, journal=self.store, clock=clock)
        self.devices = Devices(
            bus=self.bus,
            topics=self.topics,
            clock=clock,
            ack_timeout_s=config.swap.ack_timeout_s,
            on_bad_input=self._bad_input,
            on_command=self._command_sent,
            patient=self._patient,
        )
        self.station = Station(
            config,
            bus=self.bus,
            clock=clock,
            devices=self.devices,
            ledger=self.ledger,
            outbox=self.outbox,
        )
        self.commands = CommandHandler(self.station)

    def _patient(self) -> bool:
        """Wait for a driver's answer rather than fail, while the station is held or the broker
        is away: the operator decides what happens next, not a timer."""
        return not self.bus.connected or self.station.mode in (Mode.held, Mode.suspended)

    def _command_sent(self, device: str, action: str, args: dict[str, Any]) -> None:
        self.station.record_sent(device, action, args)

    async def start(self, *, connect_timeout_s: float = 10.0) -> None:
        self._log_journal()
        await self.station.recover_from_journal()
        await self.devices.attach()
        for topic in (self.topics.cmd, self.topics.cmd_any_user):
            await self.bus.subscribe(
                topic, self.commands.on_message, on_retained=self.commands.on_retained
            )
        self.bus.on_connect(self._announce)
        self.bus.on_disconnect(self.station.broker_lost)
        self.outbox.start(heartbeat_s=STATUS_HEARTBEAT_S, heartbeat_topic=self.topics.status)
        self.commands.start()
        try:
            await self.bus.start(wait_s=connect_timeout_s)
        except BusError:
            await self.commands.stop()
            await self.outbox.stop()
            self.store.close()
            raise

    def _log_journal(self) -> None:
        """Say where the journal is and how durable it is; loudly when it is in memory, where
        a restart forgets every pack's place, every swap record and every alarm."""
        settings = self.store.settings()
        if self.config.database is None:
            log.warning(
                "the journal is IN MEMORY (station file: database: null): a restart forgets where"
                " every pack is, the swap records and the alarms; set `database:` to a file on"
                " a real station (docs/operations.md)"
            )
        else:
            log.info("journal %s: %s", self.config.database, settings)

    async def _announce(self) -> None:
        await self.bus.publish(self.topics.controller, ONLINE, retain=True)
        self.outbox.all_dirty()

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait (real seconds) until every driver is online and the rack has reported."""
        ok = await self.devices.wait_until(
            lambda: not self.devices.offline() and self.ledger.seeded, timeout_s
        )
        if not ok:
            raise BusError(
                f"station not ready after {timeout_s:g} s: offline {self.devices.offline()}, "
                f"rack reported: {self.ledger.seeded}"
            )

    async def stop(self) -> None:
        """Stop cleanly: say ``offline`` (retained), stop every task, disconnect."""
        await self.station.shutdown()
        await self.commands.stop()
        try:
            await self.outbox.flush(2.0)
        except TimeoutError:
            log.warning("outbox not flushed on stop")
        await self.outbox.stop()
        if self.bus.connected:
            try:
                await self.bus.publish(self.topics.controller, OFFLINE, retain=True)
            except BusError as exc:
                log.warning("could not publish offline: %s", exc)
        await self.bus.stop()
        self.store.close()

    def _bad_input(self, topic: str, reason: str, payload: bytes) -> None:
        log.warning("bad input on %s: %s", topic, reason)
        self.station.event(
            ErrorEvent(
                ts=self.clock.now(),
                station=self.config.station_id,
                source="controller",
                topic=topic,
                error=reason[:1000],
                payload_excerpt=payload[:200].decode("utf-8", errors="replace"),
            )
        )

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
