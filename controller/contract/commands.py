"""The operator command table: every command the station knows, defined once, as data.

Everything else reads this table instead of restating it: the station's mode machine is built
from its transitions, the refusals ("not valid in mode X, only in Y; valid now: ...") and the
argument checks come from it, the console takes its keys, prompts and confirmations from it,
and the command tables and the mode diagram in the docs are generated from it (``make docs``;
a test fails when a doc is stale). Adding an operator command is one :class:`CommandSpec` here plus
its behaviour function on the station side (``controller/station/behaviours.py``).

It lives in the contract because both the station and the console (a pure client of the
contract) read it; it is pure data, so third parties may read it too.

The wire format does not depend on this table: an ``OperatorCommand`` is ``{"id", "cmd",
"args"}`` with any ``cmd`` and any ``args`` object, so that every command that can be read
gets the same treatment (recorded with its sender, answered once, its id never executed
twice) even when its name or arguments are wrong; the station then refuses those with a
reason built from the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from controller.contract.common import Part
from controller.contract.drivers import DRIVER_ACTIONS
from controller.contract.operator import Mode
from controller.contract.topics import DeviceId

# ---- the arguments of each command ---------------------------------------------------------


class CommandArgs(Part):
    """The ``args`` of an operator command. Strict: a number is not a string, and an argument
    the command does not take is refused, so a typo never passes for a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArgs(CommandArgs):
    """The command takes no arguments: ``args`` is ``{}`` or left out."""


class AckArgs(CommandArgs):
    alarm_id: str = Field(
        description="the id of an alarm on the list, or `all` for every one not shelved"
    )


class ManualArgs(CommandArgs):
    device: DeviceId = Field(
        description="the driver: `arm`, `bay`, `door`, `rack`, `vehicle`, `safety`"
    )
    action: str = Field(description="one of the driver's actions (see Actions)")
    args: dict[str, Any] | None = Field(default=None, description="the action's arguments")

    @model_validator(mode="after")
    def _known_action(self) -> ManualArgs:
        if self.action not in DRIVER_ACTIONS[self.device]:
            known = ", ".join(DRIVER_ACTIONS[self.device])
            raise ValueError(
                f"argument 'action': {self.device} has no action {self.action!r} (it has {known})"
            )
        return self


class SetLocationArgs(CommandArgs):
    pack_id: str = Field(description="the pack's id")
    location: str = Field(description="`slot:<n>`, `gripper`, `vehicle:<vehicle id>` or `unknown`")


class RecoverArgs(CommandArgs):
    plan: Literal["finish", "give_back"] = Field(
        description="`finish` (the truck leaves with a charged pack) or `give_back` (its own)"
    )
    steps: int | None = Field(
        default=None, ge=1, description="how many of the plan's next steps to run (all: null)"
    )


class ReconcileArgs(CommandArgs):
    adopt: str | None = Field(
        default=None,
        description="`all`, or the pack ids (comma-separated) whose changes to make, as the "
        "preview listed them; left out: the preview only, nothing changes",
    )

    def chosen(self) -> frozenset[str] | None:
        """The pack ids to reconcile (None: every one)."""
        if self.adopt is None or self.adopt.strip() == "all":
            return None
        return frozenset(p.strip() for p in self.adopt.split(",") if p.strip())


#: Longest shelf: a shelved alarm is back by the next shift at the latest (ISA-18.2 wants a
#: time limit on every shelving).
MAX_SHELVE_MINUTES = 12 * 60


class ShelveArgs(CommandArgs):
    alarm_id: str = Field(description="the id of an alarm on the list")
    minutes: float = Field(
        gt=0, le=MAX_SHELVE_MINUTES, description=f"how long, at most {MAX_SHELVE_MINUTES}"
    )
    reason: str = Field(min_length=3, max_length=500, description="why (journaled)")


class UnshelveArgs(CommandArgs):
    alarm_id: str = Field(description="the id of a shelved alarm")


class AlarmHistoryArgs(CommandArgs):
    since: str = Field(description="ISO 8601 time or date (UTC unless it says otherwise)")
    until: str | None = Field(default=None, description="ISO 8601 time or date; default: now")
    limit: int = Field(default=200, ge=1, le=1000, description="at most this many occurrences")

    @model_validator(mode="after")
    def _times(self) -> AlarmHistoryArgs:
        since = parse_time(self.since, "since")
        if self.until is not None and parse_time(self.until, "until") <= since:
            raise ValueError("argument 'until': must be after since")
        return self


def parse_time(text: str, name: str) -> datetime:
    """``text`` (ISO 8601 date or time) as an aware datetime, UTC unless it names a zone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"argument {name!r}: not an ISO 8601 time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class InvalidArguments(ValueError):
    """The ``args`` of a known command do not fit its model; ``reason`` names the argument."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ---- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Precondition:
    """A condition beyond the mode, evaluated by the station (the check registered under
    ``check``), which words the refusal itself because it names what is wrong right now.
    Commands may share a check and word what it ``needs`` each for their own modes."""

    check: str
    needs: str  # what must hold, for the docs


@dataclass(frozen=True)
class PromptField:
    """One argument the console asks the operator to type before sending the command."""

    name: str  # a field of the command's argument model
    label: str
    default: str = ""


@dataclass(frozen=True)
class ConsoleKey:
    """How the console offers a command: its key, its title in the footer and palette, the
    arguments it prompts for, and a key that works even inside a prompt (``anywhere``)."""

    key: str
    title: str
    fields: tuple[PromptField, ...] = ()
    anywhere: str | None = None


@dataclass(frozen=True)
class CommandSpec:
    """One command: what it takes, where it is valid, where it leads, what else it needs.

    ``valid_in`` lists the modes in which it is carried out (in one of its own ``leads_to``
    modes it is accepted and does nothing); ``leads_to`` is the mode it fires the machine into
    (None: it changes no mode). ``destructive`` commands are confirmed in the console;
    ``urgent`` ones never wait behind another command and are confirmed fast. ``operator``
    False marks the station's own triggers, which no operator may send.
    """

    name: str
    summary: str
    valid_in: tuple[Mode, ...]
    leads_to: Mode | None = None
    args: type[CommandArgs] = NoArgs
    precondition: Precondition | None = None
    destructive: bool = False
    urgent: bool = False
    console: ConsoleKey | None = None
    operator: bool = True

    def where(self) -> str:
        """Where it is valid and where it leads, in words: ``held, suspended → execute``."""
        every = set(self.valid_in) == set(Mode)
        sources = "any mode" if every else ", ".join(m.value for m in self.valid_in)
        return f"{sources} → {self.leads_to.value}" if self.leads_to else sources

    def transitions(self) -> list[tuple[Mode, Mode]]:
        """(source, destination) of every mode change this command makes."""
        if self.leads_to is None:
            return []
        return [(mode, self.leads_to) for mode in self.valid_in if mode is not self.leads_to]

    def parse_args(self, args: Mapping[str, Any]) -> CommandArgs:
        """``args`` as this command's model; raises :class:`InvalidArguments` naming the
        argument that is missing, unexpected or wrong."""
        try:
            return self.args.model_validate(dict(args))
        except ValidationError as exc:
            raise InvalidArguments(self._describe(exc)) from None

    def _describe(self, exc: ValidationError) -> str:
        takes = sorted(self.args.model_fields)
        errors = exc.errors()
        extra = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if extra and not takes:
            return f"{self.name} takes no arguments, got {extra}"
        if extra:
            return f"unexpected argument(s) {extra}; {self.name} takes {takes}"
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            return f"missing argument {where!r}"
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"argument {where!r}: {message}" if where else message


ANY_MODE: tuple[Mode, ...] = tuple(Mode)

#: Every command, operator commands first in the console's footer order, then the station's own.
COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "start",
        "swap trucks as they arrive",
        valid_in=(Mode.idle,),
        leads_to=Mode.execute,
        precondition=Precondition(
            "ready_to_start",
            "every driver online, the safety relay ok, the rack reported, no pack `unknown`, "
            "the journal sound and agreeing with the sensors, an empty gripper, the bay normal "
            "(status `bay.normal`)",
        ),
        console=ConsoleKey("s", "Start"),
    ),
    CommandSpec(
        "hold",
        "the motion under way finishes, no new one starts; the swap stays in its phase",
        valid_in=(Mode.execute,),
        leads_to=Mode.held,
        console=ConsoleKey("h", "Hold"),
    ),
    CommandSpec(
        "resume",
        "carry on; commands whose results were lost meanwhile are asked again under their ids",
        valid_in=(Mode.held, Mode.suspended),
        leads_to=Mode.execute,
        precondition=Precondition("resumable", "the light curtain intact, every driver online"),
        console=ConsoleKey("r", "Resume"),
    ),
    CommandSpec(
        "stop",
        "stop waiting for trucks",
        valid_in=(Mode.execute,),
        leads_to=Mode.idle,
        precondition=Precondition("no_swap_under_way", "no swap under way (phase `waiting`)"),
        console=ConsoleKey("t", "Stop"),
    ),
    CommandSpec(
        "estop",
        "emergency stop, latched; also entered when the safety relay reports the e-stop",
        valid_in=ANY_MODE,
        leads_to=Mode.estopped,
        destructive=True,
        urgent=True,
        console=ConsoleKey("e", "E-STOP", anywhere="ctrl+e"),
    ),
    CommandSpec(
        "abort",
        "abandon the swap: every device it touched is told to stop, then aborted",
        valid_in=(Mode.execute, Mode.held, Mode.suspended, Mode.idle),
        leads_to=Mode.aborting,
        destructive=True,
        console=ConsoleKey("a", "Abort"),
    ),
    CommandSpec(
        "clear",
        "take note of the halt; reset follows",
        valid_in=(Mode.aborted, Mode.estopped),
        leads_to=Mode.stopped,
        precondition=Precondition(
            "relay_released", "from `estopped`: the safety relay reports the e-stop released"
        ),
        destructive=True,
        console=ConsoleKey("c", "Clear"),
    ),
    CommandSpec(
        "reset",
        "ready for production again; acknowledged alarms stop being active",
        valid_in=(Mode.stopped,),
        leads_to=Mode.idle,
        precondition=Precondition("relay_released", "the safety relay reports the e-stop released"),
        destructive=True,
        console=ConsoleKey("R", "Reset"),
    ),
    CommandSpec(
        "ack",
        "acknowledge an alarm on the list, or every one shown (all); one that returned to "
        "normal then leaves the list; the sender is recorded",
        valid_in=ANY_MODE,
        args=AckArgs,
        console=ConsoleKey("k", "Ack", (PromptField("alarm_id", "alarm id (or all)", "all"),)),
    ),
    CommandSpec(
        "maintenance",
        "manual moves allowed, automatic ones not",
        valid_in=(Mode.idle, Mode.stopped),
        leads_to=Mode.maintenance,
        console=ConsoleKey("m", "Maint."),
    ),
    CommandSpec(
        "leave_maintenance",
        "end manual work; reset follows",
        valid_in=(Mode.maintenance,),
        leads_to=Mode.stopped,
        console=ConsoleKey("l", "Leave"),
    ),
    CommandSpec(
        "manual",
        "one driver action by hand, behind the same interlocks as in a swap",
        valid_in=(Mode.maintenance,),
        args=ManualArgs,
        destructive=True,
        console=ConsoleKey(
            "M",
            "Manual",
            (
                PromptField("device", "device (arm, bay, door, rack, vehicle, safety)"),
                PromptField("action", "action (e.g. move, lift, open)"),
                PromptField("args", "args as JSON", "{}"),
            ),
        ),
    ),
    CommandSpec(
        "set_location",
        "record where a pack really is, after inspecting it; refused if another pack is there",
        valid_in=(Mode.maintenance,),
        args=SetLocationArgs,
        destructive=True,
        console=ConsoleKey(
            "L",
            "Locate",
            (
                PromptField("pack_id", "pack id"),
                PromptField("location", "location (slot:<n>, gripper, vehicle:<id>, unknown)"),
            ),
        ),
    ),
    CommandSpec(
        "recover",
        "after a swap was cut short, run (the next steps of) a plan the status proposes",
        valid_in=(Mode.maintenance,),
        args=RecoverArgs,
        destructive=True,
        console=ConsoleKey(
            "V",
            "Recover",
            (
                PromptField("plan", "plan (finish, give_back)"),
                PromptField("steps", "how many steps (empty: all)"),
            ),
        ),
    ),
    # ---- the journal against the sensors; alarms as ISA-18.2 has them ----------------------
    CommandSpec(
        "reconcile",
        "adopt the sensors' places for packs the journal has elsewhere; without adopt: the "
        "preview only",
        valid_in=(Mode.idle, Mode.stopped, Mode.aborted, Mode.maintenance),
        args=ReconcileArgs,
        precondition=Precondition(
            "sensors_settled",
            "no swap or halt under way; the rack, arm and vehicle drivers online and reported",
        ),
        destructive=True,
        console=ConsoleKey(
            "Y", "Reconcile", (PromptField("adopt", "adopt: all, or pack ids (empty: preview)"),)
        ),
    ),
    CommandSpec(
        "shelve",
        "hide an alarm from the annunciation for a while, with a reason; it comes back by itself",
        valid_in=ANY_MODE,
        args=ShelveArgs,
        console=ConsoleKey(
            "z",
            "Shelve",
            (
                PromptField("alarm_id", "alarm id"),
                PromptField("minutes", "minutes", "60"),
                PromptField("reason", "reason"),
            ),
        ),
    ),
    CommandSpec(
        "unshelve",
        "put a shelved alarm back on the annunciation now",
        valid_in=ANY_MODE,
        args=UnshelveArgs,
        console=ConsoleKey("Z", "Unshelve", (PromptField("alarm_id", "alarm id"),)),
    ),
    CommandSpec(
        "alarm_history",
        "every alarm on the list between two times: raised, acknowledged, shelved, cleared",
        valid_in=ANY_MODE,
        args=AlarmHistoryArgs,
        console=ConsoleKey(
            "H",
            "Alarm log",
            (
                PromptField("since", "since (ISO date or time, UTC)"),
                PromptField("until", "until (empty: now)"),
                PromptField("limit", "at most", "200"),
            ),
        ),
    ),
    CommandSpec(
        "suspend",
        "between swaps, wait on something external: a charged pack, a driver, the broker",
        valid_in=(Mode.execute,),
        leads_to=Mode.suspended,
        operator=False,
    ),
    CommandSpec(
        "finish_abort",
        "every device the swap touched has been told to stop",
        valid_in=(Mode.aborting,),
        leads_to=Mode.aborted,
        operator=False,
    ),
)

COMMANDS_BY_NAME: Mapping[str, CommandSpec] = {c.name: c for c in COMMANDS}
#: The commands operators may send, in the table's order. Anything else is refused.
OPERATOR_COMMANDS: tuple[str, ...] = tuple(c.name for c in COMMANDS if c.operator)
#: The triggers only the station fires.
INTERNAL_TRIGGERS: frozenset[str] = frozenset(c.name for c in COMMANDS if not c.operator)


def operator_command(name: str) -> CommandSpec | None:
    """The operator command called ``name`` (None for an unknown name or an internal trigger)."""
    spec = COMMANDS_BY_NAME.get(name)
    return spec if spec is not None and spec.operator else None


def offered_in(mode: Mode, commands: Iterable[CommandSpec] = COMMANDS) -> list[CommandSpec]:
    """The operator commands that do something in ``mode``, before any precondition: valid
    there, and not a mere repeat of the mode the station is already in."""
    return [c for c in commands if c.operator and mode in c.valid_in and c.leads_to is not mode]


def _json_types(prop: Mapping[str, Any]) -> list[str]:
    branches = prop.get("anyOf", [prop])
    kinds = [b.get("type", "string" if "enum" in b else "any") for b in branches]
    return [k for k in kinds if k != "null"]


def object_fields(spec: CommandSpec) -> frozenset[str]:
    """The arguments of ``spec`` that take a JSON object (the console parses them as JSON)."""
    props = spec.args.model_json_schema().get("properties", {})
    return frozenset(name for name, prop in props.items() if "object" in _json_types(prop))


def number_fields(spec: CommandSpec) -> frozenset[str]:
    """The arguments of ``spec`` that take a number (the console sends what is typed as one)."""
    props = spec.args.model_json_schema().get("properties", {})
    return frozenset(
        name for name, prop in props.items() if {"integer", "number"} & set(_json_types(prop))
    )


def optional_fields(spec: CommandSpec) -> frozenset[str]:
    """The arguments of ``spec`` that may be left out (an empty prompt leaves them out)."""
    return frozenset(n for n, info in spec.args.model_fields.items() if not info.is_required())


def describe_args(spec: CommandSpec) -> str:
    """The arguments of ``spec`` in words, for the docs and the AsyncAPI document."""
    props = spec.args.model_json_schema().get("properties", {})
    parts = []
    for name, info in spec.args.model_fields.items():
        kind = "/".join(_json_types(props[name])) + ("" if info.is_required() else ", optional")
        parts.append(f"`{name}` ({kind}): {info.description}")
    return "; ".join(parts) or "none"
