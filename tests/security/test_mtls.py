"""Mutual TLS as docs/operations.md describes it: the shipped config with its two mutual-TLS
lines enabled (``require_certificate true`` and the certbind plugin), client certificates from
make-certs.sh, revocation through its CRL, and what a reload does and does not change.

Under TLS 1.3 the server rejects a client certificate after the client's side of the handshake
is done, so a refused Bus only sees the connection fail; the broker's log says why.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.contract.topics import Topics
from tests.security.helpers import (
    Inbox,
    SecureBroker,
    Station,
    connected,
    make_station,
    refusal,
)
from tests.waits import until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def mtls_broker(fresh_root: Path, certbind_dir: Path) -> Iterator[SecureBroker]:
    station = make_station(fresh_root, "mtls", "--demo")
    broker = SecureBroker(station, mtls=True, plugin_dir=certbind_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_missing_and_foreign_client_certificates_are_refused(
    mtls_broker: SecureBroker, tmp_path: Path, station_id: str
) -> None:
    broker, station = mtls_broker, mtls_broker.station
    foreign = await asyncio.to_thread(make_station, tmp_path / "foreign", "foreign")
    t = Topics(station_id)
    await refusal(broker.bus("operator"))
    assert "peer did not return a certificate" in broker.log()
    await refusal(broker.bus("operator", cert=foreign.client_cert("operator")))
    assert "certificate verify failed" in broker.log()
    assert "u'operator'" not in broker.log()  # neither got as far as logging in
    # positive control: genuine certificates plus passwords
    controller = broker.bus("controller", cert=station.client_cert("controller"))
    operator = broker.bus("operator", cert=station.client_cert("operator"))
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    async with connected(controller, operator):
        await operator.publish(t.cmd_from("operator"), b"mtls start")
        await commands.wait_for([b"mtls start"])
    # a genuine certificate does not replace the password
    cert_only = broker.bus("operator", password="wrong", cert=station.client_cert("operator"))
    assert "Not authorized" in await refusal(cert_only)


async def test_a_certificate_logs_in_only_the_user_it_was_issued_to(
    mtls_broker: SecureBroker,
) -> None:
    """Both factors, tied: the viewer's certificate with the operator's name and password is
    refused (and the other way round); the loopback listener keeps plain passwords."""
    broker, station = mtls_broker, mtls_broker.station
    viewer_cert_as_operator = broker.bus("operator", cert=station.client_cert("viewer"))
    assert "Not authorized" in await refusal(viewer_cert_as_operator)
    assert (
        "certbind: refused client 'operator': certificate CN 'viewer' does not match"
        " username 'operator'" in broker.log()
    )
    operator_cert_as_viewer = broker.bus("viewer", cert=station.client_cert("operator"))
    assert "Not authorized" in await refusal(operator_cert_as_viewer)
    assert station.passwords["operator"] not in broker.log()
    # positive controls: each certificate with its own user; the loopback listener by password
    async with connected(
        broker.bus("operator", cert=station.client_cert("operator")),
        broker.bus("viewer", cert=station.client_cert("viewer")),
        broker.bus("controller", url=broker.local_url),
    ):
        pass


async def test_a_rotated_users_old_certificate_is_revoked(mtls_broker: SecureBroker) -> None:
    """make-certs.sh --rotate gives the user a new certificate and password and puts the old
    certificate on the CRL; after a reload the old certificate is refused, even with the new
    password, and the session it had is dropped (its password no longer holds)."""
    broker = mtls_broker
    old_cert_dir = broker.station.dir / "old-viewer"
    old_cert_dir.mkdir()
    old_cert = tuple(
        str(shutil.copy(f, old_cert_dir)) for f in broker.station.client_cert("viewer")
    )
    session = broker.bus("viewer", cert=broker.station.client_cert("viewer"))
    async with connected(session):
        rotated = await asyncio.to_thread(
            make_station, broker.station.dir, "mtls", "--demo", "--rotate", "viewer"
        )
        assert "revoked: subject=O = swapstation, OU = mtls, CN = viewer" in rotated.output
        assert "CRL: wrote" in rotated.output
        broker.station = rotated
        broker.reload()
        await until(lambda: not session.connected, "the rotated user's session dropped")
    failures = broker.log().count("certificate verify failed")
    await refusal(broker.bus("viewer", cert=old_cert))  # type: ignore[arg-type]
    assert broker.log().count("certificate verify failed") == failures + 1
    # The old certificate differs from the new one (which logs in below with the same user and
    # password) only in being on the CRL the broker reads: OpenSSL says so too. (The client
    # sees the TLS alert "certificate revoked" only when it reads before the broker hangs up.)
    verdict = await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            broker.station.ca_file,
            "-CRLfile",
            str(broker.station.dir / "certs" / "crl.pem"),
            old_cert[0],
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "certificate revoked" in verdict.stdout + verdict.stderr, verdict
    async with connected(broker.bus("viewer", cert=rotated.client_cert("viewer"))):
        pass


def station_cert(broker: SecureBroker, user: str) -> tuple[str, str]:
    return broker.station.client_cert(user)


async def test_mutual_tls_takes_effect_on_restart_not_on_reload(
    fresh_root: Path, certbind_dir: Path
) -> None:
    """What the docs say: `require_certificate` is a listener setting, and listener settings
    (and plugins) are read only when Mosquitto starts."""
    station: Station = await asyncio.to_thread(make_station, fresh_root, "mtls-switch")
    broker = SecureBroker(station, plugin_dir=certbind_dir)
    broker.start()
    try:
        async with connected(broker.bus("operator")):
            pass  # no client certificate needed yet
        broker.configure(mtls=True)
        broker.reload()
        await until(lambda: broker.log().count("Reloading config.") == 1, "the reload")
        async with connected(broker.bus("operator")):
            pass  # still none after a reload
        broker.restart()
        await refusal(broker.bus("operator"))
        assert "peer did not return a certificate" in broker.log()
        async with connected(broker.bus("operator", cert=station.client_cert("operator"))):
            pass
    finally:
        broker.stop()
