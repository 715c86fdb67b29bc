"""Modal screens: confirm a destructive command, and type in a command's arguments.

Confirmation is deliberate but quick. For a destructive command, ``y`` sends and ``n``/Escape
cancels; Enter does nothing, so a stray Enter never aborts a swap. The e-stop is the exception
that must be fast: its key pressed twice (``e`` ``e``), or ``e`` then Enter or ``y``, sends it.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from controller.console.actions import ACTIONS, Action


class ConfirmScreen(ModalScreen[bool]):
    """Ask before sending a destructive command; dismissed with ``True`` to send."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 72; height: auto; padding: 1 2;
        border: thick $warning; background: $surface;
    }
    ConfirmScreen.-estop > Vertical { border: thick $error; background: $error 30%; }
    ConfirmScreen .question { text-style: bold; }
    """
    BINDINGS = [
        Binding("y", "confirm", "send", show=False),
        Binding("n", "cancel", "cancel", show=False),
        Binding("escape", "cancel", "cancel", show=False),
    ]

    fast = False

    def __init__(self, action: Action, text: str) -> None:
        super().__init__()
        self.action_spec = action
        self.text = text
        if self.fast:
            self.add_class("-estop")

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.fast:
                yield Label("E-STOP: stop every motion now (latched)?", classes="question")
                yield Label(
                    f"[b]{self.action_spec.key}[/b] again, [b]Enter[/b] or [b]y[/b] sends it;"
                    " [b]n[/b] or [b]Esc[/b] cancels."
                )
            else:
                yield Label(f"Send [b]{self.text}[/b]?", classes="question")
                yield Label(self.action_spec.help)
                yield Label("[b]y[/b] sends it; [b]n[/b] or [b]Esc[/b] cancels.")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class EstopConfirmScreen(ConfirmScreen):
    """The e-stop's confirmation: the same key again, Enter or ``y`` sends it at once."""

    fast = True
    BINDINGS = [
        *(Binding(a.key, "confirm", "send", show=False, priority=True) for a in ACTIONS if a.fast),
        Binding("enter", "confirm", "send", show=False, priority=True),
    ]


def confirm_screen(action: Action, text: str) -> ConfirmScreen:
    """The dialog that confirms ``action``: the fast one for an urgent command (the e-stop)."""
    return EstopConfirmScreen(action, text) if action.fast else ConfirmScreen(action, text)


class PromptScreen(ModalScreen[dict[str, str] | None]):
    """Type a command's arguments; Enter on the last field submits, Escape cancels."""

    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical {
        width: 80; height: auto; padding: 1 2; border: thick $accent; background: $surface;
    }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]

    def __init__(self, action: Action, hint: str = "") -> None:
        super().__init__()
        self.action_spec = action
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.action_spec.title}[/b]: {self.action_spec.help}")
            if self.hint:
                yield Label(self.hint)
            for f in self.action_spec.fields:
                yield Label(f.label)
                yield Input(value=f.default, id=f"field-{f.name}")
            yield Label("Enter: next / send   Esc: cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        self.dismiss(
            {f.name: inp.value for f, inp in zip(self.action_spec.fields, inputs, strict=True)}
        )

    def action_cancel(self) -> None:
        self.dismiss(None)
