"""What a driver's action is made of, and the checks every driver applies to arguments.

An action is split at the points where a fault can strike it (start, end, halted part-way, a
lie, a drop), so :class:`~simulator.drivers.base.Driver` can run every device's actions, and
every fault kind, with one piece of code.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from controller.contract import MAX_PAYLOAD_BYTES, DriverCommand

_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class Refusal(Exception):
    """An action cannot be done (now): ``code`` goes into ``DriverResult.error_code``."""

    def __init__(self, code: str, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code}: {text}")


def _noop_halt(_progress: float) -> None:
    return None


@dataclass
class Action:
    """What one accepted command does to the world, split at the points a fault can strike.

    ``begin`` runs when the action starts (e.g. the arm is now ``moving``); ``finish`` applies
    the effect at the end and returns the result data; ``halt(progress)`` undoes ``begin`` when
    the action is stopped ``progress`` (0..1) of the way (0: nothing happened); ``lie`` returns
    the data a lying driver reports; ``on_drop`` (arm only) drops the held pack.
    """

    finish: Callable[[], dict[str, Any] | None]
    begin: Callable[[], None] | None = None
    halt: Callable[[float], None] = _noop_halt
    lie: Callable[[], dict[str, Any] | None] | None = None
    on_drop: Callable[[float], None] | None = None
    distance_m: float = 0.0


#: Validates a command's args and returns the physics check, which returns the Action.
Prepare = Callable[[], Action]


@dataclass
class Running:
    """A command under way: what, since when (station seconds), and why it was halted."""

    cmd: DriverCommand
    action: Action
    motion: bool
    started: float
    duration: float
    task: asyncio.Task[None] | None = None
    halt_code: str | None = None
    halt_text: str = ""


def check_args(
    args: dict[str, Any], *, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> None:
    """Refuse (``bad_args``) unknown and missing arguments: a typo is not silently ignored."""
    allowed = set(required) | set(optional)
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise Refusal("bad_args", f"unexpected argument(s) {unknown}")
    missing = [a for a in required if a not in args]
    if missing:
        raise Refusal("bad_args", f"missing argument(s) {missing}")


def slot_arg(args: dict[str, Any], slots: Iterable[int]) -> int:
    """The ``slot`` argument: an integer (not a bool) naming a slot of the rack."""
    slot = args.get("slot")
    if not isinstance(slot, int) or isinstance(slot, bool):
        raise Refusal("bad_args", f"slot must be an integer, got {slot!r}")
    known = sorted(slots)
    if slot not in known:
        raise Refusal("bad_args", f"no slot {slot} in the rack ({known})")
    return slot


def readable_id(payload: bytes) -> tuple[str | None, str | None]:
    """Command id and action of a payload that failed to decode, if they can be read safely."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # also an integer literal over 4300 digits
        return None, None
    if not isinstance(data, dict):
        return None, None
    cmd_id = data.get("id")
    action = data.get("action")
    if not isinstance(cmd_id, str) or not _ID.match(cmd_id):
        return None, None
    return cmd_id, action if isinstance(action, str) else None
