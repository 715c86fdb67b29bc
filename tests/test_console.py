"""The operator console, headless with Textual's pilot, against a running station on Mosquitto.

What the operator sees is read from the rendered screen (the text of Textual's SVG export), not
from the console's internals, so these tests fail when the screen would mislead an operator.
Set SWAPSTATION_CONSOLE_SNAPSHOT=docs/console.svg to save the mid-swap screenshot for the docs.
"""

from __future__ import annotations

import asyncio
import html
import io
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from rich.console import Console
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input
from textual.widgets.input import Selection

from controller.bus import Bus
from controller.bus.login import make_bus
from controller.config import StationConfig
from controller.console import OperatorClient
from controller.console.actions import ACTIONS, BY_CMD, BadArgument, parse_args
from controller.console.app import ConsoleApp
from controller.console.model import ConsoleModel
from controller.contract import (
    OPERATOR_COMMANDS,
    SWAP_PHASES,
    Mode,
    Phase,
    PhaseChanged,
    Status,
    encode,
)
from controller.embedded_broker import free_port
from tests.brokers import Mosquitto
from tests.harness import running_station, station_config

pytestmark = pytest.mark.timeout(60)

SIZE = (130, 44)
#: The console renders in the loop the station under test runs on, and a render of this screen
#: on a loaded 2-core machine has taken 0.6 s: at 100x that was 60 station seconds, an unlock
#: deadline, and the swap aborted. These tests are about the screen, not deadlines: at 20x
#: (as the docs' snapshot) such a stall costs 12 station seconds, well inside every deadline.
SCALE = 20.0


def screen_text(app: ConsoleApp) -> str:
    """What the terminal shows, as plain text.

    The same render as ``App.export_screenshot`` exported as text instead of SVG, which is
    several times cheaper (the SVG export blocks the loop the station runs on for up to 0.1 s);
    the SVG's text is the fallback if Textual's internals move.
    """
    try:
        console = Console(
            width=app.size.width,
            height=app.size.height,
            file=io.StringIO(),
            force_terminal=True,
            record=True,
            legacy_windows=False,
            safe_box=False,
        )
        console.print(
            app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
        )
        return console.export_text()
    except AttributeError:
        parts = re.findall(r"<text[^>]*>(.*?)</text>", app.export_screenshot())
        return html.unescape("".join(parts)).replace("\xa0", " ")


def ready_to_type(app: ConsoleApp) -> bool:
    """A text field has the focus and has handled it: it selects its whole text on focus (so
    typing replaces a default), and keys sent before that would land in front of the default."""
    field = app.focused
    return isinstance(field, Input) and field.selection == Selection(0, len(field.value))


async def wait_screen(
    pilot: Pilot[None], predicate: Callable[[str], bool], timeout_s: float = 10.0
) -> str:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        app.redraw()
        await asyncio.sleep(0.05)  # the app lays out and paints (not pilot.pause: see press)
        text = screen_text(app)
        if predicate(text):
            return text
        if loop.time() > end:
            raise AssertionError(f"screen never matched; it shows:\n{text}")


async def press(pilot: Pilot[None], *keys: str) -> None:
    """Key presses, as the terminal driver delivers them.

    ``Pilot.press`` waits after every key until the process's CPU goes idle, which a station
    running in the same process at 100x never does: that costs a second or two per key.
    Callers wait for what the key should put on the screen instead.
    """
    for key in keys:
        pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
    await asyncio.sleep(0)


@asynccontextmanager
async def console(
    cfg: StationConfig, url: str, *, username: str | None = None
) -> AsyncIterator[tuple[ConsoleApp, Pilot[None]]]:
    bus = make_bus(cfg, url, client_id=f"console-{cfg.station_id}")
    if username:  # the test broker lets anyone in, under any user name
        bus = Bus(url, client_id=f"console-{cfg.station_id}", username=username)
    app = ConsoleApp(OperatorClient(bus, cfg.station_id, username=username), refresh_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_screen(pilot, lambda s: "CONNECTED" in s and "controller online" in s)
        yield app, pilot
    assert not bus.connected, "the console stops its bus when it quits"


# ---- the view-model and the command table, without a broker ---------------------------------
def test_every_console_action_is_an_operator_command_and_every_command_has_a_key() -> None:
    assert {a.cmd for a in ACTIONS} == set(OPERATOR_COMMANDS)
    keys = [a.key for a in ACTIONS]
    assert len(keys) == len(set(keys))
    assert {a.cmd for a in ACTIONS if a.confirm} == {
        "estop",
        "abort",
        "clear",
        "reset",
        "manual",
        "set_location",
        "recover",
        "reconcile",
    }
    # a number is sent as one; an optional argument left empty is left out
    assert parse_args(BY_CMD["recover"], {"plan": "finish", "steps": "2"}) == {
        "plan": "finish",
        "steps": 2,
    }
    assert parse_args(BY_CMD["recover"], {"plan": "give_back", "steps": ""}) == {
        "plan": "give_back"
    }
    assert parse_args(BY_CMD["manual"], {"device": "door", "action": "open", "args": ""}) == {
        "device": "door",
        "action": "open",
        "args": {},
    }
    with pytest.raises(BadArgument):
        parse_args(BY_CMD["manual"], {"device": "door", "action": "open", "args": "[1]"})
    with pytest.raises(BadArgument):
        parse_args(BY_CMD["ack"], {"alarm_id": " "})


def _status(**changes: object) -> bytes:
    base: dict[str, object] = {"station": "s1", "mode": Mode.execute, "budget_s": 180.0}
    base.update(queue_length=0, active_alarms=0, time_scale=10.0)
    base.update(changes)
    return encode(Status.model_validate(base))


def test_model_never_shows_stale_data_as_live() -> None:
    now = [100.0]
    m = ConsoleModel("s1", clock=lambda: now[0])
    t = m.topics
    m.connection_up()
    m.on_message(t.controller, b"online")
    m.on_message(t.status, _status(swap_id="s1-S1", phase=Phase.stow, elapsed_s=50.0))
    assert m.from_controller_live(m.status)
    now[0] += 1.0  # the swap clock runs on between updates, at the station's time scale
    assert m.elapsed_s() == pytest.approx(60.0)
    m.connection_down("broker gone")
    now[0] += 5.0
    assert not m.is_live(m.status) and not m.controller_online
    assert m.elapsed_s() == pytest.approx(50.0)  # frozen, not extrapolated from stale data
    assert m.disconnected_for_s() == pytest.approx(5.0)
    m.sync_connection(True, 2)  # reconnected: nothing is live until the broker sends it again
    assert not m.is_live(m.status) and not m.is_live(m.controller)
    m.on_message(t.controller, b"online")
    assert m.controller_online and not m.from_controller_live(m.status)
    m.on_message(t.status, _status())
    assert m.from_controller_live(m.status)
    epoch = m.epoch
    m.sync_connection(True, 2)  # the same connection: nothing changes
    assert m.epoch == epoch and m.from_controller_live(m.status)
    m.sync_connection(True, 3)  # a reconnect whose loss went unseen still starts afresh
    assert m.epoch == epoch + 1 and not m.is_live(m.status)
    m.on_message(t.controller, b"online")
    m.on_message(t.status, _status())
    m.on_message(t.controller, b"offline")  # the controller's last will: its data is stale
    assert not m.from_controller_live(m.status)
    m.on_message(t.status, b"not json")
    assert "unreadable message" in m.log[-1].text


def test_timeline_of_a_swap_joined_midway() -> None:
    m = ConsoleModel("s1", clock=lambda: 0.0)
    m.connection_up()
    m.on_message(m.topics.status, _status(swap_id="s1-S7", phase=Phase.fetch, elapsed_s=70.0))
    line = m.timeline
    assert line.swap_id == "s1-S7" and line.current is Phase.fetch
    assert [line.state_of(p) for p in SWAP_PHASES[:7]] == ["done"] * 6 + ["current"]
    assert line.durations[Phase.stow] is None  # missed: unknown, not invented
    event = PhaseChanged(
        station="s1",
        swap_id="s1-S7",
        phase=Phase.insert,
        previous=Phase.fetch,
        previous_phase_s=12.5,
    )
    m.on_message(m.topics.events, encode(event))
    assert line.durations[Phase.fetch] == 12.5 and m.timeline.current is Phase.insert


async def test_without_a_broker_it_says_so_and_sends_nothing() -> None:
    """Opens anyway, says disconnected, refuses to send; palette and Ctrl+E work everywhere."""
    bus = Bus(f"mqtt://127.0.0.1:{free_port()}", client_id="console-nobroker")
    app = ConsoleApp(OperatorClient(bus, "nobody"), refresh_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_screen(pilot, lambda s: "DISCONNECTED" in s)
        assert "STALE: disconnected" in text and "controller unknown" in text
        await press(pilot, "s")
        await wait_screen(pilot, lambda s: "start NOT sent: not connected" in s)
        # the command palette offers every operator command; the e-stop still asks
        await press(pilot, "ctrl+p")
        await wait_screen(pilot, lambda s: ready_to_type(app))
        await press(pilot, *"e-stop")
        await wait_screen(pilot, lambda s: "E-STOP (estop)" in s)
        await press(pilot, "enter")
        await wait_screen(pilot, lambda s: "E-STOP: stop every motion now" in s)
        await press(pilot, "escape")
        await wait_screen(pilot, lambda s: "estop cancelled" in s)
        # Ctrl+E reaches the e-stop even from inside a prompt's text field
        await press(pilot, "k")
        await wait_screen(pilot, lambda s: "alarm id (or all)" in s)
        await press(pilot, "ctrl+e")
        await wait_screen(pilot, lambda s: "E-STOP: stop every motion now" in s)
        await press(pilot, "e")
        await wait_screen(pilot, lambda s: "E-STOP: stop every motion now" not in s)
        await press(pilot, "escape")  # back out of the prompt, which is still open
        await wait_screen(
            pilot, lambda s: "estop NOT sent: not connected" in s and "ack cancelled" in s
        )


# ---- against a running station -------------------------------------------------------------
async def test_screen_shows_the_swap_progressing(mosquitto: Mosquitto, station_id: str) -> None:
    cfg = station_config(station_id, time_scale=SCALE)
    async with (
        running_station(mosquitto.url, cfg) as st,
        console(cfg, mosquitto.url) as (app, pilot),
    ):
        # the rack comes from the retained inventory, which may arrive after the status
        await wait_screen(
            pilot, lambda s: "EXECUTE" in s and "phase waiting" in s and "P-1001" in s
        )
        await st.sim.arrive(1)
        seen: set[str] = set()

        def progressing(text: str) -> bool:
            seen.update(re.findall(r"phase (\w+)", text))
            return "last swap" in text and "completed" in text

        text = await wait_screen(pilot, progressing, timeout_s=30)
        swap_phases = seen & {p.value for p in SWAP_PHASES}
        assert len(swap_phases) >= 3, f"phases shown: {seen}"
        assert "in budget" in text or "OVER BUDGET" in text, text  # the verdict is shown
        timeline = text.split("last swap", 1)[1].split("rack", 1)[0]
        assert len(re.findall(r"\d+\.\d s", timeline)) >= len(SWAP_PHASES), timeline
        # the timeline has the seconds of every phase, from the PhaseChanged events
        assert all(app.model.timeline.durations.get(p) for p in SWAP_PHASES)
        # and the swap appears in the recent swaps from the retained history
        await wait_screen(pilot, lambda s: "recent swaps" in s and "S0001" in s)


@pytest.mark.skipif(
    not os.environ.get("SWAPSTATION_CONSOLE_SNAPSHOT"),
    reason="makes docs/console.svg: SWAPSTATION_CONSOLE_SNAPSHOT=docs/console.svg",
)
async def test_snapshot_for_the_docs(mosquitto: Mosquitto) -> None:
    """The README's screenshot: the second swap of the day, mid-way, after a refused command."""
    target = Path(os.environ["SWAPSTATION_CONSOLE_SNAPSHOT"])
    cfg = station_config("cq-changshou-01", time_scale=20)
    async with (
        running_station(mosquitto.url, cfg) as st,
        console(cfg, mosquitto.url, username="operator") as (app, pilot),
    ):
        await st.sim.arrive(2)
        await wait_screen(pilot, lambda s: "phase remove" in s, timeout_s=30)
        await press(pilot, "s")
        await wait_screen(pilot, lambda s: "operator: start -> refused" in s)
        await st.next_swap()
        await wait_screen(pilot, lambda s: "phase stow" in s and "S0002" in s, timeout_s=30)
        app.save_screenshot(target.name, str(target.parent.resolve()))


async def test_refused_command_shows_its_reason(mosquitto: Mosquitto, station_id: str) -> None:
    cfg = station_config(station_id, time_scale=SCALE)
    async with (
        running_station(mosquitto.url, cfg) as st,
        console(cfg, mosquitto.url, username="op-alice") as (app, pilot),
    ):
        await press(pilot, "s")  # start, while already executing
        await wait_screen(pilot, lambda s: "start REFUSED: not valid in mode execute" in s)
        # the command went to cmd/op-alice, so the controller's audit event names the sender
        await wait_screen(pilot, lambda s: "op-alice: start -> refused" in s)
        # a destructive command asks first; "n" cancels and nothing is sent
        await press(pilot, "a")
        await wait_screen(pilot, lambda s: "Send abort?" in s)
        await press(pilot, "n")
        await wait_screen(pilot, lambda s: "abort cancelled" in s)
        assert st.controller.station.mode is Mode.execute
        # "y" sends; reset is refused while executing, and the reason is shown
        await press(pilot, "R")
        await wait_screen(pilot, lambda s: "Send reset?" in s)
        await press(pilot, "y")
        await wait_screen(pilot, lambda s: "reset REFUSED: not valid in mode execute" in s)
        # an argument prompt: ack of an alarm that does not exist
        await press(pilot, "k")
        await wait_screen(pilot, lambda s: "alarm id (or all)" in s and ready_to_type(app))
        await press(pilot, *"nope", "enter")
        await wait_screen(pilot, lambda s: "ack REFUSED: no active alarm 'nope'" in s)
        assert st.controller.station.mode is Mode.execute


async def test_estop_key_reaches_the_station(mosquitto: Mosquitto, station_id: str) -> None:
    cfg = station_config(station_id, time_scale=SCALE)
    async with (
        running_station(mosquitto.url, cfg) as st,
        console(cfg, mosquitto.url) as (_, pilot),
    ):
        await st.sim.arrive(1)
        await st.wait_phase("prepare", 10)
        await press(pilot, "e")
        await wait_screen(pilot, lambda s: "E-STOP: stop every motion now" in s)
        await press(pilot, "e")  # the same key again confirms
        await st.wait_mode(Mode.estopped, 5)
        # the reply, or (once the alarms that follow have scrolled it out of the log's few
        # lines) the controller's audit of it
        text = await wait_screen(
            pilot, lambda s: "ESTOPPED" in s and ("estop ok" in s or "estop -> ok" in s)
        )
        assert "e-stop by operator" in text


async def test_console_survives_a_broker_restart(station_id: str) -> None:
    broker = Mosquitto()
    broker.start()
    try:
        cfg = station_config(station_id, time_scale=SCALE, broker__reconnect_max_s=0.3)
        async with (
            running_station(broker.url, cfg),
            console(cfg, broker.url) as (app, pilot),
        ):
            await wait_screen(pilot, lambda s: "EXECUTE" in s and "STALE" not in s)
            broker.kill()
            text = await wait_screen(pilot, lambda s: "DISCONNECTED" in s and "STALE" in s)
            assert "STALE: disconnected" in text
            assert not re.search(r"─ live ─", text), "no panel may still say live"
            assert not app.model.connected
            broker.start()  # the same port
            await wait_screen(
                pilot,
                lambda s: "CONNECTED" in s and "DISCONNECTED" not in s and "STALE" not in s,
                timeout_s=15,
            )
            assert app.model.epoch >= 2 and app.model.from_controller_live(app.model.status)
            assert "reconnected" in screen_text(app)
    finally:
        broker.cleanup()
