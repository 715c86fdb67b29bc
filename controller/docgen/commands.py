"""The doc sections drawn from the operator command table (:mod:`controller.contract.commands`):
the command list, the command tables, the console's keys and the mode diagram."""

from __future__ import annotations

from controller.contract.commands import COMMANDS, CommandSpec, describe_args
from controller.station.machine import mode_diagram


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _needs(spec: CommandSpec) -> str:
    return spec.precondition.needs if spec.precondition else ""


def command_names() -> str:
    """README: the names of the operator commands."""
    names = ", ".join(f"`{c.name}`" for c in COMMANDS if c.operator)
    return f"Operator commands: {names}."


def operator_commands_table() -> str:
    """docs/mqtt-api.md: what integrators send, with its arguments."""
    lines = [
        _row("command", "arguments (`args`)", "valid in → leads to", "needs", "what it does"),
        "|---|---|---|---|---|",
    ]
    lines += [
        _row(f"`{c.name}`", describe_args(c), c.where(), _needs(c), c.summary)
        for c in COMMANDS
        if c.operator
    ]
    return "\n".join(lines)


def command_modes_table() -> str:
    """docs/architecture.md: every trigger of the mode machine, the station's own included."""
    lines = [_row("command", "valid in → leads to", "needs", "what it does"), "|---|---|---|---|"]
    for c in COMMANDS:
        name = f"`{c.name}`" if c.operator else f"`{c.name}` (the station's own)"
        lines.append(_row(name, c.where(), _needs(c), c.summary))
    return "\n".join(lines)


def _key(key: str) -> str:
    """``ctrl+e`` -> ``Ctrl+E``, as keycaps are written."""
    return "+".join(part.capitalize() if len(part) > 1 else part.upper() for part in key.split("+"))


def _confirmation(c: CommandSpec, key: str) -> str:
    if c.urgent:
        return f"**`{key}` again** (or Enter, or `y`); `n`/Esc cancels"
    if c.destructive:
        return "`y` sends, `n`/Esc cancels" + (
            ", showing the exact command" if c.args.model_fields else ""
        )
    return "none"


def console_keys_table() -> str:
    """docs/operations.md: the console's command keys and how each is confirmed."""
    lines = [_row("key", "command", "confirmation"), "|---|---|---|"]
    for c in COMMANDS:
        if c.console is None:
            continue
        key, asks = c.console.key, ", ".join(f.label for f in c.console.fields)
        what = f"`{c.name}`: {c.summary} ({c.where()})" + (f"; asks for {asks}" if asks else "")
        lines.append(_row(f"`{key}`", what, _confirmation(c, key)))
        if c.console.anywhere:
            anywhere = f"`{c.name}` from anywhere, even while typing in a prompt"
            lines.append(_row(f"`{_key(c.console.anywhere)}`", anywhere, f"as `{key}`"))
    return "\n".join(lines)


def mode_diagram_block() -> str:
    """docs/safety.md: the mode machine as built from the table."""
    return f"```mermaid\n{mode_diagram()}\n```"
