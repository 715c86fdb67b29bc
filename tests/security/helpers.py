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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from controller.bus import Bus, LastWill
from controller.embedded_broker import free_port

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONF = REPO / "config" / "mosquitto" / "mosquitto.conf"
SHIPPED_ACL = REPO / "config" / "mosquitto" / "acl"
MAKE_CERTS = REPO / "scripts" / "make-certs.sh"

ETC_PREFIX = "/etc/swapstation/"
DATA_PREFIX = "/var/lib/swapstation/mosquitto/"
MTLS_LINE = "#require_certificate true"

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
) -> str:
    """The shipped config with only its paths, listener lines and (optionally) mTLS changed."""
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
        out.append(new)
    if listeners != 2:
        raise AssertionError("the shipped config no longer has the two listeners the tests expect")
    if mtls and MTLS_LINE not in shipped.splitlines():
        raise AssertionError(f"the shipped config has no {MTLS_LINE!r} line to enable mTLS")
    # Self-check: nothing but paths, listeners and the mTLS switch differs from the shipped file.
    for old, new in zip(shipped.splitlines(), out, strict=True):
        if old == new:
            continue
        allowed = (
            ETC_PREFIX in old
            or DATA_PREFIX in old
            or old.startswith("listener ")
            or (mtls and old == MTLS_LINE)
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
        self.conf.write_text(
            render_config(
                SHIPPED_CONF.read_text(),
                station_dir=self.station.dir,
                data_dir=self.data_dir,
                tls_port=self.tls_port,
                local_port=self.local_port,
                mtls=self.mtls,
            )
        )
        self.log_path = self.run_dir / "mosquitto.log"

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
            client_id=f"{user or 'anonymous'}-{tag or os.urandom(4).hex()}",
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
