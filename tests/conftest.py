"""Shared fixtures: real brokers (Mosquitto and embedded), unique station ids, no leaked tasks."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from controller.aio import awaiting
from controller.embedded_broker import EmbeddedBroker
from tests.brokers import Mosquitto

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One Mosquitto for the session, on a free port. Tests keep apart by station id."""
    broker = Mosquitto()
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture(scope="session")
async def embedded_broker() -> AsyncIterator[EmbeddedBroker]:
    """One in-process amqtt broker for the session (same loop as the tests)."""
    broker = EmbeddedBroker()
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once against each real broker."""
    if request.param == "mosquitto":
        return str(request.getfixturevalue("mosquitto").url)
    return str(request.getfixturevalue("embedded_broker").url)


@pytest.fixture
def station_id(request: pytest.FixtureRequest) -> str:
    """A station id (and so a topic prefix) unique to this test."""
    return (
        f"t{next(_ids)}-{request.node.name[:20]}".replace("[", "-")
        .replace("]", "")
        .replace("/", "-")
        .replace(" ", "")
    )


def _dump_tasks(nodeid: str) -> None:
    """Print where every asyncio task waits: pytest-timeout shows only thread stacks, which for
    a hung async test all end in ``selector.poll``."""
    lines = [f"\n=== {nodeid}: close to its timeout; where every asyncio task waits ==="]
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        if not _is_infrastructure(task):
            lines.append(f"  {task.get_name()}: {awaiting(task)}")
    print("\n".join(lines), file=sys.stderr, flush=True)


@pytest.fixture(autouse=True, scope="session")
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`swapctl sim` keeps its world under $XDG_STATE_HOME: never the user's own, in tests."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))


@pytest.fixture(autouse=True)
async def fail_on_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test must stop every task it started (ophyd-async's rule). A test that runs close to
    its timeout first prints where every task waits."""
    marker = request.node.get_closest_marker("timeout")
    limit = (
        float(marker.args[0])
        if marker and marker.args
        else float(request.config.getini("timeout") or 0)
    )
    loop = asyncio.get_running_loop()
    watchdog = (
        loop.call_later(max(limit - 5, 1), _dump_tasks, request.node.nodeid) if limit else None
    )
    before = set(asyncio.all_tasks())
    yield
    if watchdog is not None:
        watchdog.cancel()
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and not _is_infrastructure(t)]
    if leaked:
        for t in leaked:
            t.cancel()
        names = ", ".join(sorted(f"{t.get_name()} {t.get_coro()!r}" for t in leaked))
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {names}")


def _is_infrastructure(task: asyncio.Task[object]) -> bool:
    """Tasks owned by session-scoped fixtures (the embedded broker) are not the test's."""
    coro = task.get_coro()
    qual = getattr(coro, "__qualname__", "") or ""
    module = getattr(getattr(coro, "cr_frame", None), "f_globals", {}).get("__name__", "")
    return (
        module.startswith(("amqtt", "pytest_asyncio"))
        or "Broker" in qual
        or "_asyncgen_fixture_wrapper" in qual
    )


# ---- reports: tables a test prints for people (fault matrix, chaos, fuzz, stateful) ----------
@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report(text)`` shows ``text`` in the summary at the end of the run.

    Carried on the test's report (``user_properties``), so it also reaches the terminal when
    pytest-xdist runs the test in a worker, where printing would be lost.
    """

    def add(text: str) -> None:
        request.node.user_properties.append(("report", text))

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        rep
        for outcome in terminalreporter.stats.values()
        for rep in outcome
        if getattr(rep, "when", None) == "call" and getattr(rep, "user_properties", None)
    ]
    texts = [
        value
        for rep in sorted(reports, key=lambda r: r.nodeid)
        for key, value in rep.user_properties
        if key == "report"
    ]
    if texts:
        terminalreporter.section("swapstation test reports")
        for text in texts:
            terminalreporter.write_line(str(text))
