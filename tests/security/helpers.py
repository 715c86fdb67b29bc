"""Helpers for the security tests: the shipped Mosquitto config, started for real, with TLS.

How the tests use the shipped config: ``config/mosquitto/mosquitto.conf`` names absolute paths
under ``/etc/swapstation/`` (config, certificates, password file, ACL) and
``/var/lib/swapstation/mosquitto/`` (persistence), and listens on 8883 (TLS) and
127.0.0.1:1883 (plain, loopback). :func:`render_config` changes exactly three things: those two
path prefixes (to a temp station directory), the listener lines (free ports, bound to 127.0.0.1),
and, only when asked for mutual TLS, the one documented ``#require_certificate true`` line. It
then checks that every other line is byte for byte the shipped one, so a test can never pass on a
config that differs from what a station runs. A templating step in the shipped file was the
alternative; rewriting keeps the shipped file a plain, copy-and-run Mosquitto config.

The station directory is made by ``scripts/make-certs.sh`` (the script operators run), not by
Python, so the script is tested too. It lives in a ``tempfile.mkdtemp`` directory rather than
pytest's ``tmp_path``: Mosquitto started as root drops to the ``mosquitto`` user, which must be
able to reach the password file (re-read on reload) and the persistence directory, and pytest's
base temp directory is private to root (mode 700).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from controller.bus import Bus, LastWill
from controller.embedded_broker import free_port
from controller.errors import BusError

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONF = REPO / "config" / "mosquitto" / "mosquitto.conf"
SHIPPED_ACL = REPO / "config" / "mosquitto" / "acl"
MAKE_CERTS = REPO / "scripts" / "make-certs.sh"

ETC_PREFIX = "/etc/swapstation/"
DATA_PREFIX = "/var/lib/swapstation/mosquitto/"
MTLS_LINE = "#require_certificate true"
PLUGIN_PREFIX = "/usr/local/lib/swapstation/"
PLUGIN_LINE = f"#plugin {PLUGIN_PREFIX}mosquitto_certbind.so"

#: Every user the script makes with --demo, in ACL order.
USERS = ("controller", "operator", "viewer", "arm", "bay", "door", "rack", "vehicle", "safety")
DEMO_USERS = ("sim",)
DEVICES = ("arm", "bay", "door", "rack", "vehicle", "safety")

TOOLS = {
    "mosquitto": "the broker (Debian: apt-get install mosquitto)",
    "mosquitto_passwd": "makes the password file (Debian: apt-get install mosquitto)",
    "mosquitto_pub": "sends the oversized packet (Debian: apt-get install mosquitto-clients)",
    "openssl": "makes the CA and certificates (Debian: apt-get install openssl)",
}


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
        if Path(d, name).exists():
            return str(Path(d, name))
    return None


def build_certbind(out_dir: Path) -> Path:
    """Build the certbind plugin with the script operators use; the directory it returns is
    readable by the broker's user (the plugin is loaded by Mosquitto at start)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-certbind.sh"), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"build-certbind.sh failed:\n{proc.stdout}{proc.stderr}")
    (out_dir / "mosquitto_certbind.so").chmod(0o644)
    return out_dir


def add_operator_account(broker: SecureBroker, name: str, password: str) -> None:
    """A named operator account, the way docs/operations.md says: an ACL block like the
    operator's with its own ``cmd/<name>`` write line, and the password through
    mosquitto_passwd's standard input. The caller reloads the broker."""
    acl = broker.station.dir / "mosquitto" / "acl"
    block = SHIPPED_ACL.read_text().split("user operator\n", 1)[1].split("\n\n", 1)[0]
    block = block.replace("swap/+/cmd/operator", f"swap/+/cmd/{name}")
    with acl.open("a") as f:
        f.write(f"\nuser {name}\n{block}\n")
    passwd = find_tool("mosquitto_passwd")
    assert passwd is not None
    subprocess.run(
        [passwd, str(broker.station.dir / "mosquitto" / "passwd"), name],
        input=f"{password}\n{password}\n",
        text=True,
        capture_output=True,
        timeout=30,
        check=True,
    )
    broker.station.passwords[name] = password


def missing_tools() -> list[str]:
    """The tools the security tests need and cannot find, each with what it is for."""
    return [f"{name}: {why}" for name, why in TOOLS.items() if find_tool(name) is None]


# ---- the station directory (make-certs.sh) -------------------------------------------------
@dataclass
class Station:
    """A station directory made by scripts/make-certs.sh."""

    dir: Path
    passwords: dict[str, str]
    output: str

    @property
    def ca_file(self) -> str:
        return str(self.dir / "certs" / "ca.crt")

    def client_cert(self, user: str) -> tuple[str, str]:
        base = self.dir / "certs" / "clients" / user
        return str(base.with_suffix(".crt")), str(base.with_suffix(".key"))


def read_passwords(path: Path) -> dict[str, str]:
    found = re.findall(r"^MQTT_PASSWORD_([A-Z0-9_]+)=(\S+)$", path.read_text(), re.M)
    return {user.lower(): pw for user, pw in found}


def make_station(
    root: Path, station_id: str, *args: str, env: dict[str, str] | None = None
) -> Station:
    """Run make-certs.sh on ``root`` (extra ``args`` such as --demo, --rotate USER)."""
    proc = subprocess.run(
        ["bash", str(MAKE_CERTS), *args, str(root), station_id],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"make-certs.sh failed ({proc.returncode}):\n{output}")
    return Station(root, read_passwords(root / "passwords.env"), output)


def new_station_root(prefix: str = "swapstation-sec-") -> Path:
    """A temp station directory the broker's user can traverse (see the module docstring)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


# ---- the config --------------------------------------------------------------------------
def render_config(
    shipped: str,
    *,
    station_dir: Path,
    data_dir: Path,
    tls_port: int,
    local_port: int,
    mtls: bool = False,
    plugin_dir: Path | None = None,
) -> str:
    """The shipped config with only its paths, listener lines and (optionally) mTLS changed.

    ``mtls`` uncomments the two documented lines (``require_certificate`` and the certbind
    plugin, loaded from ``plugin_dir``, where the test built it)."""
    out: list[str] = []
    listeners = 0
    for line in shipped.splitlines():
        new = line.replace(ETC_PREFIX, f"{station_dir}/").replace(DATA_PREFIX, f"{data_dir}/")
        if line == "listener 8883":
            new = f"listener {tls_port} 127.0.0.1"
            listeners += 1
        elif line == "listener 1883 127.0.0.1":
            new = f"listener {local_port} 127.0.0.1"
            listeners += 1
        elif mtls and line == MTLS_LINE:
            new = line.lstrip("#")
        elif mtls and line == PLUGIN_LINE:
            if plugin_dir is None:
                raise AssertionError("mutual TLS needs the certbind plugin: pass plugin_dir")
            new = line.lstrip("#").replace(PLUGIN_PREFIX, f"{plugin_dir}/")
        out.append(new)
    if listeners != 2:
        raise AssertionError("the shipped config no longer has the two listeners the tests expect")
    for switch in (MTLS_LINE, PLUGIN_LINE):
        if mtls and switch not in shipped.splitlines():
            raise AssertionError(f"the shipped config has no {switch!r} line to enable mTLS")
    # Self-check: nothing but paths, listeners and the mTLS switch differs from the shipped file.
    for old, new in zip(shipped.splitlines(), out, strict=True):
        if old == new:
            continue
        allowed = (
            ETC_PREFIX in old
            or DATA_PREFIX in old
            or old.startswith("listener ")
            or (mtls and old in (MTLS_LINE, PLUGIN_LINE))
        )
        if not allowed:
            raise AssertionError(f"render_config changed a line it must not touch: {old!r}")
    return "\n".join(out) + "\n"


# ---- the broker ----------------------------------------------------------------------------
@dataclass
class SecureBroker:
    """Mosquitto running the shipped config (rendered for a temp station) on free ports."""

    station: Station
    mtls: bool = False
    #: Where the certbind plugin was built (needed with ``mtls``; see :func:`build_certbind`).
    plugin_dir: Path | None = None
    tls_port: int = field(default_factory=free_port)
    local_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.run_dir = self.station.dir / "run"
        self.run_dir.mkdir(exist_ok=True)
        self.data_dir = self.run_dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            # As in production: the persistence directory belongs to the broker's user.
            try:
                broker_user = pwd.getpwnam("mosquitto")
            except KeyError:
                pass
            else:
                os.chown(self.data_dir, broker_user.pw_uid, broker_user.pw_gid)
        # The ACL is installed next to the password file, as an operator installs it.
        shutil.copyfile(SHIPPED_ACL, self.station.dir / "mosquitto" / "acl")
        self.conf = self.station.dir / "mosquitto" / "mosquitto.conf"
        self.configure(mtls=self.mtls)
        self.log_path = self.run_dir / "mosquitto.log"

    def configure(self, *, mtls: bool) -> None:
        """Write the shipped config (rendered), with or without the mutual-TLS lines; a running
        broker reads it on :meth:`reload` (some of it) or :meth:`restart`."""
        self.mtls = mtls
        self.conf.write_text(
            render_config(
                SHIPPED_CONF.read_text(),
                station_dir=self.station.dir,
                data_dir=self.data_dir,
                tls_port=self.tls_port,
                local_port=self.local_port,
                mtls=mtls,
                plugin_dir=self.plugin_dir,
            )
        )

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def local_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.local_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout_s: float = 10.0) -> None:
        binary = find_tool("mosquitto")
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        # Mosquitto opens its listen sockets in config order (TLS, then loopback) before it
        # serves anyone, so the loopback one accepting means both are ready. The TLS port is
        # not probed: a bare TCP connect that hangs up there makes Mosquitto log "OpenSSL Error
        # ... unexpected eof" when the hang-up beats its first read, and tests check the log.
        pending = [self.local_port]
        while pending:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"mosquitto exited with {code}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen within {timeout_s} s:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.2):
                    pending.pop(0)
            except OSError:
                time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reload(self) -> None:
        """SIGHUP: what `systemctl reload` does; re-reads the password file and the ACL."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop and start again on the same ports: what `systemctl restart` does."""
        self.stop()
        self.start()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # ---- clients ---------------------------------------------------------------------------
    def bus(
        self,
        user: str | None,
        *,
        password: str | None = None,
        tag: str = "",
        client_id: str | None = None,
        url: str | None = None,
        ca_file: str | None = None,
        cert: tuple[str, str] | None = None,
        will: LastWill | None = None,
        publish_timeout_s: float = 3.0,
        max_payload_bytes: int | None = None,
    ) -> Bus:
        """A Bus logged in as ``user`` with its password from the station (unless given)."""
        if password is None and user is not None:
            password = self.station.passwords[user]
        url = url or self.tls_url
        tls = url.startswith("mqtts://")  # TLS files go only with an mqtts:// URL
        return Bus(
            url,
            client_id=client_id or f"{user or 'anonymous'}-{tag or os.urandom(4).hex()}",
            username=user,
            password=password,
            ca_file=(ca_file or self.station.ca_file) if tls else None,
            cert_file=cert[0] if cert and tls else None,
            key_file=cert[1] if cert and tls else None,
            will=will,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
            publish_timeout_s=publish_timeout_s,
            **({"max_payload_bytes": max_payload_bytes} if max_payload_bytes else {}),
        )

    def tool_config(self, user: str, directory: Path) -> dict[str, str]:
        """Environment for mosquitto_pub/_sub with the credentials in an options file.

        The Mosquitto clients read default options from ``$XDG_CONFIG_HOME/mosquitto_pub``
        (and ``mosquitto_sub``), which keeps the password off the command line; the operations
        docs recommend the same.
        """
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        options = (
            f"-h 127.0.0.1\n-p {self.tls_port}\n--cafile {self.station.ca_file}\n"
            f"-u {user}\n-P {self.station.passwords[user]}\n"
        )
        for tool in ("mosquitto_pub", "mosquitto_sub"):
            path = directory / tool
            path.write_text(options)
            path.chmod(0o600)
        return {**os.environ, "XDG_CONFIG_HOME": str(directory)}


# ---- receiving -----------------------------------------------------------------------------
class Inbox:
    """Every (topic, payload) a Bus received on its subscriptions, with bounded waits."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    async def handler(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))
        self._changed.set()

    async def attach(self, bus: Bus, filters: Iterable[str]) -> Inbox:
        for topic_filter in filters:
            await bus.subscribe(topic_filter, self.handler)
        return self

    def payloads(self) -> set[bytes]:
        return {p for _, p in self.messages}

    async def wait_for(self, payloads: Iterable[bytes], timeout_s: float = 5.0) -> None:
        """Wait until every one of ``payloads`` has arrived (a positive control)."""
        wanted = set(payloads)
        try:
            async with asyncio.timeout(timeout_s):
                while not wanted <= self.payloads():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            missing = sorted(wanted - self.payloads())
            raise AssertionError(
                f"within {timeout_s} s these never arrived: {missing!r}; got {self.messages!r}"
            ) from None


#: After the positive control has arrived, how long a forbidden message gets to show up anyway.
#: The broker routes a PUBLISH before it sends the PUBACK, so by the time every publish of a test
#: is acknowledged any leak is already on its way; this only covers the loopback transit.
GRACE_S = 0.3


# ---- MQTT 5: the broker says no ------------------------------------------------------------
class Mqtt5Probe:
    """A plain paho MQTT 5 client that records the broker's reason codes.

    The product's Bus speaks MQTT 3.1.1, where Mosquitto acknowledges a forbidden QoS 1 publish
    like any other; under MQTT 5 the PUBACK carries a reason code (135 "not authorized"), so a
    peer can tell. paho runs its own network thread here; every wait is bounded.
    """

    def __init__(self, broker: SecureBroker, user: str, *, client_id: str = "") -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{user}-v5-{os.urandom(3).hex()}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(user, broker.station.passwords[user])
        self.client.tls_set(ca_certs=broker.station.ca_file)
        self.port = broker.tls_port
        self.puback: dict[int, int] = {}
        self.suback: dict[int, list[int]] = {}
        self.received: list[tuple[str, bytes]] = []
        self.connack: int | None = None
        self.disconnect_reason: int | None = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # paho's callbacks (its network thread)
    def _on_connect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.connack = int(rc.value)  # type: ignore[attr-defined]

    def _on_publish(self, _c: object, _u: object, mid: int, rc: object, _p: object) -> None:
        self.puback[mid] = int(rc.value)  # type: ignore[attr-defined]

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, rcs: list[object], _p: object
    ) -> None:
        self.suback[mid] = [int(rc.value) for rc in rcs]  # type: ignore[attr-defined]

    def _on_message(self, _c: object, _u: object, msg: object) -> None:
        self.received.append((msg.topic, bytes(msg.payload)))  # type: ignore[attr-defined]

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        self.disconnect_reason = int(rc.value)  # type: ignore[attr-defined]

    @staticmethod
    def _wait(ready: object, what: str, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"MQTT 5 probe: no {what} within {timeout_s} s")
            time.sleep(0.005)  # polls paho's thread-side state; bounded by the deadline

    def connect(self) -> None:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")
        assert self.connack == 0, f"MQTT 5 CONNACK reason {self.connack}"

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        self._wait(lambda: info.mid in self.puback, f"PUBACK for {topic}")
        return self.puback[info.mid]

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe at QoS 1 and return the SUBACK's reason code."""
        _, mid = self.client.subscribe(topic_filter, qos=1)
        self._wait(lambda: mid in self.suback, f"SUBACK for {topic_filter}")
        return self.suback[mid][0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---- connecting ----------------------------------------------------------------------------
@asynccontextmanager
async def connected(*buses: Bus) -> AsyncIterator[None]:
    """Start every bus (failing the test if one cannot connect) and stop them all after."""
    async with AsyncExitStack() as stack:
        for bus in buses:
            await bus.start(wait_s=5)
            stack.push_async_callback(bus.stop)
        yield


async def refusal(bus: Bus, wait_s: float = 1.0) -> str:
    """The reason ``bus`` could not connect; fails the test if it did connect."""
    try:
        await bus.start(wait_s=wait_s)
    except BusError as exc:
        return str(exc)
    await bus.stop()
    raise AssertionError(f"{bus.client_id} connected to {bus.url} but should have been refused")
