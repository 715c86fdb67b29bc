"""Sessions on the shipped broker: client ids bound to users, named operator accounts, and the
whole station (controller, simulated drivers, operator) running over TLS with the ACL.

The broker replaces every client's id with its user name (``use_username_as_clientid``), so a
user who asks for another peer's id gets a session of its own and nobody is disconnected; the
price is one connection per account, and that is tested as well.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.bus import Bus
from controller.config import StationConfig
from controller.contract import CommandHandled, ErrorEvent, Mode, Topics
from tests.harness import StationUnderTest, running_station, station_config
from tests.security.helpers import (
    DEMO_USERS,
    DEVICES,
    GRACE_S,
    USERS,
    Inbox,
    SecureBroker,
    add_operator_account,
    connected,
    make_station,
    refusal,
)
from tests.waits import until

pytestmark = pytest.mark.timeout(60)

ALL_USERS = USERS + DEMO_USERS


def usual_client_ids(station_id: str) -> dict[str, str]:
    """The client id each peer asks for (the product's defaults), by user."""
    return {
        "controller": f"ctl-{station_id}",
        "operator": "swapctl-operator-4242",
        "viewer": f"console-{station_id}",
        "sim": f"sim-{station_id}",
        **{d: f"sim-{station_id}-{d}" for d in DEVICES},
    }


# ---- client ids ------------------------------------------------------------------------------
async def test_no_user_can_take_over_another_users_session(
    broker: SecureBroker, station_id: str
) -> None:
    """A viewer, an operator and a driver each connect with every other peer's client id (its
    usual one and its user name): each gets a session of its own, named after its own user, and
    every other peer stays on its first connection."""
    ids = usual_client_ids(station_id)
    for attacker in ("viewer", "operator", "arm"):
        victims = {u: broker.bus(u, client_id=ids[u]) for u in ALL_USERS if u != attacker}
        async with connected(*victims.values()):
            for target in victims:
                for stolen in (ids[target], target):
                    intruder = broker.bus(attacker, client_id=stolen)
                    async with connected(intruder):
                        assert intruder.connected
            await asyncio.sleep(GRACE_S)  # measures: no disconnect shows up late
            dropped = [u for u, b in victims.items() if not b.connected or b.connections != 1]
            assert not dropped, f"{attacker} disconnected {dropped}"
    # The broker named every session after its user, whatever id the client asked for.
    named = set(re.findall(r"New client connected from \S+ as (\S+) ", broker.log()))
    assert named & set(ids.values()) == set(), named
    assert {"viewer", "operator", "arm", "controller"} <= named


async def test_a_second_login_with_the_same_account_takes_the_session_over(
    broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented price of binding ids to users: two clients on one account (two consoles
    logged in as `viewer`) take the session from each other; each one's Bus says why."""
    first = broker.bus("viewer", client_id="console-a")
    second = broker.bus("viewer", client_id="console-b")
    async with connected(first):
        async with connected(second):
            await until(
                lambda: first.short_connections + second.short_connections >= 1, "a takeover"
            )
        assert "another client may be logged in with the same account" in caplog.text
        await until(lambda: first.connected, "the first console back once the second left")


# ---- named operator accounts -----------------------------------------------------------------
@pytest.fixture
def own_broker(fresh_root: Path) -> AsyncIterator[SecureBroker]:
    """A broker of the test's own (it changes the ACL and the password file)."""
    broker = SecureBroker(make_station(fresh_root, "named", "--demo"))
    broker.start()
    try:
        yield broker  # type: ignore[misc]
    finally:
        broker.stop()


async def add_named_operator(broker: SecureBroker, name: str) -> None:
    """docs/operations.md, "Named operator accounts": ACL block, password, reload."""
    add_operator_account(broker, name, f"{name}-secret-0123456789")
    broker.reload()
    probe = broker.bus(name)

    async def logs_in() -> bool:
        try:
            await probe.start(wait_s=0.5)
        except Exception:
            return False
        await probe.stop()
        return True

    for _ in range(20):
        if await logs_in():
            return
    raise AssertionError(f"{name} could not log in after the reload:\n{broker.log()}")


async def test_a_named_operator_commands_only_under_its_own_name(
    own_broker: SecureBroker, station_id: str
) -> None:
    t = Topics(station_id)
    await add_named_operator(own_broker, "li-wei")
    controller, li_wei = own_broker.bus("controller"), own_broker.bus("li-wei")
    commands = await Inbox().attach(controller, [t.cmd, t.cmd_any_user])
    async with connected(controller, li_wei):
        await li_wei.publish(t.cmd, b"li-wei: plain cmd, no name")
        await li_wei.publish(t.cmd_from("operator"), b"li-wei: as operator")
        await li_wei.publish(t.cmd_from("viewer"), b"li-wei: as viewer")
        await li_wei.publish(t.cmd_from("li-wei"), b"li-wei: own name")  # positive control
        await commands.wait_for([b"li-wei: own name"])
        await asyncio.sleep(GRACE_S)  # measures: nothing else arrives meanwhile
    assert commands.messages == [(t.cmd_from("li-wei"), b"li-wei: own name")]
    assert "Not authorized" in await refusal(own_broker.bus("li-wei", password="wrong"))


# ---- the whole station over the secured broker -------------------------------------------
def login(broker: SecureBroker, user: str, station_id: str, **changes: object) -> StationConfig:
    """The station file of one process: the shipped one, logged in as ``user`` over TLS."""
    return station_config(
        station_id,
        broker__username=user,
        broker__password=broker.station.passwords[user],
        broker__ca_file=broker.station.ca_file,
        **changes,
    )


def simulated_driver_logins(broker: SecureBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `EnvironmentFile=env/sim.env` gives the simulator: each driver's own account (only
    the per-driver lines: the common ones would log the controller in this process as `sim`)."""
    text = (broker.station.dir / "env" / "sim.env").read_text()
    lines = re.findall(
        r"^(SWAPSTATION_MQTT_(?:[A-Z]+)_(?:PASSWORD|CERT_FILE|KEY_FILE))=(.*)$", text, re.M
    )
    assert {name.split("_")[2].lower() for name, _ in lines} == set(DEVICES), lines
    for name, value in lines:
        monkeypatch.setenv(name, value)


@asynccontextmanager
async def secured_station(
    broker: SecureBroker, station_id: str, operator: str, time_scale: float
) -> AsyncIterator[StationUnderTest]:
    async with running_station(
        broker.tls_url,
        login(broker, "controller", station_id, time_scale=time_scale),
        sim_config=login(broker, "sim", station_id, time_scale=time_scale),
        operator_config=login(broker, operator, station_id, time_scale=time_scale),
        start=False,
    ) as st:
        yield st


def peers(st: StationUnderTest) -> dict[str, Bus]:
    return {
        "controller": st.controller.bus,
        "operator": st.operator.bus,
        "sim": st.sim.bus,
        **{d: driver.bus for d, driver in st.sim.drivers.items()},
    }


@pytest.mark.timeout(120)
async def test_a_swap_under_way_is_not_disturbed_by_session_takeover_attempts(
    own_broker: SecureBroker, station_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The station over TLS with every peer on its own account (the operator a named one);
    while a swap runs, a viewer and the shared `operator` account connect with every peer's
    client id. The swap completes, nobody reconnected, and the command is li-wei's."""
    await add_named_operator(own_broker, "li-wei")
    simulated_driver_logins(own_broker, monkeypatch)
    async with secured_station(own_broker, station_id, "li-wei", time_scale=8.0) as st:
        everyone = peers(st)
        assert {b._username for b in everyone.values()} == {"controller", "li-wei", "sim", *DEVICES}
        await st.sim.arrive(1)
        reply = await st.command("start")
        assert reply.ok, reply.error
        await st.wait_phase("remove", timeout_s=60)
        asked = {b.client_id for b in everyone.values()} | set(everyone)
        for attacker in ("viewer", "operator"):
            for stolen in sorted(asked):
                async with connected(own_broker.bus(attacker, client_id=stolen)):
                    pass
        assert st.finished.empty(), "the swap ended before the attempts did: nothing was tested"
        record = await st.next_swap(timeout_s=90)
        assert record.result == "completed", record
        dropped = {name: b.connections for name, b in everyone.items() if b.connections != 1}
        assert not dropped, f"reconnected during the swap: {dropped}"
        [audit] = [e for e in st.events if isinstance(e, CommandHandled) and e.cmd == "start"]
        assert audit.sender == "li-wei" and audit.ok


async def test_a_retained_start_left_while_the_controller_was_down_is_reported_not_run(
    own_broker: SecureBroker, station_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator (allowed to write cmd/operator) leaves a retained `start` while the
    controller is down; the controller comes up, reports it with an error event naming the
    topic, and stays idle. The broker keeps such a message: the controller must ignore it."""
    t = Topics(station_id)
    operator = own_broker.bus("operator")
    async with connected(operator):
        await operator.publish(
            t.cmd_from("operator"), b'{"id": "late-start-1", "cmd": "start"}', retain=True
        )
    simulated_driver_logins(own_broker, monkeypatch)
    viewer = own_broker.bus("viewer")
    reported: list[ErrorEvent] = []

    async def on_event(topic: str, payload: bytes) -> None:
        if b'"error"' in payload and b"retained" in payload:
            reported.append(ErrorEvent.model_validate_json(payload))

    await viewer.subscribe(t.events, on_event)
    async with (
        connected(viewer),
        secured_station(own_broker, station_id, "operator", time_scale=200.0) as st,
    ):
        await until(lambda: reported, "the retained command reported")
        assert reported[0].topic == t.cmd_from("operator")
        assert "retained command ignored" in reported[0].error
        await asyncio.sleep(GRACE_S)  # measures: the station stays idle meanwhile
        assert st.controller.station.mode is Mode.idle
        assert st.controller.station.store.command_result("late-start-1") is None
        assert (await st.command("start")).ok  # positive control: a live command runs
        await st.operator.bus.publish(t.cmd_from("operator"), b"", retain=True)
