"""The embedded broker (amqtt, pure Python) for demos and tests when no broker URL is given.

Bound to 127.0.0.1 on a chosen or free port (amqtt's default binds 0.0.0.0:1883), with no $SYS
or packet-logger plugins (the defaults load them).
It speaks MQTT 3.1.1 only, which is why the contract carries correlation ids in the payload.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (never 1883)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _SnapshotDict(dict[Any, Any]):
    """A dict whose iteration walks a copy of its keys, so it may change meanwhile."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker on loopback.

    Args:
        port: TCP port; 0 picks a free one.
        host: bind address (loopback by default: the embedded broker is for one machine).
    """

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._broker = Broker(config)
        # amqtt 0.12.1 iterates its subscription table while a connecting client subscribes;
        # a concurrent change kills that client ("dictionary changed size during iteration")
        # and it then waits 5 s for a SUBACK. Iterating over a snapshot avoids the race.
        self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)
        await self._broker.start()  # returns once the listener is bound
        log.info("embedded broker listening on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
