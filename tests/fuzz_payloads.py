"""Generated bad payloads for every topic the controller or the simulator subscribes to.

Two things live here:

* :class:`Generator`, a seeded generator (``random.Random``, so the same seed gives the same
  payloads in any process) that mixes the ways a payload can be bad (:data:`CATEGORIES`): random
  bytes, truncated or invalid JSON, JSON that is not an object, wrong types, missing and extra
  fields, valid shapes with wrong values, unknown commands/actions/ops, huge numbers, deep
  nesting, payloads near and over the 64 KiB limit, lone surrogates, bad envelopes (``v``,
  ``ts``), results for unknown command ids, states naming the wrong device, liveness other than
  ``online``/``offline``. A filter (:func:`acceptable`) throws away anything that would be a
  *valid* message with an effect (a valid ``estop``, a state the controller would believe, a
  driver command the simulator would carry out): a fuzz test checks that bad input changes
  nothing, so it must not send good input by accident.
* the fuzz *worker*, ``python -m tests.fuzz_payloads URL STATION``: a separate process that
  publishes a job's payloads (many in flight, with a window so the station's queues never
  overflow) and counts what comes back (replies, error events, ``CommandHandled`` events, the
  drivers' ``failed`` results), so the station under test has its process and core to itself.
  Jobs come as JSON lines on stdin, results go as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.bus import Bus
from controller.contract import (
    DEVICES,
    DRIVER_ACTIONS,
    MAX_PAYLOAD_BYTES,
    OFFLINE,
    ONLINE,
    OPERATOR_COMMANDS,
    ArmState,
    BayState,
    DeviceStateAdapter,
    DoorState,
    DriverCommand,
    OperatorCommand,
    PackInfo,
    PayloadError,
    RackSlotState,
    RackState,
    SafetyState,
    SimControl,
    Topics,
    VehicleInBay,
    VehicleState,
    decode,
    decode_as,
)
from simulator.control import CONTROL_OPS

TS = "2025-05-12T08:31:04.250000Z"
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

#: Topic kinds: what subscribes and what answers.
#: cmd -> controller (a Reply each; an ErrorEvent or a CommandHandled event each)
#: result/state/online -> controller (an ErrorEvent each on ``events``)
#: driver_cmd -> a simulated driver (an ErrorEvent each on ``drivers/<d>/events``)
#: sim_control -> the simulator (an ErrorEvent each on ``sim/events``, source ``simulator``)
KINDS = ("cmd", "result", "state", "online", "driver_cmd", "sim_control")

#: Every way of being bad, with its weight in the mix. Oversized and deeply nested payloads are
#: rarer (they are large or slow to build) but still hundreds per 10,000.
CATEGORIES: dict[str, int] = {
    "random_bytes": 8,
    "random_text": 5,
    "truncated_json": 8,
    "invalid_json": 8,
    "non_object": 5,
    "wrong_types": 10,
    "missing_field": 6,
    "extra_fields": 6,
    "wrong_values": 10,
    "unknown_name": 6,
    "bad_envelope": 6,
    "big_numbers": 5,
    "huge_int": 2,
    "deep_nesting": 2,
    "deep_recursion": 1,
    "near_limit": 1,
    "over_limit": 1,
    "bad_utf8": 3,
    "lone_surrogates": 3,
    "control_chars": 3,
    "empty": 1,
    "wrong_device": 6,
    "unknown_id": 6,
    "liveness_other": 10,
}
#: Categories that only make sense for some kinds.
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "wrong_device": ("result", "state"),
    "unknown_id": ("result",),
    "liveness_other": ("online",),
}

#: The argument names each operator command, driver action and control op takes (others are
#: refused: that is what makes a well-formed command with them bad input).
CMD_ARG_NAMES: dict[str, frozenset[str]] = {
    "ack": frozenset({"alarm_id"}),
    "manual": frozenset({"device", "action", "args"}),
    "set_location": frozenset({"pack_id", "location"}),
}
DRIVER_ARG_NAMES: dict[str, frozenset[str]] = {
    "move": frozenset({"target", "slot"}),
    "dock": frozenset({"slot"}),
    "undock": frozenset({"slot"}),
}
CONTROL_ARG_NAMES: dict[str, frozenset[str]] = {
    "estop": frozenset({"pressed"}),
    "light_curtain": frozenset({"broken"}),
    "arrive": frozenset({"count"}),
    "inject": frozenset({"spec"}),
    "disconnect": frozenset({"device"}),
    "reconnect": frozenset({"device"}),
}
_NONE: frozenset[str] = frozenset()
BIG_NUMBERS = (
    *("1e999", "-1e999", "1e-999", "NaN", "Infinity", "-Infinity"),
    *(str(2**63), str(-(2**64)), "9" * 400, "0." + "0" * 400 + "1"),
)
UNKNOWN_WORDS = (
    "fly",
    "START",
    "Start",
    "start ",
    "reboot",
    "self_destruct",
    "open_pod_bay_doors",
    "drop_table",
    "resume!",
    "estop2",
    "__init__",
    "../cmd",
    "💥",
)


@dataclass(frozen=True)
class Target:
    """One subscribed topic: a short name for tables, the topic, its kind, its device."""

    name: str
    topic: str
    kind: str
    device: str | None = None


def targets(topics: Topics, user: str = "fuzzer") -> list[Target]:
    """Every topic the controller subscribes to (``cmd``, ``cmd/<user>``, each driver's
    ``result``, ``state`` and ``online``), then every topic the simulator subscribes to (each
    driver's ``cmd``, ``sim/control``)."""
    out = [
        Target("cmd", topics.cmd, "cmd"),
        Target(f"cmd/{user}", topics.cmd_from(user), "cmd"),
    ]
    for d in DEVICES:
        out += [
            Target(f"{d}/result", topics.driver_result(d), "result", d),
            Target(f"{d}/state", topics.driver_state(d), "state", d),
            Target(f"{d}/online", topics.driver_online(d), "online", d),
        ]
    out += [Target(f"{d}/cmd", topics.driver_cmd(d), "driver_cmd", d) for d in DEVICES]
    out.append(Target("sim/control", topics.sim_control, "sim_control"))
    return out


# ---- oracles: what the documentation says must come back ------------------------------------


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def reply_id(payload: bytes) -> str:
    """The id a Reply to ``payload`` echoes: the command id if one can be read (a string, and
    valid Unicode: a lone surrogate cannot be sent back), else ``''``."""
    data = _loads(payload)
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        text = str(data["id"])[:256]
        try:
            text.encode()
        except UnicodeEncodeError:
            return ""
        return text
    return ""


def driver_answers_failed(payload: bytes) -> bool:
    """A driver answers a bad command with a ``failed`` result when its id can be read (a JSON
    object whose ``id`` is a valid command id, within the size limit)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return False
    data = _loads(payload)
    return (
        isinstance(data, dict) and isinstance(data.get("id"), str) and bool(_ID.match(data["id"]))
    )


def _decodes(model: Any, payload: bytes) -> Any:
    try:
        return decode(model, payload)
    except (PayloadError, ValueError, RecursionError):
        return None


def acceptable(target: Target, payload: bytes) -> bool:
    """False for a payload that is *valid* input with an effect: the fuzz must not send it."""
    kind = target.kind
    if kind == "cmd":
        command = _decodes(OperatorCommand, payload)
        if command is None or command.cmd not in OPERATOR_COMMANDS:
            return True
        if set(command.args) - CMD_ARG_NAMES.get(command.cmd, _NONE):
            return True  # refused: an argument the command does not take
        if command.cmd in ("manual", "set_location"):
            return True  # refused outside maintenance (the fuzzed station is in execute)
        # ack: refused unless "all" (no alarm is active, so no other id names one)
        return command.cmd == "ack" and command.args.get("alarm_id") != "all"
    if kind == "state":
        try:
            state = decode_as(DeviceStateAdapter, payload)
        except (PayloadError, ValueError, RecursionError):
            return True
        return state.device != target.device
    if kind == "online":
        return payload.decode("utf-8", errors="replace").strip() not in (ONLINE, OFFLINE, "")
    if kind == "driver_cmd":
        command = _decodes(DriverCommand, payload)
        if command is None or command.action not in DRIVER_ACTIONS[target.device or ""]:
            return True
        # every planner refuses unknown argument names (bad_args); stop takes any arguments
        extra = set(command.args) - DRIVER_ARG_NAMES.get(command.action, _NONE)
        return command.action != "stop" and bool(extra)
    if kind == "sim_control":
        control = _decodes(SimControl, payload)
        if control is None or control.op not in CONTROL_OPS:
            return True
        return bool(set(control.args) - CONTROL_ARG_NAMES.get(control.op, _NONE))
    return True  # results: every one is for an unknown command id


# ---- the generator -------------------------------------------------------------------------


def _pack(rng: random.Random) -> dict[str, Any]:
    return PackInfo(
        id=f"P-{rng.randint(1000, 9999)}",
        type="HT-282",
        soc=round(rng.random(), 3),
        capacity_kwh=282.0,
    ).model_dump(mode="json")


def valid_state(device: str, rng: random.Random) -> dict[str, Any]:
    """A valid retained state of ``device`` (to be sent on *another* device's topic, or
    mutated into an invalid one)."""
    pack = _pack(rng) if rng.random() < 0.5 else None
    if device == "arm":
        model: Any = ArmState(position=rng.choice(["home", "vehicle", "slot:3", "moving"]))
        if pack:
            model = model.model_copy(update={"holding": PackInfo(**pack)})
    elif device == "bay":
        model = BayState(vehicle=VehicleInBay(plate="YU-D00001", stopped=True), secured=True)
    elif device == "door":
        model = DoorState(position=rng.choice(["open", "closed", "moving"]))
    elif device == "rack":
        model = RackState(slots=[RackSlotState(slot=n, charger_kw=240.0) for n in range(1, 9)])
    elif device == "vehicle":
        model = VehicleState(connected=True, vehicle_id="CQ-T9999", hv_on=False)
    else:
        model = SafetyState(estop_pressed=rng.random() < 0.5, light_curtain_broken=True)
    data: dict[str, Any] = model.model_dump(mode="json")
    data["ts"] = TS
    return data


def _nest(depth: int, leaf: Any, rng: random.Random) -> Any:
    for _ in range(depth):
        leaf = [leaf] if rng.random() < 0.5 else {"a": leaf}
    return leaf


def _deep_text(depth: int, rng: random.Random) -> str:
    """Nesting as text: building it as objects would hit Python's own recursion limit."""
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * depth + "0" + closer * depth


class Generator:
    """Bad payloads for one target, reproducible from ``seed``.

    Args:
        target: the topic and its kind.
        seed: any int; the same seed and target give the same payloads.
        exclude: categories to leave out (known bugs under investigation).
        tag: prefix of command ids (unique per target, so decodable commands never repeat an
            id: a repeated id would get the first answer again, as documented).
    """

    def __init__(
        self, target: Target, seed: int, *, exclude: frozenset[str] = frozenset(), tag: str = "fz"
    ) -> None:
        self.target = target
        self.rng = random.Random(f"{seed}:{target.name}")
        self.tag = tag
        self.seq = 0
        kind = target.kind
        cats = [c for c in CATEGORIES if c not in exclude and kind in _ONLY_FOR.get(c, (kind,))]
        if kind == "online":  # plain text: the JSON-structure categories mean little there
            cats = [c for c in cats if c not in ("missing_field", "wrong_device", "unknown_id")]
        self.categories = cats
        self.weights = [CATEGORIES[c] for c in cats]

    # ---- the public face ----------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        while True:
            yield self.next()

    def next(self) -> tuple[str, bytes]:
        """The next (category, payload) that the filter accepts."""
        while True:
            category = self.rng.choices(self.categories, self.weights)[0]
            payload = self.make(category)
            if acceptable(self.target, payload):
                return category, payload

    def take(self, n: int) -> list[tuple[str, bytes]]:
        return [self.next() for _ in range(n)]

    # ---- building blocks ----------------------------------------------------------------
    def new_id(self) -> str:
        self.seq += 1
        return f"{self.tag}-{self.seq}"

    def bad_id(self) -> Any:
        """An id that is *not* a valid command id (so it can never repeat a valid one)."""
        rng = self.rng
        return rng.choice(
            [
                "",
                "has space",
                "x" * rng.randint(65, 400),
                "semi;colon",
                "slash/id",
                "ünïcode",
                rng.randint(-(10**6), 10**6),
                None,
                ["fz-1"],
                {"id": "fz-1"},
                1.5,
                True,
            ]
        )

    def junk(self, depth: int = 0) -> Any:
        """Any JSON value."""
        rng = self.rng
        pick = rng.randrange(10 if depth < 2 else 7)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.randint(-(10**12), 10**12)
        if pick == 3:
            return rng.uniform(-1e6, 1e6)
        if pick in (4, 5, 6):
            return self.text(rng.randint(0, 20))
        if pick in (7, 8):
            return [self.junk(depth + 1) for _ in range(rng.randint(0, 3))]
        return {
            self.text(rng.randint(1, 8)): self.junk(depth + 1) for _ in range(rng.randint(0, 3))
        }

    def text(self, n: int) -> str:
        rng = self.rng
        alphabet = string.ascii_letters + string.digits + " _-.:/+#'\"\\{}[]éß日本💥\t\n"
        return "".join(rng.choice(alphabet) for _ in range(n))

    def wrong_type(self, value: Any) -> Any:
        """A JSON value of another type than ``value``."""
        options: list[Any] = [None, True, 0, -1, 3.25, "text", [], [1, 2], {}, {"a": 1}]
        options = [o for o in options if type(o) is not type(value)]
        return self.rng.choice(options)

    def base(self) -> dict[str, Any]:
        """A valid-shaped message for the target's kind (mutated into a bad one after)."""
        rng, kind, device = self.rng, self.target.kind, self.target.device
        if kind == "cmd":
            cmd = rng.choice([*OPERATOR_COMMANDS, *UNKNOWN_WORDS])
            return {"v": 1, "ts": TS, "id": self.new_id(), "cmd": cmd, "args": self.cmd_args(cmd)}
        if kind == "result":
            actions = sorted({a for acts in DRIVER_ACTIONS.values() for a in acts})
            return {
                "v": 1,
                "ts": TS,
                "id": self.new_id(),
                "device": device,
                "action": rng.choice(actions),
                "status": rng.choice(["accepted", "done", "failed"]),
                "error_code": rng.choice([None, "busy", "estop"]),
                "error": None,
                "data": {},
            }
        if kind == "state":
            return valid_state(device or "arm", rng)
        if kind == "driver_cmd":
            action = rng.choice([*DRIVER_ACTIONS[device or "arm"], *UNKNOWN_WORDS])
            return {"v": 1, "ts": TS, "id": self.new_id(), "action": action, "args": {}}
        if kind == "sim_control":
            op = rng.choice([*CONTROL_OPS, *UNKNOWN_WORDS])
            return {"v": 1, "ts": TS, "id": rng.choice([None, self.new_id()]), "op": op, "args": {}}
        return {"online": True}

    def cmd_args(self, cmd: str) -> dict[str, Any]:
        rng = self.rng
        if cmd == "ack":
            return {"alarm_id": rng.choice(["A-1", "nope", 5, None, ""])}
        if cmd == "manual":
            return {"device": rng.choice(DEVICES), "action": "move", "args": {"target": "home"}}
        if cmd == "set_location":
            return {"pack_id": "P-1001", "location": rng.choice(["slot:1", "gripper", "unknown"])}
        return {}

    # ---- categories ---------------------------------------------------------------------
    def make(self, category: str) -> bytes:
        maker: Callable[[], bytes] = getattr(self, f"_{category}")
        return maker()

    def _dump(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=self.rng.random() < 0.5).encode()

    def _random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, 300))

    def _random_text(self) -> bytes:
        return self.text(self.rng.randint(1, 200)).encode()

    def _truncated_json(self) -> bytes:
        whole = self._dump(self.base())
        return whole[: self.rng.randint(1, len(whole) - 1)]

    def _invalid_json(self) -> bytes:
        rng = self.rng
        whole = self._dump(self.base()).decode()
        templates = [
            whole.replace('"', "'"),
            whole.replace('"', "", 2),
            whole[:-1] + ",}",
            whole + "}",
            whole + whole,
            "{" + whole,
            whole.replace(":", " ", 1),
            whole.replace("1", "01", 1),
            "{id: 1, cmd: start}",
            '{"a" 1}',
            "tru",
            "nul",
            "[}",
            "{}}",
            '"unterminated',
        ]
        text = rng.choice(templates)
        if rng.random() < 0.3 and text:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice("{}[]:,\"'\\") + text[i + 1 :]
        return text.encode()

    def _non_object(self) -> bytes:
        rng = self.rng
        value = rng.choice(
            [[], [self.base()], 1, -0.5, "start", None, True, False, "online", [1, [2, [3]]]]
        )
        return json.dumps(value).encode()

    def _wrong_types(self) -> bytes:
        doc = self.base()
        for key in self.rng.sample(sorted(doc), k=min(len(doc), self.rng.randint(1, 3))):
            doc[key] = self.wrong_type(doc[key])  # each key once: never back to a valid type
        return self._dump(doc)

    def _missing_field(self) -> bytes:
        doc = self.base()
        required = [k for k in doc if k not in ("v", "ts", "args", "data", "error", "error_code")]
        for key in self.rng.sample(required, k=min(len(required), self.rng.randint(1, 2))):
            del doc[key]
        return self._dump(doc)

    def _extra_fields(self) -> bytes:
        doc = self.base()
        for _ in range(self.rng.randint(1, 3)):
            doc[self.rng.choice(["extra", "x", "ID", "Id", "priority", "user", "sig", "🔑"])] = (
                self.junk()
            )
        return self._dump(doc)

    def _wrong_values(self) -> bytes:
        rng, kind = self.rng, self.target.kind
        doc = self.base()
        if kind == "cmd":  # known commands with arguments they do not take or of a wrong type
            doc["cmd"] = rng.choice(OPERATOR_COMMANDS)
            doc["args"] = rng.choice(
                [
                    {"speed": 3},
                    {"force": True},
                    {"alarm_id": 5},
                    {"device": 1, "action": None},
                    {"pack_id": "P-1", "location": "slot:99", "why": "x"},
                    {"args": "not an object", "device": "arm", "action": "move", "x": 1},
                    {"": ""},
                ]
            )
        elif kind == "result":
            doc.update(
                rng.choice(
                    [
                        {"status": rng.choice(["finished", "DONE", "", "ok"])},
                        {"error_code": "x" * 65},
                        {"error": "e" * 1001},
                        {"data": rng.choice([[], "done", 1])},
                        {"device": rng.choice(["", "robot", "ARM", "arm "])},
                    ]
                )
            )
        elif kind == "state":
            doc.update(
                rng.choice(
                    [
                        {"device": "robot"},
                        {"position": "ajar"} if doc["device"] == "door" else {"busy": "yes"},
                        {"queue_length": -1} if doc["device"] == "bay" else {"fault": 5},
                        {"estop_pressed": "no"} if doc["device"] == "safety" else {"busy": 2},
                        {"slots": [{"slot": 0, "charger_kw": -1}]},
                        {"holding": {"id": "P 1", "type": "HT", "soc": 1.5, "capacity_kwh": 0}},
                    ]
                )
            )
        elif kind == "driver_cmd":  # a known action with an argument it does not take
            actions = [a for a in DRIVER_ACTIONS[self.target.device or "arm"] if a != "stop"]
            doc["action"] = rng.choice(actions or ["stop"])
            doc["args"] = rng.choice(
                [
                    {"target": "moon"},
                    {"slot": 99, "speed": 3},
                    {"target": "slot", "slot": "7", "extra": 1},
                    {"force": True},
                    {"slot": True, "x": None},
                ]
            )
        elif kind == "sim_control":  # known ops with bad arguments
            doc["op"] = rng.choice(CONTROL_OPS)
            doc["args"] = rng.choice(
                [
                    {"pressed": "yes", "extra": 1},
                    {"broken": 1, "why": "x"},
                    {"count": 0, "x": 1},
                    {"count": 1001, "speed": 1},
                    {"spec": "arm.fly:fail", "x": 1},
                    {"device": "robot", "x": 1},
                    {"bogus": True},
                ]
            )
        else:
            return self._liveness_other()
        return self._dump(doc)

    def _unknown_name(self) -> bytes:
        doc = self.base()
        key = {"cmd": "cmd", "driver_cmd": "action", "sim_control": "op", "result": "action"}
        word = self.rng.choice(UNKNOWN_WORDS)
        if self.target.kind == "state":
            doc["device"] = word
        elif self.target.kind in key:
            doc[key[self.target.kind]] = word
        else:
            return word.encode()
        return self._dump(doc)

    def _bad_envelope(self) -> bytes:
        rng = self.rng
        doc = self.base()
        if rng.random() < 0.5:
            doc["v"] = rng.choice([0, 2, -1, "1", 1.5, True, None, 10**20, [1]])
        else:
            doc["ts"] = rng.choice(
                ["yesterday", "2025-05-12T08:31:04", "2025-13-45T99:99:99Z", "", 12345, None, []]
            )
        return self._dump(doc)

    def _big_numbers(self) -> bytes:
        rng = self.rng
        doc = self.base()
        key = rng.choice(sorted(doc))
        text = self._dump({**doc, key: "__BIG__"}).decode()
        big = rng.choice(BIG_NUMBERS)
        return text.replace('"__BIG__"', big).encode()

    def _huge_int(self) -> bytes:
        """An integer with more digits than Python converts by default (4300)."""
        doc = self.base()
        key = self.rng.choice(sorted(doc))
        text = self._dump({**doc, key: "__BIG__"}).decode()
        return text.replace('"__BIG__"', "7" * self.rng.randint(4301, 6000)).encode()

    def _deep_nesting(self) -> bytes:
        """Deeper than the 32 levels a payload may have, shallower than the JSON parser's
        recursion limit."""
        doc = self.base()
        key = self.rng.choice(sorted(doc))
        doc[key] = _nest(self.rng.randint(33, 400), self.junk(2), self.rng)
        return self._dump(doc)

    def _deep_recursion(self) -> bytes:
        """So deep that Python's JSON parser raises RecursionError (a few KB)."""
        depth = self.rng.randint(1200, 30_000)
        if self.rng.random() < 0.5:
            return _deep_text(depth, self.rng).encode()
        text = self._dump({**self.base(), "args": "__DEEP__"}).decode()
        return text.replace('"__DEEP__"', _deep_text(depth, self.rng)).encode()

    def _sized(self, size: int) -> bytes:
        """A bad payload of exactly ``size`` bytes (an extra field padded out, or raw text)."""
        if self.target.kind == "online":
            return (b"online" + b" x" * size)[:size]
        doc = self.base()
        doc["pad"] = ""
        empty = len(self._dump(doc))
        doc["pad"] = "p" * max(0, size - empty)
        data = json.dumps(doc).encode()
        return data if len(data) == size else data[:size]

    def _near_limit(self) -> bytes:
        return self._sized(self.rng.randint(MAX_PAYLOAD_BYTES - 4096, MAX_PAYLOAD_BYTES))

    def _over_limit(self) -> bytes:
        top = self.rng.choice([MAX_PAYLOAD_BYTES + 16, MAX_PAYLOAD_BYTES + 4096, 200_000])
        return self._sized(self.rng.randint(MAX_PAYLOAD_BYTES + 1, top))

    def _bad_utf8(self) -> bytes:
        """Bytes that are not UTF-8, inside otherwise well-formed JSON."""
        rng = self.rng
        text = self._dump(self.base())
        i = rng.randrange(len(text))
        return (
            text[:i]
            + rng.choice([b"\xff", b"\xc3\x28", b"\x80", b"\xf8\x88\x80\x80\x80"])
            + text[i:]
        )

    def _lone_surrogates(self) -> bytes:
        """JSON escapes of lone UTF-16 surrogates (valid JSON, not valid Unicode), in a field, or
        in a key and a value of ``args``/``data``."""
        rng = self.rng
        doc = self.base()
        lone = rng.choice(["\\ud800", "\\udfff", "a\\ud83d", "\\udc00b"])
        nested = "args" if "args" in doc else "data" if "data" in doc else None
        if rng.random() < 0.2:  # raw UTF-8 bytes of a surrogate: json.loads lets them through
            text = self._dump(doc)
            i = rng.randrange(len(text))
            return text[:i] + b"\xed\xa0\x80" + text[i:]
        if nested is None or rng.random() < 0.5:
            key = rng.choice([k for k in doc if k not in ("v", "ts")] or ["v"])
            text = json.dumps({**doc, key: "__S__"})
            return text.replace('"__S__"', f'"{lone}"').encode()
        text = json.dumps({**doc, nested: {"__K__": "__S__"}})
        return text.replace('"__K__"', f'"k{lone}"').replace('"__S__"', f'"{lone}"').encode()

    def _control_chars(self) -> bytes:
        doc = self.base()
        key = self.rng.choice([k for k in doc if k not in ("v", "ts")] or ["v"])
        doc[key] = self.rng.choice(["\x00", "a\x00b", "\n", "\r\n", "\u2028", "\ufeff", "\x7f"])
        return self._dump(doc)

    def _empty(self) -> bytes:
        return self.rng.choice([b"", b" ", b"\n", b"{}", b"[]", b"null", b'""'])

    def _wrong_device(self) -> bytes:
        rng, device = self.rng, self.target.device or "arm"
        others = [d for d in DEVICES if d != device]
        if self.target.kind == "state":
            return self._dump(valid_state(rng.choice(others), rng))
        doc = self.base()
        doc["device"] = rng.choice(others)
        return self._dump(doc)

    def _unknown_id(self) -> bytes:
        """A well-formed result for a command id the controller never sent."""
        doc = self.base()
        doc["id"] = self.rng.choice([doc["id"], "arm-999999-0.000", "bay-1-1.0", "x"])
        return self._dump(doc)

    def _liveness_other(self) -> bytes:
        rng = self.rng
        return rng.choice(
            [
                b"ONLINE",
                b"Offline",
                b"on",
                b"off",
                b"1",
                b"0",
                b"true",
                b'"online"',
                b"online!",
                b"online\x00",
                b"on line",
                b"\xffonline",
                b"offline offline",
                b'{"online": true}',
                b"onl",
                b"\xe2\x80\x8bonline",  # zero-width space: not stripped
                self.text(rng.randint(1, 30)).encode(),
            ]
        )


def payloads(
    target: Target, n: int, seed: int, *, exclude: frozenset[str] = frozenset(), tag: str = "fz"
) -> list[tuple[str, bytes]]:
    return Generator(target, seed, exclude=exclude, tag=tag).take(n)


# ---- the worker process --------------------------------------------------------------------


@dataclass
class Tally:
    """What came back during one job."""

    replies: list[tuple[str, bool]] = field(default_factory=list)
    #: error events by (source, topic)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    error_samples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    handled: Counter[str] = field(default_factory=Counter)
    #: ``failed`` results the drivers sent, by device
    failed_results: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0


class Worker:
    def __init__(self, url: str, station: str) -> None:
        self.topics = Topics(station)
        self.tally = Tally()
        self.bus = Bus(url, client_id=f"fuzz-worker-{station}", max_payload_bytes=1 << 20)

    async def start(self) -> None:
        t = self.topics
        await self.bus.subscribe(t.reply, self._on_reply)
        await self.bus.subscribe(t.events, self._on_event)
        await self.bus.subscribe(f"{t.base}/sim/events", self._on_event)  # sim/control's
        await self.bus.subscribe(f"{t.base}/drivers/+/events", self._on_event)
        await self.bus.subscribe(f"{t.base}/drivers/+/result", self._on_result)
        await self.bus.start()

    async def _on_reply(self, topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            self.tally.replies.append((str(data["id"]), bool(data["ok"])))
        except (ValueError, KeyError, TypeError):
            self.tally.undecodable += 1

    async def _on_event(self, topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
            kind = data.get("kind")
        except (ValueError, AttributeError, RecursionError):
            self.tally.undecodable += 1
            return
        if kind == "error":
            key = (str(data.get("source")), str(data.get("topic")))
            self.tally.errors[key] += 1
            samples = self.tally.error_samples.setdefault(key, [])
            if len(samples) < 5:
                samples.append(data)
        elif kind == "command":
            self.tally.handled[str(data.get("id"))] += 1

    async def _on_result(self, topic: str, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except (ValueError, RecursionError):
            return  # our own fuzz of the result topics
        if isinstance(data, dict) and data.get("status") == "failed":
            self.tally.failed_results[str(data.get("device"))] += 1

    def _primary(self, target: Target) -> int:
        """Answers that pace the job (one per payload, or per non-ignored payload)."""
        tally = self.tally
        if target.kind == "cmd":
            return len(tally.replies)
        if target.kind == "driver_cmd":
            return tally.errors[(target.device or "", target.topic)]
        if target.kind == "sim_control":
            return tally.errors[("simulator", target.topic)]
        return tally.errors[("controller", target.topic)]

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        target = Target(**job["target"])
        n, seed, window = int(job["n"]), int(job["seed"]), int(job.get("window", 150))
        settle_s = float(job.get("settle_s", 10.0))
        tag = str(job.get("tag", "fz"))
        made = payloads(target, n, seed, exclude=frozenset(job.get("exclude", ())), tag=tag)
        ignored = [p == b"" for _, p in made] if target.kind == "state" else [False] * n
        expected = n - sum(ignored)
        self.tally = Tally()
        started = time.monotonic()
        sent = skipped = 0
        stalled_since = time.monotonic()
        last_seen = -1
        while sent < n:
            seen = self._primary(target)
            if sent - skipped - seen > window:
                if seen != last_seen:
                    last_seen, stalled_since = seen, time.monotonic()
                elif time.monotonic() - stalled_since > settle_s:
                    break  # the station stopped answering: report what we have
                await asyncio.sleep(0.001)
                continue
            batch = made[sent : sent + 100]
            await asyncio.gather(*(self.bus.publish(target.topic, p) for _, p in batch))
            skipped += sum(ignored[sent : sent + len(batch)])
            sent += len(batch)
        published_s = time.monotonic() - started
        # wait for the answers: until all are in, or nothing new came for settle_s
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < settle_s:
            seen = self._seen()
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            if self._done(target, expected):
                break
            await asyncio.sleep(0.005)
        answered_s = time.monotonic() - started
        await asyncio.sleep(float(job.get("drain_s", 0.3)))  # anything more is one too many
        return self._report(
            target,
            made=made,
            ignored=ignored,
            sent=sent,
            published_s=published_s,
            answered_s=answered_s,
        )

    def _seen(self) -> int:
        """Every answer of any kind so far (progress, for the quiet timeout)."""
        t = self.tally
        return len(t.replies) + t.errors.total() + t.handled.total() + t.failed_results.total()

    def _done(self, target: Target, expected: int) -> bool:
        if self._primary(target) < expected:
            return False
        if target.kind == "driver_cmd":
            failed = self.tally.failed_results[target.device or ""]
            knock_on = self.tally.errors[("controller", self.topics.driver_result(target.device))]
            return knock_on >= failed
        if target.kind == "cmd":
            handled = sum(self.tally.handled.values())
            return self.tally.errors[("controller", target.topic)] + handled >= expected
        return True

    def _report(
        self,
        target: Target,
        *,
        made: list[tuple[str, bytes]],
        ignored: list[bool],
        sent: int,
        published_s: float,
        answered_s: float,
    ) -> dict[str, Any]:
        tally = self.tally
        sent_payloads = [p for _, p in made[:sent]]
        report: dict[str, Any] = {
            "target": asdict(target),
            "sent": sent,
            "ignored": sum(ignored[:sent]),
            "published_s": round(published_s, 3),
            "answered_s": round(answered_s, 3),
            "categories": dict(Counter(c for c, _ in made[:sent])),
            "bytes": sum(len(p) for p in sent_payloads),
            "undecodable_answers": tally.undecodable,
            "problems": [],
        }
        problems: list[str] = report["problems"]
        if target.kind == "cmd":
            wanted = Counter(reply_id(p) for p in sent_payloads)
            got = Counter(i for i, _ in tally.replies)
            report["replies"] = len(tally.replies)
            report["replies_ok"] = sum(ok for _, ok in tally.replies)
            report["error_events"] = tally.errors[("controller", target.topic)]
            report["command_events"] = sum(tally.handled.values())
            if got != wanted:
                missing = wanted - got
                extra = got - wanted
                problems.append(
                    f"replies by id differ: {sum(missing.values())} missing "
                    f"(e.g. {list(missing)[:3]}), {sum(extra.values())} extra "
                    f"(e.g. {list(extra)[:3]})"
                )
            if report["replies_ok"]:
                problems.append(f"{report['replies_ok']} bad command(s) answered ok")
            if report["error_events"] + report["command_events"] != sent:
                problems.append(
                    f"{report['error_events']} error events + {report['command_events']} "
                    f"command events for {sent} commands (want one of the two each)"
                )
            twice = [i for i, c in tally.handled.items() if c > 1]
            if twice:
                problems.append(f"command ids handled twice: {twice[:3]}")
        elif target.kind == "driver_cmd":
            device = target.device or ""
            report["error_events"] = tally.errors[(device, target.topic)]
            report["failed_results"] = tally.failed_results[device]
            report["expected_failed_results"] = sum(driver_answers_failed(p) for p in sent_payloads)
            report["knock_on"] = tally.errors[("controller", self.topics.driver_result(device))]
            if report["error_events"] != sent:
                problems.append(f"{report['error_events']} driver error events for {sent}")
            if report["failed_results"] != report["expected_failed_results"]:
                problems.append(
                    f"{report['failed_results']} failed results, want "
                    f"{report['expected_failed_results']} (one per readable id)"
                )
            if report["knock_on"] != report["failed_results"]:
                problems.append(
                    f"controller reported {report['knock_on']} of {report['failed_results']} "
                    "results for unknown ids"
                )
        else:
            source = "simulator" if target.kind == "sim_control" else "controller"
            report["error_events"] = tally.errors[(source, target.topic)]
            want = sent - report["ignored"]
            if report["error_events"] != want:
                problems.append(f"{report['error_events']} error events, want {want}")
        others = {
            f"{s} {t}": c
            for (s, t), c in tally.errors.items()
            if t != target.topic
            and not (target.kind == "driver_cmd" and t.endswith("/result") and s == "controller")
        }
        if others:
            problems.append(f"error events about other topics: {others}")
        problems += self._check_samples(target, sent_payloads)
        report["samples"] = [
            {k: e.get(k) for k in ("source", "topic", "error", "payload_excerpt")}
            for samples in tally.error_samples.values()
            for e in samples[:2]
        ]
        return report

    def _check_samples(self, target: Target, sent: list[bytes]) -> list[str]:
        """Sample-check the error events: right topic, a reason, an excerpt of a payload sent."""
        problems = []
        texts = {p[:60].decode("utf-8", errors="replace") for p in sent}
        for (source, topic), samples in self.tally.error_samples.items():
            if topic != target.topic:
                continue
            for event in samples:
                error, excerpt = event.get("error"), event.get("payload_excerpt", "")
                if not error or not isinstance(error, str):
                    problems.append(f"error event without a reason: {event}")
                head = str(excerpt)[:40]
                if head and not any(t.startswith(head) for t in texts):
                    problems.append(f"excerpt {head!r} is not the start of any payload sent")
                if target.kind != "driver_cmd" and source not in ("controller", "simulator"):
                    problems.append(f"error event from {source!r}")
        return problems[:5]


async def _worker_main(url: str, station: str) -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # "pending publish calls" warnings
    worker = Worker(url, station)
    await worker.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    try:
        while line := await reader.readline():
            report = await worker.run(json.loads(line))
            sys.stdout.write(json.dumps(report) + "\n")
            sys.stdout.flush()
    finally:
        await worker.bus.stop()


if __name__ == "__main__":
    asyncio.run(_worker_main(sys.argv[1], sys.argv[2]))
