"""One MQTT connection: reconnect with backoff, re-subscribe, dispatch, publish.

Every peer of the contract (controller, simulated drivers, console) talks through a :class:`Bus`.
It owns one reusable ``aiomqtt.Client`` and a background task that connects, subscribes to every
registered filter, runs the ``on_connect`` hooks (republish retained state) and dispatches each
message to the handlers whose filter matches. On any ``MqttError`` it waits with exponential
backoff and goes round again.

Handlers run inline on the dispatch task, in arrival order, so they must be quick: decode, update
state, resolve a future, or spawn a task. A handler that raises is logged; it never stops the bus.

Every wait on the broker (CONNACK, SUBACK, PUBACK) is bounded here with ``asyncio.timeout`` and
handed to aiomqtt with ``timeout=math.inf``: aiomqtt bounds its waits with ``asyncio.wait_for``,
which on Python 3.11 swallows a cancellation that arrives as the awaited ack does (CPython
gh-86296). About 1 in 100 cancellations of a publishing task was lost that way, and a swap task
that will not stop hangs shutdown and halts (tests/test_bus.py pins this).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt
from pydantic import BaseModel

from controller.contract.common import MAX_PAYLOAD_BYTES
from controller.errors import BusDisconnected, BusError, ConfigError, SwapstationError

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]
ConnectHook = Callable[[], Awaitable[None]]

#: Nagle + delayed ACK costs ~88 ms per QoS 1 round trip on loopback without this.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class PayloadTooLarge(SwapstationError):
    """A payload over the size limit was not sent."""


@dataclass(frozen=True)
class LastWill:
    topic: str
    payload: str
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``. Credentials never go in the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(
            "broker url", "broker.url", f"scheme must be mqtt:// or mqtts://: {url!r}"
        )
    if parts.username or parts.password:
        raise ConfigError(
            "broker url",
            "broker.url",
            "put credentials in config or SWAPSTATION_MQTT_USERNAME/_PASSWORD, not in the URL",
        )
    if not parts.hostname:
        raise ConfigError("broker url", "broker.url", f"no host in {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


def _tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


#: A connection that ends sooner than this (real seconds) does not reset the reconnect backoff.
#: The station's Mosquitto binds client ids to users, so two clients logged in with one account
#: take the session from each other in turn; a growing backoff slows that fight down and the
#: warning names its likely cause.
STABLE_CONNECTION_S = 5.0


class Bus:
    """One MQTT client with reconnect, re-subscribe and dispatch.

    Args:
        url: broker address, ``mqtt://host:port`` (``mqtts://`` for TLS).
        client_id: MQTT client id; unique per peer.
        will: last will, published by the broker if this peer vanishes.
        username: broker user (from config or environment, never a command line).
        password: broker password.
        ca_file: CA bundle to verify the broker's certificate (TLS).
        cert_file: client certificate (TLS client auth).
        key_file: key of the client certificate.
        keepalive_s: MQTT keepalive; the broker fires the will after 1.5x this.
        reconnect_min_s: first backoff after a lost connection (real seconds).
        reconnect_max_s: backoff ceiling (real seconds).
        publish_timeout_s: how long a QoS 1 publish may wait for its PUBACK (real seconds).
        max_payload_bytes: larger payloads are refused before sending (the brokers we ship
            disconnect a client that sends an oversized packet).
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        will: LastWill | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        keepalive_s: int = 15,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        publish_timeout_s: float = 5.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.address = parse_broker_url(url)
        self.url = url
        self.client_id = client_id
        self._will = will
        self._username = username
        self._password = password
        if not self.address.tls and (ca_file or cert_file):
            raise ConfigError(
                "broker url",
                "broker.url",
                f"TLS files are set but {url!r} is plain MQTT; use mqtts:// for TLS",
            )
        self._tls = _tls_context(ca_file, cert_file, key_file) if self.address.tls else None
        self._max_payload = max_payload_bytes
        self._keepalive = keepalive_s
        self._backoff_min = reconnect_min_s
        self._backoff_max = max(reconnect_max_s, reconnect_min_s)
        self._publish_timeout = publish_timeout_s
        self._connect_timeout = max(publish_timeout_s, 10.0)
        self._handlers: list[tuple[str, Handler, Handler | None]] = []
        self._hooks: list[ConnectHook] = []
        self._lost_hooks: list[Callable[[], None]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        #: Number of successful connections so far (1 after the first connect).
        self.connections = 0
        #: Connections that ended within STABLE_CONNECTION_S of being made.
        self.short_connections = 0
        self.last_error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, wait_s: float | None = 10.0) -> None:
        """Start connecting in the background; wait up to ``wait_s`` for the first connection."""
        if self._task is not None:
            raise RuntimeError("bus already started")
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"bus:{self.client_id}")
        if wait_s is not None:
            try:
                await self.wait_connected(wait_s)
            except BusDisconnected:
                await self.stop()
                raise BusError(
                    f"could not connect to {self.url} within {wait_s:g} s: {self.last_error}"
                ) from None

    async def stop(self) -> None:
        """Disconnect cleanly (the broker does not fire the will) and stop reconnecting."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected.clear()

    async def kill(self) -> None:
        """Drop the connection without a DISCONNECT, so the broker fires the last will.

        Used to simulate a driver that loses its network; the bus does not reconnect.
        """
        self._stopping = True
        client = self._client
        if client is not None:
            paho = client._client  # no public way to drop a connection uncleanly
            sock = paho.socket()
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                # paho reads the EOF and reports the connection lost; aiomqtt then marks the
                # client disconnected, so stopping sends no DISCONNECT and waits for none.
                with contextlib.suppress(Exception):
                    paho.loop_read()
        await self.stop()
        if client is not None:
            gone = client._disconnected
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved: the loss was on purpose

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            raise BusDisconnected(f"not connected to {self.url}: {self.last_error}") from None

    # ---- subscriptions and hooks -----------------------------------------------------------
    async def subscribe(
        self, topic_filter: str, handler: Handler, *, on_retained: Handler | None = None
    ) -> None:
        """Call ``handler(topic, payload)`` for every message matching ``topic_filter``.

        Registered before :meth:`start`, it is subscribed on connect; registered while
        connected, this waits for the broker's SUBACK. Either way it is renewed on every
        reconnect.

        ``on_retained``, if given, receives instead of ``handler`` every message the broker
        delivers from its retained store (retain flag set): for command topics, where a
        retained message is a command published at some earlier time, perhaps while nobody
        was listening, and must never be carried out.
        """
        self._handlers.append((topic_filter, handler, on_retained))
        client = self._client
        if client is not None and self.connected:
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await client.subscribe(topic_filter, qos=1, timeout=math.inf)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning(
                    "subscribe %s failed (renewed on reconnect): %s", topic_filter, exc or "timeout"
                )

    def on_disconnect(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` (synchronously) when an established connection is lost."""
        self._lost_hooks.append(hook)

    def on_connect(self, hook: ConnectHook) -> None:
        """Run ``hook`` after every (re)connect, e.g. to republish retained state."""
        self._hooks.append(hook)

    # ---- publishing ------------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes | str | BaseModel,
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        """Publish; for QoS 1, wait for the broker's PUBACK.

        Raises :class:`BusDisconnected` at once when there is no connection (nothing is queued
        for later: a command sent late is worse than a command refused).
        """
        if isinstance(payload, BaseModel):
            data: bytes = payload.model_dump_json().encode()
        else:
            data = payload.encode() if isinstance(payload, str) else payload
        if len(data) > self._max_payload:
            raise PayloadTooLarge(
                f"payload of {len(data)} bytes to {topic} exceeds {self._max_payload}"
            )
        client = self._client
        if client is None or not self.connected:
            raise BusDisconnected(f"cannot publish to {topic}: not connected to {self.url}")
        try:
            async with asyncio.timeout(self._publish_timeout):
                await client.publish(topic, data, qos=qos, retain=retain, timeout=math.inf)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            reason = str(exc) or f"no PUBACK within {self._publish_timeout:g} s"
            self._declare_lost(client, f"publish to {topic} failed: {reason}")
            raise BusDisconnected(f"publish to {topic} failed: {reason}") from exc

    def _declare_lost(self, client: aiomqtt.Client, reason: str) -> None:
        """A PUBACK that never came means the connection is not healthy, even if the reader has
        not noticed yet: say so now (lost-hooks fire once) and drop the socket so the loop
        reconnects."""
        if client is not self._client or not self._connected.is_set():
            return
        log.warning("declaring the connection to %s lost: %s", self.url, reason)
        self.last_error = reason
        self._connected.clear()
        for lost in list(self._lost_hooks):
            lost()
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ---- the connection loop ---------------------------------------------------------------
    def _make_client(self) -> aiomqtt.Client:
        will = (
            aiomqtt.Will(self._will.topic, self._will.payload, self._will.qos, self._will.retain)
            if self._will
            else None
        )
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            identifier=self.client_id,
            username=self._username,
            password=self._password,
            will=will,
            keepalive=self._keepalive,
            tls_context=self._tls,
            socket_options=NODELAY,
            timeout=math.inf,  # every wait is bounded by asyncio.timeout here (module docstring)
            clean_session=True,
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._backoff_min
        connected_at = 0.0
        while not self._stopping:
            # A fresh client per attempt: aiomqtt 2.5's reused client keeps the "connected" state
            # of the previous connection, so a refused reconnect would pass for a connected one.
            client = self._make_client()
            self._client = client
            try:
                async with contextlib.AsyncExitStack() as connection:
                    async with asyncio.timeout(self._connect_timeout):
                        await connection.enter_async_context(client)
                        for topic_filter in dict.fromkeys(f for f, _, _ in self._handlers):
                            await client.subscribe(topic_filter, qos=1)
                    self.connections += 1
                    self._connected.set()
                    connected_at = loop.time()
                    log.info("connected to %s as %s", self.url, self.client_id)
                    for hook in list(self._hooks):
                        await self._run_hook(hook)
                    async for message in client.messages:
                        await self._dispatch(message)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                self.last_error = str(exc) or "no CONNACK/SUBACK in time"
                if self._connected.is_set():
                    log.warning("lost connection to %s: %s", self.url, exc)
            finally:
                gone = client._disconnected
                if gone.done() and not gone.cancelled():
                    gone.exception()  # seen here; otherwise asyncio logs it as never retrieved
                was_connected = self._connected.is_set()
                self._connected.clear()
                if was_connected and not self._stopping:
                    backoff = self._note_connection_ended(loop.time() - connected_at, backoff)
                    for lost in list(self._lost_hooks):
                        lost()
            if self._stopping:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    def _note_connection_ended(self, lived_s: float, backoff: float) -> float:
        """The backoff before the next attempt: reset after a connection that lasted."""
        if lived_s >= STABLE_CONNECTION_S:
            return self._backoff_min
        self.short_connections += 1
        log.warning(
            "connection to %s as %s ended %.1f s after it was made (%d so far); if this repeats,"
            " another client may be logged in with the same account: the station's broker allows"
            " one connection per account",
            self.url,
            self._username or self.client_id,
            lived_s,
            self.short_connections,
        )
        return backoff

    async def _run_hook(self, hook: ConnectHook) -> None:
        try:
            await hook()
        except BusError:
            raise aiomqtt.MqttError("connection lost while running connect hooks") from None
        except Exception:
            log.exception("on_connect hook failed")

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        topic = message.topic.value
        # Filter by our own subscriptions: amqtt 0.12 sends a new client the retained messages
        # of topics that *other* sessions subscribed to.
        for topic_filter, handler, on_retained in list(self._handlers):
            if message.topic.matches(topic_filter):
                target = on_retained if message.retain and on_retained is not None else handler
                try:
                    await target(topic, data)
                except Exception:
                    log.exception("handler for %s failed on %s", topic_filter, topic)
