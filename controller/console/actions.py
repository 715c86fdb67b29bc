"""What an operator can send from the console: key, title, arguments and whether to confirm.

One table drives the key bindings, the command palette, the prompts and the confirmations, so
they cannot disagree. Every command name is one of the contract's ``OPERATOR_COMMANDS`` (a test
checks it); whether a command is valid *now* is the station's call, never the console's: the
console sends it and shows the reply, refusal and reason included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One argument the operator types in before a command is sent."""

    name: str
    label: str
    default: str = ""
    json: bool = False  # parse the text as JSON (an object), e.g. manual's ``args``


@dataclass(frozen=True)
class Action:
    cmd: str
    key: str
    title: str
    help: str
    confirm: bool = False  # destructive: ask before sending
    fields: tuple[Field, ...] = ()


#: The console's commands, in the order of the footer. Destructive ones (they stop motion, drop
#: a swap, or move hardware by hand) are confirmed; the harmless ones go at once.
ACTIONS: tuple[Action, ...] = (
    Action("start", "s", "Start", "idle -> execute: swap trucks as they arrive"),
    Action("hold", "h", "Hold", "finish the motion under way, start no new one"),
    Action("resume", "r", "Resume", "held/suspended -> execute"),
    Action("stop", "t", "Stop", "execute (no truck in the bay) -> idle"),
    Action(
        "estop", "e", "E-STOP", "emergency stop, latched (e then e/Enter/y confirms)", confirm=True
    ),
    Action("abort", "a", "Abort", "abandon the swap; devices make themselves safe", confirm=True),
    Action("clear", "c", "Clear", "aborted/estopped -> stopped (relay released)", confirm=True),
    Action("reset", "R", "Reset", "stopped -> idle (relay released)", confirm=True),
    Action(
        "ack",
        "k",
        "Ack",
        "acknowledge an alarm by id, or all",
        fields=(Field("alarm_id", "alarm id (or all)", "all"),),
    ),
    Action("maintenance", "m", "Maint.", "idle/stopped -> maintenance"),
    Action("leave_maintenance", "l", "Leave", "maintenance -> stopped"),
    Action(
        "manual",
        "M",
        "Manual",
        "one driver action by hand (maintenance only; interlocks still apply)",
        confirm=True,
        fields=(
            Field("device", "device (arm, bay, door, rack, vehicle, safety)"),
            Field("action", "action (e.g. move, lift, open)"),
            Field("args", "args as JSON", "{}", json=True),
        ),
    ),
    Action(
        "set_location",
        "L",
        "Locate",
        "record where a pack is after inspection (maintenance only)",
        confirm=True,
        fields=(
            Field("pack_id", "pack id"),
            Field("location", "location (slot:<n>, gripper, vehicle:<id>, unknown)"),
        ),
    ),
)

BY_CMD: dict[str, Action] = {a.cmd: a for a in ACTIONS}


class BadArgument(ValueError):
    """What the operator typed cannot be sent (said in the log; nothing is sent)."""


def parse_args(action: Action, values: dict[str, str]) -> dict[str, Any]:
    """The command's ``args`` from the typed text; raises :class:`BadArgument`."""
    out: dict[str, Any] = {}
    for f in action.fields:
        text = values.get(f.name, "").strip()
        if f.json:
            try:
                value = json.loads(text or "{}")
            except ValueError as exc:
                raise BadArgument(f"{f.name} is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise BadArgument(f"{f.name} must be a JSON object")
            out[f.name] = value
        else:
            if not text:
                raise BadArgument(f"{f.name} is empty")
            out[f.name] = text
    return out


def describe(action: Action, args: dict[str, Any]) -> str:
    """The command as the confirmation shows it."""
    if not args:
        return action.cmd
    return f"{action.cmd} " + " ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
