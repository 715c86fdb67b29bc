"""``swapctl console``: the operator's terminal UI, a pure MQTT client of the contract.

The app owns one :class:`OperatorClient` (one bus, which reconnects by itself), feeds every
message into the :class:`ConsoleModel`, and redraws the panels from the model on a short timer.
Keys and the command palette send operator commands through the same path: prompt for
arguments if the command takes any, confirm if it is destructive, send, and log the reply (or
the refusal with its reason, or that no reply came, or that it could not be sent at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from controller.console.actions import ACTIONS, BY_CMD, Action, BadArgument, describe, parse_args
from controller.console.client import OperatorClient
from controller.console.model import ConsoleModel
from controller.console.screens import PromptScreen, confirm_screen
from controller.console.widgets import (
    AlarmsPanel,
    HistoryPanel,
    LivenessPanel,
    LogPanel,
    RackPanel,
    StationBar,
    SwapPanel,
)
from controller.errors import BusError, SwapstationError


class ConsoleApp(App[None]):
    """One station's operator console.

    Args:
        client: an operator client, not started (the app starts and stops it).
        refresh_s: how often the panels are redrawn (real seconds).
        command_timeout_s: how long to wait for a reply before saying none came.
    """

    TITLE = "swapstation console"
    CSS = """
    Screen { layout: vertical; }
    .panel { border: round $primary; padding: 0 1; height: auto; }
    .panel.-stale { border: dashed $warning; text-opacity: 55%; }
    .panel.-stale { border-subtitle-color: $warning; border-subtitle-style: bold; }
    #row-rack { height: auto; }
    #rack { width: 3fr; }
    #liveness { width: 1fr; min-width: 24; }
    #row-lists { height: auto; max-height: 14; }
    #alarms { width: 1fr; }
    #history { width: 1fr; }
    #log { border: round $primary; height: 1fr; min-height: 5; }
    """
    BINDINGS = [
        *(Binding(a.key, f"send('{a.cmd}')", a.title) for a in ACTIONS),
        # E-stop from anywhere, even while typing in a prompt (it still asks to confirm).
        *(
            Binding(a.anywhere, f"send('{a.cmd}')", a.title, show=False, priority=True)
            for a in ACTIONS
            if a.anywhere
        ),
        Binding("ctrl+p", "command_palette", "Palette", priority=True),
        Binding("colon", "command_palette", "Palette", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        client: OperatorClient,
        *,
        refresh_s: float = 0.25,
        command_timeout_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.client = client
        self.model = ConsoleModel(client.topics.station_id)
        self.refresh_s = refresh_s
        self.command_timeout_s = command_timeout_s
        self.sub_title = f"station {client.topics.station_id} on {client.bus.url}" + (
            f" as {client.username}" if client.username else ""
        )
        client.add_listener(self.model.on_message)
        client.bus.on_connect(self._connected)
        client.bus.on_disconnect(self._disconnected)
        self._started = False

    # ---- layout and lifecycle ----------------------------------------------------------------
    def compose(self) -> ComposeResult:
        # Kept as attributes, not queried: a query looks in the screen on top, which is a
        # dialog while one is open, and the panels must keep updating behind it.
        self.station_bar = StationBar(id="station", classes="panel")
        self.swap_panel = SwapPanel(id="swap", classes="panel")
        self.rack_panel = RackPanel(id="rack", classes="panel")
        self.liveness_panel = LivenessPanel(id="liveness", classes="panel")
        self.alarms_panel = AlarmsPanel(id="alarms", classes="panel")
        self.history_panel = HistoryPanel(id="history", classes="panel")
        self.log_panel = LogPanel(id="log", wrap=True, markup=False, max_lines=1000)
        yield self.station_bar
        yield self.swap_panel
        with Horizontal(id="row-rack"):
            yield self.rack_panel
            yield self.liveness_panel
        with Horizontal(id="row-lists"):
            yield self.alarms_panel
            yield self.history_panel
        yield self.log_panel
        yield Footer()

    async def on_mount(self) -> None:
        self.model.note("info", f"connecting to {self.client.bus.url}")
        await self.client.start(wait_s=None)  # never blocks: the bus connects in the background
        self._started = True
        self.redraw()
        self.set_interval(self.refresh_s, self.redraw)

    async def on_unmount(self) -> None:
        if self._started:
            self._started = False
            await self.client.stop()

    async def _connected(self) -> None:
        self.model.sync_connection(True, self.client.bus.connections)

    def _disconnected(self) -> None:
        self.model.connection_down(self.client.bus.last_error)

    def redraw(self) -> None:
        """Redraw every panel from the model (the timer calls this; so do tests)."""
        model = self.model
        model.sync_connection(self.client.bus.connected, self.client.bus.connections)
        if not self.log_panel.is_mounted:  # not yet, or no longer (shutting down)
            return
        self.station_bar.draw(model, self.client.bus.url)
        self.swap_panel.draw(model)
        self.rack_panel.draw(model)
        self.liveness_panel.draw(model)
        self.alarms_panel.draw(model)
        self.history_panel.draw(model)
        self.log_panel.draw(model)

    # ---- commands ----------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (Ctrl+P or ``:``): every operator command, by title."""
        for action in ACTIONS:
            yield SystemCommand(
                f"{action.title} ({action.cmd})",
                action.help + (" [asks to confirm]" if action.confirm else ""),
                lambda a=action: self.request(a),
            )
        yield from super().get_system_commands(screen)

    def action_send(self, cmd: str) -> None:
        """A command key. While a dialog is open only the e-stop key acts."""
        action = BY_CMD[cmd]
        if isinstance(self.screen, ModalScreen) and not action.fast:
            return
        self.request(action)

    def request(self, action: Action) -> None:
        """Prompt for arguments (if any), then confirm (if destructive), then send."""
        if action.fields:
            self.push_screen(
                PromptScreen(action, self._prompt_hint(action)),
                lambda values: self._prompted(action, values),
            )
        else:
            self._confirm(action, {})

    def _prompt_hint(self, action: Action) -> str:
        if action.cmd == "ack" and self.model.alarms is not None:
            ids = [a.id for a in self.model.alarms.value.alarms if not a.acknowledged]
            return "unacknowledged: " + (", ".join(ids) if ids else "none")
        return ""

    def _prompted(self, action: Action, values: dict[str, str] | None) -> None:
        if values is None:
            self.model.note("info", f"{action.cmd} cancelled")
            return
        try:
            args = parse_args(action, values)
        except BadArgument as exc:
            self.model.command_not_sent(action.cmd, str(exc))
            return
        self._confirm(action, args)

    def _confirm(self, action: Action, args: dict[str, Any]) -> None:
        if not action.confirm:
            self.send(action.cmd, args)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send(action.cmd, args)
            else:
                self.model.note("info", f"{describe(action, args)} cancelled")

        self.push_screen(confirm_screen(action, describe(action, args)), answered)

    def send(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        """Send now, in the background; the reply (or its absence) goes to the log."""
        self.run_worker(self._send(cmd, args or {}), group="commands", exit_on_error=False)

    async def _send(self, cmd: str, args: dict[str, Any]) -> None:
        if not self.client.bus.connected:  # refused here, never queued for later
            self.model.command_not_sent(cmd, "not connected to the broker")
            return
        command_id = self.client.new_command_id()
        self.model.command_sent(command_id, cmd, args)
        try:
            reply = await self.client.command(
                cmd, args, timeout_s=self.command_timeout_s, command_id=command_id
            )
        except (BusError, SwapstationError) as exc:
            self.model.command_not_sent(cmd, str(exc))
            return
        if reply is None:
            self.model.command_no_reply(cmd, command_id, self.command_timeout_s)
        else:
            self.model.command_replied(reply, cmd)
        self.redraw()
