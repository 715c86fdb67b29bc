"""The shipped broker security, for real: Mosquitto with config/mosquitto/, TLS, users and ACL.

Each test starts from the station directory that ``scripts/make-certs.sh`` makes and a Mosquitto
running the shipped ``mosquitto.conf`` and ``acl`` (see ``tests/security/helpers.py`` for the
only lines the tests change: paths and listener ports). Clients are the product's own
``controller.bus.Bus`` over ``mqtts://``; ``mosquitto_pub`` only sends the oversized packet.

Mosquitto drops a publish the ACL forbids without telling the sender (a QoS 1 publish is still
PUBACKed under MQTT 3.1.1) and accepts any subscription, filtering each message by the reader's
rights. So "never arrives" is checked at a subscriber that could read it, after a positive
control in the same test has shown that an allowed message does arrive, plus a short grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import ssl
import stat
from pathlib import Path

import pytest

from controller.bus import Bus, LastWill
from controller.contract.topics import Topics
from tests.security.helpers import (
    DEMO_USERS,
    DEVICES,
    GRACE_S,
    SHIPPED_ACL,
    SHIPPED_CONF,
    USERS,
    Inbox,
    Mqtt5Probe,
    SecureBroker,
    connected,
    find_tool,
    make_station,
    refusal,
)
from tests.waits import until

pytestmark = pytest.mark.timeout(60)

ALL_USERS = USERS + DEMO_USERS
STATION_OUT = frozenset(
    {"status", "reply", "events", "inventory", "alarms", "history", "controller"}
)
DRIVER_OUT = ("result", "state", "online", "events")

# The intended rights, written from the roles (not parsed from the ACL file), keyed by the
# topic names of topic_keys().
WRITE: dict[str, frozenset[str]] = {
    "controller": STATION_OUT | {f"{d}/cmd" for d in DEVICES},
    "operator": frozenset({"cmd/operator"}),  # never the plain cmd topic: it carries no name
    "viewer": frozenset(),
    **{d: frozenset(f"{d}/{k}" for k in DRIVER_OUT) for d in DEVICES},
    "sim": frozenset({"sim/control", "sim/world", "sim/events"}),
}
READ: dict[str, frozenset[str]] = {
    "controller": frozenset(
        {"cmd", "cmd/operator", "cmd/viewer"} | {f"{d}/{k}" for d in DEVICES for k in DRIVER_OUT}
    ),
    "operator": STATION_OUT | {f"{d}/{k}" for d in DEVICES for k in ("state", "online")},
    "viewer": STATION_OUT | {f"{d}/{k}" for d in DEVICES for k in ("state", "online")},
    **{d: frozenset({f"{d}/cmd"}) for d in DEVICES},
    "sim": frozenset({"sim/control", "sim/world", "sim/events"}),
}


def topic_keys(station_id: str) -> dict[str, str]:
    """Every topic of one station (from the contract), by a short name."""
    t = Topics(station_id)
    keys = {
        "cmd": t.cmd,
        "status": t.status,
        "reply": t.reply,
        "events": t.events,
        "inventory": t.inventory,
        "alarms": t.alarms,
        "history": t.history,
        "controller": t.controller,
        "cmd/operator": t.cmd_from("operator"),
        "cmd/viewer": t.cmd_from("viewer"),  # nobody but the viewer could claim it: nobody may
        "sim/control": t.sim_control,
        "sim/world": t.sim_world,
        "sim/events": t.sim_events,
    }
    for d in DEVICES:
        keys[f"{d}/cmd"] = t.driver_cmd(d)
        keys[f"{d}/result"] = t.driver_result(d)
        keys[f"{d}/state"] = t.driver_state(d)
        keys[f"{d}/online"] = t.driver_online(d)
        keys[f"{d}/events"] = t.driver_events(d)
    return keys


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the shipped files ---------------------------------------------------------------------
def test_shipped_config_has_the_settings_we_rely_on() -> None:
    lines = {line.strip() for line in SHIPPED_CONF.read_text().splitlines()}
    for setting in (
        "per_listener_settings false",
        "allow_anonymous false",
        "set_tcp_nodelay true",
        "max_packet_size 262144",
        "max_queued_messages 10000",
        "max_inflight_messages 100",
        "persistence true",
        "tls_version tlsv1.2",
        "listener 8883",
        "listener 1883 127.0.0.1",
        "#require_certificate true",
        "#plugin /usr/local/lib/swapstation/mosquitto_certbind.so",
    ):
        assert setting in lines, f"{setting!r} missing from {SHIPPED_CONF}"
    listeners = [line for line in lines if line.startswith("listener ")]
    assert sorted(listeners) == ["listener 1883 127.0.0.1", "listener 8883"]
    # Listener settings: every listener binds client ids to users (each block says so).
    blocks = SHIPPED_CONF.read_text().split("\nlistener ")[1:]
    assert len(blocks) == 2
    for block in blocks:
        assert "\nuse_username_as_clientid true\n" in block + "\n", block.splitlines()[0]
    assert "crlfile /etc/swapstation/certs/crl.pem" in blocks[0]
    acl = SHIPPED_ACL.read_text().splitlines()
    # Mosquitto keeps trailing spaces as part of a topic; `pattern` lines apply to every user.
    assert [n for n, line in enumerate(acl, 1) if line != line.rstrip()] == []
    assert not [line for line in acl if line.startswith("pattern ")]


# ---- authentication ------------------------------------------------------------------------
async def test_anonymous_is_refused_on_both_listeners(broker: SecureBroker) -> None:
    for url in (broker.tls_url, broker.local_url):
        reason = await refusal(broker.bus(None, url=url))
        assert "Not authorized" in reason
    # positive control: a known user gets in on both
    async with connected(broker.bus("viewer"), broker.bus("viewer", url=broker.local_url)):
        pass


async def test_wrong_password_and_unknown_user_are_refused(broker: SecureBroker) -> None:
    wrong = broker.station.passwords["operator"][::-1]
    assert "Not authorized" in await refusal(broker.bus("operator", password=wrong))
    assert "Not authorized" in await refusal(broker.bus("operator", password=""))
    assert "Not authorized" in await refusal(broker.bus("intruder", password="x" * 32))
    async with connected(broker.bus("operator")):
        pass


async def test_tls_listener_refuses_plain_mqtt(broker: SecureBroker) -> None:
    plain_to_tls = Bus(
        f"mqtt://127.0.0.1:{broker.tls_port}",
        client_id="operator-plain",
        username="operator",
        password=broker.station.passwords["operator"],
    )
    await refusal(plain_to_tls)


async def test_broker_with_a_certificate_from_another_ca_is_refused(
    broker: SecureBroker, fresh_root: Path
) -> None:
    """An impostor broker (same config, its own CA) never gets our client's password."""
    impostor = SecureBroker(await asyncio.to_thread(make_station, fresh_root, "impostor", "--demo"))
    impostor.start()
    try:
        client = broker.bus("controller", url=impostor.tls_url)  # trusts our CA only
        reason = await refusal(client)
        assert "CERTIFICATE_VERIFY_FAILED" in reason
    finally:
        impostor.stop()
    assert "u'controller'" not in impostor.log()  # no CONNECT (so no password) was sent
    assert "unknown ca" in impostor.log()
    # positive control: the same client settings reach the genuine broker
    async with connected(broker.bus("controller")):
        pass


# ---- authorisation: the roles --------------------------------------------------------------
async def test_operator_command_reaches_controller_and_reply_reaches_operator_and_viewer(
    broker: SecureBroker, station_id: str
) -> None:
    t = Topics(station_id)
    controller, operator, viewer = (
        # with its client certificate, as env/controller.env sets it: harmless without mTLS
        broker.bus("controller", cert=broker.station.client_cert("controller")),
        broker.bus("operator"),
        broker.bus("viewer"),
    )
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    replies_op = await Inbox().attach(operator, [t.reply, t.status])
    replies_viewer = await Inbox().attach(viewer, [t.reply, t.status])
    async with connected(controller, operator, viewer):
        await operator.publish(t.cmd_from("operator"), b'{"id":"c1","command":"start"}')
        await commands.wait_for([b'{"id":"c1","command":"start"}'])
        await controller.publish(t.reply, b'{"id":"c1","ok":true}')
        await controller.publish(t.status, b'{"mode":"execute"}', retain=True)
        want = [b'{"id":"c1","ok":true}', b'{"mode":"execute"}']
        await replies_op.wait_for(want)
        await replies_viewer.wait_for(want)
        await controller.publish(t.status, b"", retain=True)


async def test_viewer_command_never_reaches_controller(
    broker: SecureBroker, station_id: str
) -> None:
    t = Topics(station_id)
    controller, viewer, operator = (
        broker.bus("controller"),
        broker.bus("viewer"),
        broker.bus("operator"),
    )
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    async with connected(controller, viewer, operator):
        # Mosquitto acknowledges the viewer's QoS 1 publish (MQTT 3.1.1 has no way to say no)...
        await viewer.publish(t.cmd, b"viewer: estop")
        await viewer.publish(t.cmd, b"viewer: retained", retain=True)
        # ...so the proof is at the controller: the operator's later command arrives, the
        # viewer's never does.
        await operator.publish(t.cmd_from("operator"), b"operator: hold")
        await commands.wait_for([b"operator: hold"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
    assert commands.payloads() == {b"operator: hold"}
    # and a late subscriber finds no retained command planted by the viewer
    late, operator2 = broker.bus("controller"), broker.bus("operator")
    late_commands = await Inbox().attach(late, [t.cmd, t.cmd_any_user])
    async with connected(late, operator2):
        await operator2.publish(t.cmd_from("operator"), b"operator: resume")
        await late_commands.wait_for([b"operator: resume"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
    assert late_commands.payloads() == {b"operator: resume"}


async def test_driver_cannot_publish_on_another_drivers_topics(
    broker: SecureBroker, station_id: str
) -> None:
    t = Topics(station_id)
    controller, arm, bay = broker.bus("controller"), broker.bus("arm"), broker.bus("bay")
    seen = await Inbox().attach(
        controller,
        [
            t.every_driver("result"),
            t.every_driver("state"),
            t.every_driver("online"),
            t.every_driver("events"),
        ],
    )
    async with connected(controller, arm, bay):
        await bay.publish(t.driver_state("bay"), b"bay: genuine state", retain=True)
        for kind in ("result", "state", "online", "events"):
            await arm.publish(f"{t.driver('bay')}/{kind}", f"arm forging bay/{kind}".encode())
        await arm.publish(t.driver_state("bay"), b"arm: forged retained state", retain=True)
        await arm.publish(t.driver_cmd("bay"), b"arm: commanding the bay")
        await arm.publish(t.cmd, b"arm: operator command")
        await arm.publish(t.driver_state("arm"), b"arm: own state")  # positive control
        await seen.wait_for([b"bay: genuine state", b"arm: own state"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
        assert seen.payloads() == {b"bay: genuine state", b"arm: own state"}
        # the bay's retained state is still the bay's own (read by a viewer: the controller's
        # account already has its one connection)
        late = broker.bus("viewer")
        retained = await Inbox().attach(late, [t.driver_state("bay")])
        async with connected(late):
            await retained.wait_for([b"bay: genuine state"])
            await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
        assert retained.payloads() == {b"bay: genuine state"}
        await bay.publish(t.driver_state("bay"), b"", retain=True)


async def test_driver_wildcard_subscriptions_get_only_its_own_commands(
    broker: SecureBroker, station_id: str
) -> None:
    """Mosquitto grants `#` (SUBACK QoS 1) but delivers only what the reader may read."""
    t = Topics(station_id)
    arm, controller, operator, bay = (
        broker.bus(u) for u in ("arm", "controller", "operator", "bay")
    )
    wild = await Inbox().attach(
        arm, ["#", "swap/#", f"{t.base}/#", t.every_driver("cmd"), t.drivers_all]
    )
    async with connected(arm, controller, operator, bay):
        await controller.publish(t.driver_cmd("bay"), b"ctl: bay secure")
        await controller.publish(t.status, b"ctl: status")
        await operator.publish(t.cmd_from("operator"), b"op: start")
        await bay.publish(t.driver_state("bay"), b"bay: state")
        await controller.publish(t.driver_cmd("arm"), b"ctl: arm lift")  # positive control
        await wild.wait_for([b"ctl: arm lift"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
    assert wild.payloads() == {b"ctl: arm lift"}
    assert {topic for topic, _ in wild.messages} == {t.driver_cmd("arm")}


async def test_driver_last_will_on_another_drivers_topic_is_dropped(
    broker: SecureBroker, station_id: str
) -> None:
    """A will is accepted at CONNECT whatever its topic, and ACL-checked when it fires."""
    t = Topics(station_id)
    controller = broker.bus("controller")
    online = await Inbox().attach(controller, [t.every_driver("online")])
    arm = broker.bus("arm", will=LastWill(t.driver_online("bay"), "arm says bay offline"))
    bay = broker.bus("bay", will=LastWill(t.driver_online("bay"), "offline"))
    async with connected(controller, arm, bay):
        await arm.kill()
        await bay.kill()  # positive control: the bay's own will
        await online.wait_for([b"offline"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
        assert online.payloads() == {b"offline"}
        await controller.publish(t.driver_online("bay"), b"", retain=True)  # may not: dropped
    clear = broker.bus("bay")
    async with connected(clear):
        await clear.publish(t.driver_online("bay"), b"", retain=True)


async def test_acl_matrix_every_user_every_topic(broker: SecureBroker, station_id: str) -> None:
    """Each user publishes on every topic; each user reads with `#` and with exact filters.

    Every reader must receive exactly the messages of writers allowed to write a topic that the
    reader is allowed to read: no more (ACL holes) and no less (the positive control). One
    client per user at a time (the broker binds client ids to users), so the `#` readers and
    the exact-filter readers are two rounds.
    """
    keys = topic_keys(station_id)
    mine = f"{Topics(station_id).base}/"
    problems = []
    for how, filters in (("#", ["#"]), ("exact", list(keys.values()))):
        tag = "hash" if how == "#" else "exact"
        topic_of_payload = {
            f"{tag}:{u}>{k}".encode(): topic for u in ALL_USERS for k, topic in keys.items()
        }
        clients = {u: broker.bus(u, tag=f"{tag}{station_id}") for u in ALL_USERS}
        inboxes = {u: await Inbox().attach(clients[u], filters) for u in ALL_USERS}
        expected = {
            reader: {
                f"{tag}:{w}>{k}".encode() for w in ALL_USERS for k in WRITE[w] if k in READ[reader]
            }
            for reader in ALL_USERS
        }
        assert all(expected.values()), "every role must be able to read something"

        async def publish_everything(user: str, tag: str = tag, clients: dict = clients) -> None:
            for key, topic in keys.items():
                await clients[user].publish(topic, f"{tag}:{user}>{key}".encode())

        async with connected(*clients.values()):
            await asyncio.gather(*(publish_everything(u) for u in ALL_USERS))
            for reader in ALL_USERS:
                await inboxes[reader].wait_for(expected[reader])
            await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
            assert all(c.connections == 1 for c in clients.values()), "a client was dropped"

        # `#` also brings retained messages of other tests' stations: judge this station's only.
        for reader in ALL_USERS:
            inbox = inboxes[reader]
            inbox.messages = [(tp, p) for tp, p in inbox.messages if tp.startswith(mine)]
            extra = sorted(p.decode() for p in inbox.payloads() - expected[reader])
            if extra:
                problems.append(f"{reader} ({how}) received what it must not read: {extra}")
            wrong_topic = [(tp, p) for tp, p in inbox.messages if topic_of_payload.get(p) != tp]
            if wrong_topic:
                problems.append(
                    f"{reader} ({how}) got messages on unexpected topics: {wrong_topic}"
                )
    assert not problems, "\n".join(problems)


#: MQTT 5 reason codes (OASIS MQTT 5.0, 3.4.2.1 and 3.9.3).
SUCCESS, NO_MATCHING_SUBSCRIBERS, GRANTED_QOS_1, NOT_AUTHORIZED = 0, 16, 1, 135


async def test_acl_matrix_under_mqtt5_the_broker_says_no(
    broker: SecureBroker, station_id: str
) -> None:
    """The same matrix spoken in MQTT 5, where refusals are visible to the sender: a forbidden
    publish gets PUBACK 135 (not authorized), an allowed one 0 or 16 (no subscriber)."""
    keys = topic_keys(station_id)

    def probe(user: str) -> tuple[dict[str, int], dict[str, int]]:
        client = Mqtt5Probe(broker, user)
        client.connect()
        try:
            pubacks = {
                k: client.publish(topic, f"v5:{user}>{k}".encode()) for k, topic in keys.items()
            }
            subacks = {k: client.subscribe(topic) for k, topic in keys.items()}
            subacks["#"] = client.subscribe("#")
        finally:
            client.close()
        return pubacks, subacks

    problems = []
    for user in ALL_USERS:
        pubacks, subacks = await asyncio.to_thread(probe, user)
        for key, code in pubacks.items():
            allowed = key in WRITE[user]
            if allowed and code not in (SUCCESS, NO_MATCHING_SUBSCRIBERS):
                problems.append(f"{user} may publish {key} but got PUBACK {code}")
            if not allowed and code != NOT_AUTHORIZED:
                problems.append(f"{user} may not publish {key} but got PUBACK {code}")
        # Mosquitto 2.0.11 grants every subscription (the ACL filters each delivery instead)
        granted = {k: c for k, c in subacks.items() if c != GRANTED_QOS_1}
        if granted:
            problems.append(f"{user}: SUBACK other than 'granted QoS 1': {granted}")
    assert not problems, "\n".join(problems)


async def test_loopback_listener_applies_the_same_users_and_acl(
    broker: SecureBroker, station_id: str
) -> None:
    t = Topics(station_id)
    controller = broker.bus("controller")
    viewer = broker.bus("viewer", url=broker.local_url)
    operator = broker.bus("operator", url=broker.local_url)
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    async with connected(controller, viewer, operator):
        await viewer.publish(t.cmd, b"viewer over loopback")
        await operator.publish(t.cmd_from("operator"), b"operator over loopback")
        await commands.wait_for([b"operator over loopback"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
    assert commands.payloads() == {b"operator over loopback"}


# ---- limits --------------------------------------------------------------------------------
async def test_oversized_packet_disconnects_only_its_sender(
    broker: SecureBroker, station_id: str, tmp_path: Path
) -> None:
    """A packet above max_packet_size (256 KiB) drops its sender; everyone else carries on.

    The oversized packet goes through mosquitto_pub: a Bus would have paho re-send the
    unacknowledged publish after reconnecting and be disconnected again (see the report).
    """
    t = Topics(station_id)
    controller = broker.bus("controller")
    # The Bus itself refuses payloads over 64 KiB; lift that to probe the broker's own limit.
    operator = broker.bus("operator", max_payload_bytes=300_000)
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 300_000)
    env = broker.tool_config("viewer", tmp_path / "xdg")  # its own account: one session each
    pub = find_tool("mosquitto_pub")
    assert pub is not None
    async with connected(controller, operator):
        await operator.publish(t.cmd_from("operator"), b"before")
        await operator.publish(
            t.cmd_from("operator"), b"y" * 200_000
        )  # under the limit: the broker passes it
        proc = await asyncio.create_subprocess_exec(
            pub,
            "-q",
            "1",
            "-t",
            t.cmd_from("operator"),
            "-f",
            str(big),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(10):
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode != 0, f"mosquitto_pub should have been cut off: {out!r}"
        assert "disconnected due to oversize packet" in broker.log()
        await operator.publish(t.cmd_from("operator"), b"after")
        await commands.wait_for([b"before", b"y" * 200_000, b"after"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
        assert max(len(p) for p in commands.payloads()) == 200_000
        assert controller.connections == operator.connections == 1  # never dropped
    assert broker.alive()


# ---- the script: idempotence, rotation, reload, persistence --------------------------------
async def served_certificate(broker: SecureBroker) -> dict[str, object]:
    """The certificate the broker's TLS listener presents to a new connection right now."""
    ctx = ssl.create_default_context(cafile=broker.station.ca_file)
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", broker.tls_port, ssl=ctx), 5
    )
    try:
        cert = writer.get_extra_info("peercert")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    assert isinstance(cert, dict)
    return cert


async def test_make_certs_is_idempotent_and_rotation_and_renewal_take_effect_on_reload(
    fresh_root: Path,
) -> None:
    """The operations procedure: rerun the script (with --rotate / new names), then reload."""
    first = await asyncio.to_thread(make_station, fresh_root, "ops")
    assert "sim" not in first.passwords  # the demo account exists only with --demo
    files = [
        fresh_root / p
        for p in (
            "ca/ca.key",
            "certs/ca.crt",
            "certs/server.crt",
            "certs/server.key",
            "certs/clients/arm.crt",
            "certs/clients/arm.key",
            "mosquitto/passwd",
            "passwords.env",
            "env/viewer.env",
        )
    ]
    before = {f: digest(f) for f in files}

    again = await asyncio.to_thread(make_station, fresh_root, "ops")
    assert {f: digest(f) for f in files} == before, "a second run must change nothing"
    assert again.passwords == first.passwords

    for run in (first, again):
        for pw in first.passwords.values():
            assert pw not in run.output, "make-certs.sh must never print a password"
    for secret in ("passwords.env", "env/viewer.env", "ca/ca.key", "certs/server.key"):
        mode = stat.S_IMODE((fresh_root / secret).stat().st_mode)
        assert mode == 0o600, f"{secret} has mode {oct(mode)}"
    if os.geteuid() == 0:
        # The broker re-reads both after dropping to its own user (reload, certificate renewal).
        for broker_secret in ("mosquitto/passwd", "certs/server.key"):
            owner = pwd.getpwuid((fresh_root / broker_secret).stat().st_uid).pw_name
            assert owner == "mosquitto", f"{broker_secret} belongs to {owner}"

    broker = SecureBroker(first)
    broker.start()
    try:
        assert ("DNS", "broker.station.test") not in (await served_certificate(broker))[
            "subjectAltName"
        ]
        logged_in, unchanged = broker.bus("viewer"), broker.bus("operator")
        async with connected(logged_in, unchanged):
            # A new password for the viewer and a new name for the broker, in one run.
            rotated = await asyncio.to_thread(
                make_station,
                fresh_root,
                "ops",
                "--rotate",
                "viewer",
                env={"BROKER_SANS": "DNS:broker.station.test"},
            )
            assert "server certificate: issued" in rotated.output
            assert rotated.passwords["viewer"] != first.passwords["viewer"]
            assert {u: p for u, p in rotated.passwords.items() if u != "viewer"} == {
                u: p for u, p in first.passwords.items() if u != "viewer"
            }
            for kept in ("certs/ca.crt", "certs/clients/arm.crt", "ca/ca.key"):
                assert digest(fresh_root / kept) == before[fresh_root / kept], kept

            broker.reload()
            # Mosquitto re-checks connected clients on reload: the session logged in with the
            # old password is dropped (and cannot log in again); the others stay connected.
            await until(lambda: not logged_in.connected, "the old password's session dropped")
            assert "Not authorized" in await refusal(
                broker.bus("viewer", password=first.passwords["viewer"])
            )
            assert logged_in.connections == 1, "the old password logged in again"
            assert unchanged.connected and unchanged.connections == 1
            await logged_in.stop()
            # one connection per account: the new password logs in once the old session is gone
            async with connected(broker.bus("viewer", password=rotated.passwords["viewer"])):
                pass
            # and the renewed server certificate is served without a restart
            sans = (await served_certificate(broker))["subjectAltName"]
            assert ("DNS", "broker.station.test") in sans and ("IP Address", "127.0.0.1") in sans
    finally:
        broker.stop()
    assert "Error" not in broker.log(), broker.log()
    assert (broker.data_dir / "mosquitto.db").exists(), "persistence did not write its file"
