"""What an operator can send from the console: a view of the contract's command table.

The key bindings, the command palette, the prompts and the confirmations are all read from
:data:`controller.contract.commands.COMMANDS` (its ``console`` entries), so they cannot disagree
with each other or with the station. Whether a command is valid *now* is the station's call,
never the console's: the console sends it and shows the reply, refusal and reason included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.contract.commands import (
    COMMANDS,
    CommandSpec,
    ConsoleKey,
    number_fields,
    object_fields,
    optional_fields,
)


@dataclass(frozen=True)
class Field:
    """One argument the operator types in before a command is sent."""

    name: str
    label: str
    default: str = ""
    json: bool = False  # parse the text as JSON (an object), e.g. manual's ``args``
    number: bool = False  # send the text as a number, e.g. recover's ``steps``
    optional: bool = False  # left empty, the argument is left out


@dataclass(frozen=True)
class Action:
    """A command as the console offers it."""

    cmd: str
    key: str
    title: str
    help: str
    confirm: bool = False  # destructive: ask before sending
    fast: bool = False  # urgent: its key again (or Enter) confirms, and it acts over dialogs
    fields: tuple[Field, ...] = ()
    anywhere: str | None = None  # a key that sends it from anywhere, even inside a prompt

    @classmethod
    def of(cls, spec: CommandSpec, console: ConsoleKey) -> Action:
        objects, numbers, optional = object_fields(spec), number_fields(spec), optional_fields(spec)
        return cls(
            cmd=spec.name,
            key=console.key,
            title=console.title,
            help=f"{spec.summary} ({spec.where()})",
            confirm=spec.destructive,
            fast=spec.urgent,
            fields=tuple(
                Field(
                    f.name,
                    f.label,
                    f.default,
                    json=f.name in objects,
                    number=f.name in numbers,
                    optional=f.name in optional,
                )
                for f in console.fields
            ),
            anywhere=console.anywhere,
        )


#: The console's commands, in the order of the footer (the table's order).
ACTIONS: tuple[Action, ...] = tuple(
    Action.of(spec, spec.console) for spec in COMMANDS if spec.console is not None
)

BY_CMD: dict[str, Action] = {a.cmd: a for a in ACTIONS}


class BadArgument(ValueError):
    """What the operator typed cannot be sent (said in the log; nothing is sent)."""


def parse_args(action: Action, values: dict[str, str]) -> dict[str, Any]:
    """The command's ``args`` from the typed text; raises :class:`BadArgument`."""
    out: dict[str, Any] = {}
    for f in action.fields:
        text = values.get(f.name, "").strip()
        if not text and f.optional and not f.json:
            continue
        if f.number:
            try:
                out[f.name] = json.loads(text)
            except ValueError:
                raise BadArgument(f"{f.name} must be a number") from None
            continue
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
