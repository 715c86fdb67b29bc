"""The MQTT contract: payloads round-trip, bad payloads are refused with a reason, topics are
built in one place, and what we publish for integrators (JSON Schemas, AsyncAPI, the API page)
agrees with the models.

No JSON Schema library is installed, so a small validator for the keywords pydantic emits is
below; a test makes sure the exported schemas use no keyword it does not understand.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from controller.contract import (
    DEVICES,
    DRIVER_ACTIONS,
    DRIVER_ERROR_CODES,
    MAX_PAYLOAD_BYTES,
    MOTION_ACTIONS,
    OFFLINE,
    ONLINE,
    OPERATOR_COMMANDS,
    AlarmInfo,
    Alarms,
    CommandHandled,
    DeviceState,
    DeviceStateAdapter,
    DriverCommand,
    DriverResult,
    ErrorEvent,
    Event,
    EventAdapter,
    History,
    IdentifyData,
    Inventory,
    OperatorCommand,
    PayloadError,
    Reply,
    SimControl,
    SimWorld,
    Status,
    SwapRecord,
    SwapResult,
    Topics,
    VerifyData,
    decode,
    decode_as,
    encode,
)
from controller.contract.common import MAX_JSON_DEPTH
from controller.contract.examples import LIVENESS, example_payloads
from controller.contract.export import (
    EVENT_MESSAGES,
    MESSAGES,
    PAYLOADS,
    STATE_MESSAGES,
    channels,
    export_contract,
    json_schema,
)
from simulator.control import CONTROL_OPS

DOC = Path(__file__).resolve().parent.parent / "docs" / "mqtt-api.md"
EVENT_MODELS = get_args(get_args(Event)[0])
STATE_MODELS = get_args(get_args(DeviceState)[0])
EVENTS = {m.__name__ for m in EVENT_MODELS}
STATES = {m.__name__ for m in STATE_MODELS}


def decode_on(topic: str, payload: bytes) -> BaseModel | str:
    """Decode ``payload`` the way the peer subscribed to ``topic`` does; fail if it can't."""
    t = Topics(topic.split("/")[1])
    fixed: dict[str, type[BaseModel]] = {
        t.status: Status,
        t.cmd: OperatorCommand,
        t.reply: Reply,
        t.inventory: Inventory,
        t.alarms: Alarms,
        t.history: History,
        t.sim_control: SimControl,
        t.sim_world: SimWorld,
    }
    if topic in fixed:
        return decode(fixed[topic], payload)
    user = topic.removeprefix(t.cmd + "/")
    if user != topic:
        assert t.cmd_from(user) == topic, f"no such topic: {topic}"
        return decode(OperatorCommand, payload)
    if topic == t.events:
        return decode_as(EventAdapter, payload)
    if topic == t.sim_events:
        error = decode_as(EventAdapter, payload)
        assert isinstance(error, ErrorEvent) and error.source == "simulator"
        return error
    device, leaf = t.device_of(topic), topic.rsplit("/", 1)[-1]
    if topic == t.controller or (device is not None and leaf == "online"):
        assert payload.decode() in (ONLINE, OFFLINE), payload
        return payload.decode()
    assert device in DEVICES, f"no such topic: {topic}"
    if leaf == "cmd":
        return decode(DriverCommand, payload)
    if leaf == "result":
        result = decode(DriverResult, payload)
        assert result.device == device
        check_data(result)
        return result
    if leaf == "state":
        state = decode_as(DeviceStateAdapter, payload)
        assert state.device == device
        return state
    assert leaf == "events", f"no such topic: {topic}"
    event = decode_as(EventAdapter, payload)
    assert isinstance(event, ErrorEvent)
    return event


#: The model of the ``data`` of a ``done`` result, for the actions whose answer has one.
RESULT_DATA: dict[tuple[str, str], type[BaseModel]] = {
    ("vehicle", "identify"): IdentifyData,
    ("vehicle", "verify"): VerifyData,
}


def check_data(result: DriverResult) -> None:
    """A ``done`` result's ``data`` is what the controller will accept for its action."""
    model = RESULT_DATA.get((result.device, result.action))
    if result.status == "done" and model is not None:
        model.model_validate(result.data)
    elif result.status == "done":
        assert result.data == {}, (result.device, result.action)


def decode_message(name: str, payload: bytes) -> BaseModel:
    """Decode as message ``name`` arrives on the wire: events and states through their unions."""
    if name in EVENTS:
        return decode_as(EventAdapter, payload)
    if name in STATES:
        return decode_as(DeviceStateAdapter, payload)
    return decode(MESSAGES[name][0], payload)


EXAMPLES = [
    pytest.param(name, m, id=f"{name}-{i}")
    for name, items in example_payloads().items()
    for i, m in enumerate(items)
    if isinstance(m, BaseModel)
]

# ---- round trips ----------------------------------------------------------------------------


def test_examples_cover_every_model() -> None:
    covered = {type(p.values[1]) for p in EXAMPLES}
    wanted = {model for model, _ in MESSAGES.values()} | set(EVENT_MODELS) | set(STATE_MODELS)
    assert wanted <= covered, wanted - covered
    assert set(EVENT_MESSAGES) | {"SwapFinished", "ErrorEvent"} == EVENTS
    assert set(STATE_MESSAGES) | {"SafetyState"} == STATES
    results = [p.values[1] for p in EXAMPLES if isinstance(p.values[1], DriverResult)]
    for result in results:
        check_data(result)
    assert set(RESULT_DATA) <= {(r.device, r.action) for r in results if r.status == "done"}


@pytest.mark.parametrize(("name", "message"), EXAMPLES)
def test_round_trip(name: str, message: BaseModel) -> None:
    wire = encode(message)
    assert decode(type(message), wire) == message
    assert decode_message(name, wire) == message
    assert len(wire) <= MAX_PAYLOAD_BYTES


def test_v_and_ts_may_be_omitted() -> None:
    cmd = decode(OperatorCommand, b'{"id": "op-1", "cmd": "start"}')
    assert (cmd.v, cmd.args) == (1, {})
    assert abs(cmd.ts - datetime.now(UTC)) < timedelta(minutes=1)


def test_command_handled_is_an_event_whose_sender_may_be_unknown() -> None:
    wire = b'{"kind": "command", "station": "s", "id": "op-1", "cmd": "start", "ok": true}'
    event = decode_as(EventAdapter, wire)
    assert isinstance(event, CommandHandled)
    assert (event.sender, event.args, event.error) == (None, {}, None)
    with pytest.raises(PayloadError, match=r"command\.ok: Field required"):
        decode_as(EventAdapter, b'{"kind": "command", "station": "s", "id": "op-1", "cmd": "x"}')
    kinds = [m.model_fields["kind"].default for m in EVENT_MODELS]
    assert len(kinds) == len(set(kinds)) and "command" in kinds


def test_alarms_and_history_round_trip_oldest_first() -> None:
    examples = example_payloads()
    alarms, history = examples["Alarms"][0], examples["History"][0]
    assert isinstance(alarms, Alarms) and isinstance(history, History)
    assert decode(Alarms, encode(alarms)) == alarms
    assert decode(History, encode(history)) == history
    assert len(history.swaps) > 1
    assert [r.ended_at for r in history.swaps] == sorted(r.ended_at for r in history.swaps)
    for empty in (Alarms(station="s", alarms=[]), History(station="s", swaps=[])):
        assert decode(type(empty), encode(empty)) == empty
    with pytest.raises(PayloadError, match="station: Field required"):
        decode(Alarms, b'{"alarms": []}')


def test_swap_result_is_completed_aborted_or_estopped() -> None:
    assert set(get_args(SwapResult)) == {"completed", "aborted", "estopped"}
    history = example_payloads()["History"][0]
    assert isinstance(history, History)
    assert {r.result for r in history.swaps} <= set(get_args(SwapResult))
    record = json.loads(encode(history.swaps[0])) | {"result": "cancelled"}
    with pytest.raises(PayloadError, match=r"swaps\.0\.result: Input should be"):
        decode(History, json.dumps({"station": "s", "swaps": [record]}).encode())


NAIVE = "2025-05-12T08:31:04"


def _with(example: str, path: tuple[str | int, ...], value: Any) -> bytes:
    """The first example payload of message ``example`` with the field at ``path`` replaced."""
    message = example_payloads()[example][0]
    assert isinstance(message, BaseModel)
    payload = node = json.loads(encode(message))
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("name", "path", "where"),
    [
        ("OperatorCommand", ("ts",), "ts"),
        ("Status", ("ts",), "ts"),
        ("Alarms", ("alarms", 0, "raised_at"), "alarms.0.raised_at"),
        ("History", ("swaps", 0, "started_at"), "swaps.0.started_at"),
        ("CommandHandled", ("ts",), "command.ts"),
        ("SwapFinished", ("record", "ended_at"), "swap_finished.record.ended_at"),
    ],
)
def test_timestamps_without_a_timezone_are_refused(
    name: str, path: tuple[str | int, ...], where: str
) -> None:
    with pytest.raises(PayloadError) as info:
        decode_message(name, _with(name, path, NAIVE))
    assert info.value.reason == f"schema: {where}: Input should have timezone info"
    for offset in ("Z", "+08:00", "-05:30"):
        decode_message(name, _with(name, path, NAIVE + offset))
    schema = json_schema(_schema_files_for(name)[0])
    naive = json.loads(_with(name, path, NAIVE))
    assert errors(naive, schema, schema), "the schema refuses it too"


def test_models_refuse_naive_datetimes() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        OperatorCommand(id="op-1", cmd="start", ts=datetime(2025, 5, 12, 8, 31))
    history = example_payloads()["History"][0]
    assert isinstance(history, History)
    with pytest.raises(ValidationError, match="timezone"):
        SwapRecord(**history.swaps[0].model_dump() | {"started_at": datetime(2025, 5, 12)})
    alarm = {"id": "A1", "code": "c", "severity": "error", "text": "t"}
    with pytest.raises(ValidationError, match="timezone"):
        AlarmInfo.model_validate(alarm | {"raised_at": datetime(2025, 5, 12)})
    AlarmInfo.model_validate(alarm | {"raised_at": datetime(2025, 5, 12, tzinfo=UTC)})


# ---- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"{nope", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"42", "expected a JSON object, got int"),
        (b'"start"', "expected a JSON object, got str"),
        (b'{"id": "op-1"}', "schema: cmd: Field required"),
        (b'{"id": "op-1", "cmd": 7}', "schema: cmd: Input should be a valid string"),
        (b'{"id": "bad id!", "cmd": "start"}', "schema: id: String should match pattern"),
        (b'{"id": "op-1", "cmd": "start", "colour": "red"}', "colour: Extra inputs are not"),
        (b'{"id": "op-1", "cmd": "start", "v": 2}', "v: Input should be less than or equal"),
    ],
)
def test_decode_refuses_with_a_reason(payload: bytes, words: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode(OperatorCommand, payload)
    assert words in info.value.reason
    assert info.value.excerpt == payload[:120].decode("utf-8", errors="replace")


def test_decode_lists_at_most_five_problems() -> None:
    with pytest.raises(PayloadError) as info:
        decode(Status, json.dumps({f"x{i}": i for i in range(9)}).encode())
    assert info.value.reason.count("; ") == 4  # 5 missing fields and 9 unknown ones
    assert info.value.reason.endswith(" (+9 more)")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_decode_of_any_bytes_succeeds_or_says_why(payload: bytes) -> None:
    """The invariant behind "every malformed payload gets an error event": no other exception."""
    for model in (OperatorCommand, DriverCommand, DriverResult, Status):
        try:
            decode(model, payload)
        except PayloadError as exc:
            assert exc.reason
    adapters: tuple[TypeAdapter[Any], ...] = (EventAdapter, DeviceStateAdapter)
    for adapter in adapters:
        try:
            decode_as(adapter, payload)
        except PayloadError as exc:
            assert exc.reason


def test_deeply_nested_json_is_refused_with_a_reason() -> None:
    with pytest.raises(PayloadError):
        decode(OperatorCommand, b"[" * 60_000)


def _nested(levels: int) -> bytes:
    """An operator command exactly ``levels`` deep: the object 1, ``args`` 2, then arrays."""
    arrays = levels - 2
    assert arrays >= 1
    return b'{"id": "op-1", "cmd": "start", "args": {"a": ' + b"[" * arrays + b"]" * arrays + b"}}"


def test_json_nested_to_the_limit_is_accepted_and_deeper_refused() -> None:
    assert MAX_JSON_DEPTH == 32
    cmd = decode(OperatorCommand, _nested(MAX_JSON_DEPTH))
    assert decode(OperatorCommand, encode(cmd)) == cmd
    too_deep = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    for payload in (_nested(MAX_JSON_DEPTH + 1), _nested(5000), b"[" * 60_000, b'{"a":' * 12_000):
        with pytest.raises(PayloadError) as info:
            decode(OperatorCommand, payload)
        assert info.value.reason == too_deep
        assert len(info.value.excerpt) <= 120
    with pytest.raises(PayloadError, match=too_deep):
        decode_as(EventAdapter, _nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(PayloadError, match="exceeds"):  # size is checked first
        decode(OperatorCommand, b"[" * (MAX_PAYLOAD_BYTES + 1))


def test_whatever_decodes_can_be_encoded_again() -> None:
    deep = b'{"id": "op-1", "cmd": "start", "args": {"a": ' + b"[" * 400 + b"]" * 400 + b"}}"
    try:
        cmd = decode(OperatorCommand, deep)
    except PayloadError:
        return
    encode(cmd)


def test_oversized_payload_is_refused_before_parsing() -> None:
    small = encode(OperatorCommand(id="op-1", cmd="start"))
    exact = small[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(small)) + b"}"
    assert len(exact) == MAX_PAYLOAD_BYTES
    assert decode(OperatorCommand, exact).id == "op-1"
    for too_big in (exact + b" ", b"x" * (MAX_PAYLOAD_BYTES + 1)):
        with pytest.raises(PayloadError) as info:
            decode(OperatorCommand, too_big)
        assert info.value.reason == f"payload of {len(too_big)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        assert len(info.value.excerpt) <= 120
    with pytest.raises(PayloadError, match="exceeds"):
        decode_as(EventAdapter, exact + b" ")
    with pytest.raises(PayloadError, match="exceeds 10"):
        decode(OperatorCommand, small, max_bytes=10)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"[]", "valid dictionary"),
        (b'{"station": "s", "mode": "idle", "previous": "idle"}', "discriminator 'kind'"),
        (b'{"kind": "gossip", "station": "s"}', "gossip"),
        (b'{"kind": "mode_changed", "station": "s", "mode": "idle", "previous": "idle", "x": 1}',
         "Extra inputs"),
        (b'{"kind": "mode_changed", "station": "s", "mode": "napping", "previous": "idle"}',
         "mode_changed.mode"),
    ],
)  # fmt: skip
def test_events_are_refused_with_a_reason(payload: bytes, words: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_as(EventAdapter, payload)
    assert info.value.reason.startswith("schema: ")
    assert words in info.value.reason


# ---- topics ---------------------------------------------------------------------------------


def test_topics_of_a_station() -> None:
    t = Topics("cq-1")
    assert (t.base, t.all) == ("swap/cq-1", "swap/cq-1/#")
    assert [t.status, t.cmd, t.reply, t.events, t.inventory, t.controller] == [
        f"swap/cq-1/{leaf}"
        for leaf in ("status", "cmd", "reply", "events", "inventory", "controller")
    ]
    assert (t.sim_control, t.sim_world) == ("swap/cq-1/sim/control", "swap/cq-1/sim/world")
    assert t.drivers_all == "swap/cq-1/drivers/+/+"
    for d in DEVICES:
        built = [t.driver_cmd(d), t.driver_result(d), t.driver_state(d), t.driver_online(d)]
        built.append(t.driver_events(d))
        assert built == [
            f"swap/cq-1/drivers/{d}/{x}" for x in ("cmd", "result", "state", "online", "events")
        ]
        assert all(t.device_of(topic) == d for topic in built)


def _matches(pattern: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest)."""
    want, have = pattern.split("/"), topic.split("/")
    for i, part in enumerate(want):
        if part == "#":
            return True
        if i >= len(have) or part not in ("+", have[i]):
            return False
    return len(want) == len(have)


def test_operator_topics_of_a_station() -> None:
    t = Topics("cq-1")
    assert (t.alarms, t.history) == ("swap/cq-1/alarms", "swap/cq-1/history")
    assert t.cmd_from("operator") == "swap/cq-1/cmd/operator"
    assert t.cmd_any_user == "swap/cq-1/cmd/+"
    assert _matches(t.cmd_any_user, t.cmd_from("operator"))
    assert not _matches(t.cmd_any_user, t.cmd)
    assert not _matches(t.cmd_any_user, "swap/cq-1/cmd/operator/x")
    assert not _matches(t.cmd_any_user, "swap/cq-2/cmd/operator")
    assert t.device_of(t.cmd_from("arm")) is None
    for d in DEVICES:
        assert _matches(t.drivers_all, t.driver_state(d))
    concrete = {x.replace("{station}", "cq-1") for x in _topic_templates()}
    assert all(_matches(t.all, x) for x in concrete)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", " op", "op\x00"])
def test_invalid_user_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid MQTT topic segment"):
        Topics("cq-1").cmd_from(bad)


@pytest.mark.parametrize(
    "topic",
    ["swap/cq-1/status", "swap/cq-2/drivers/arm/cmd", "swap/cq-10/drivers/arm/cmd",
     "swap/cq-1/drivers/arm", "swap/cq-1/drivers/arm/state/extra", "swap/cq-1/drivers"],
)  # fmt: skip
def test_device_of_other_topics_is_none(topic: str) -> None:
    assert Topics("cq-1").device_of(topic) is None


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "st#", " s1", "s1 ", "s\x00", "/"])
def test_invalid_station_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid MQTT topic segment"):
        Topics(bad)


@pytest.mark.parametrize("bad", ["", "arm/cmd", "+", "#"])
def test_invalid_device_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid MQTT topic segment"):
        Topics("cq-1").driver_cmd(bad)


# ---- properties -----------------------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
)
stamps = st.datetimes(timezones=zones)
maybe_text = st.none() | st.text(max_size=64)


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        OperatorCommand, id=ids, cmd=st.text(min_size=1, max_size=64), args=json_objects, ts=stamps
    )
)
def test_any_operator_command_round_trips(cmd: OperatorCommand) -> None:
    assert decode(OperatorCommand, encode(cmd)) == cmd


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        DriverResult,
        id=ids,
        device=st.sampled_from(DEVICES) | st.text(max_size=16),
        action=st.text(max_size=32),
        status=st.sampled_from(["accepted", "done", "failed"]),
        error_code=maybe_text,
        error=maybe_text,
        data=json_objects,
        ts=stamps,
    )
)
def test_any_driver_result_round_trips(result: DriverResult) -> None:
    assert decode(DriverResult, encode(result)) == result


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        CommandHandled,
        station=st.text(max_size=32),
        id=st.text(max_size=64),
        cmd=st.text(max_size=64),
        args=json_objects,
        sender=st.none() | ids,
        ok=st.booleans(),
        error=maybe_text,
        ts=stamps,
    )
)
def test_any_command_handled_round_trips(event: CommandHandled) -> None:
    assert decode_as(EventAdapter, encode(event)) == event


# ---- a JSON Schema validator for the keywords pydantic emits --------------------------------

ANNOTATIONS = {
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "discriminator",
}
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}  # fmt: skip


def resolve(root: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local refs are used: {ref}"
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """Why ``value`` does not match ``schema`` (empty: it does)."""
    out: list[str] = []
    if "$ref" in schema:
        out += errors(value, resolve(root, schema["$ref"]), root)
    if "type" in schema:
        kinds = TYPES[schema["type"]]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            return [*out, f"{value!r} is not of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{value!r} != {schema['const']!r}")
    if "anyOf" in schema and all(errors(value, s, root) for s in schema["anyOf"]):
        out.append(f"{value!r} matches none of anyOf")
    if "oneOf" in schema and sum(not errors(value, s, root) for s in schema["oneOf"]) != 1:
        out.append(f"{value!r} does not match exactly one of oneOf")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        out += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                out += [f"{key}: {e}" for e in errors(item, props[key], root)]
            elif schema.get("additionalProperties") is False:
                out.append(f"unknown field {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += errors(item, schema["additionalProperties"], root)
    if isinstance(value, list) and "items" in schema:
        out += [e for item in value for e in errors(item, schema["items"], root)]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            out.append(f"{value!r}: bad length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                out.append(f"{value!r} has no UTC offset")
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        limits = [
            ("minimum", value >= schema.get("minimum", value)),
            ("maximum", value <= schema.get("maximum", value)),
            ("exclusiveMinimum", low is None or value > low),
            ("exclusiveMaximum", high is None or value < high),
        ]
        out += [f"{value!r} breaks {name}" for name, ok in limits if not ok]
    return out


#: Keywords :func:`errors` checks; anything else in an exported schema fails a test.
KNOWN = ANNOTATIONS | {
    "$ref", "$defs", "type", "enum", "const", "anyOf", "oneOf", "properties", "required",
    "additionalProperties", "items", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip


def keywords(schema: Any) -> Iterator[str]:
    """Every keyword used anywhere in ``schema`` (property names excluded)."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield key
        if key in ("properties", "$defs"):
            for sub in value.values():
                yield from keywords(sub)
        elif key in ("anyOf", "oneOf", "allOf"):
            for sub in value:
                yield from keywords(sub)
        elif key in ("items", "additionalProperties", "not"):
            yield from keywords(value)


# ---- export ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("contract")
    return out, export_contract(out)


@pytest.fixture(scope="module")
def doc(exported: tuple[Path, list[Path]]) -> dict[str, Any]:
    loaded = yaml.safe_load((exported[0] / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


#: Members of :class:`Topics` that build no topic: a prefix, a parser, and the filters whose
#: argument is not a topic segment. (Filters with ``+`` or ``#`` are recognised by themselves.)
NOT_TOPICS = {"base", "driver", "device_of", "every_driver"}


def _is_filter(name: str) -> bool:
    return "+" in name or "#" in name


def _topic_templates() -> set[str]:
    """Every topic :class:`Topics` builds, found by introspection, so a new one can't be missed.

    A method's argument becomes a parameter named after it: ``cmd_from(user)`` gives
    ``swap/{station}/cmd/{user}``. Subscription filters (``all``, ``cmd_any_user``, ...) are not
    topics.
    """
    t, names = Topics("{station}"), set()
    for name, attr in vars(Topics).items():
        if name.startswith("_") or name in NOT_TOPICS:
            continue
        if isinstance(attr, property):
            built = getattr(t, name)
        elif inspect.isfunction(attr):
            _self, param = inspect.signature(attr).parameters
            try:
                built = getattr(t, name)("{" + param + "}")
            except ValueError as exc:
                raise AssertionError(f"Topics.{name}: a topic or not? See NOT_TOPICS") from exc
        else:
            continue
        if not _is_filter(built):
            names.add(built)
    return names


def test_export_writes_every_schema_and_the_asyncapi_document(
    exported: tuple[Path, list[Path]],
) -> None:
    out, paths = exported
    names = {"OperatorCommand", "Reply", "Status", "Inventory", "Event", "DriverCommand",
             "DriverResult", "SimControl", "SimWorld", "Alarms", "History", "IdentifyData",
             "VerifyData", *STATES}  # fmt: skip
    assert names <= set(PAYLOADS)
    expected = {f"schemas/{n}.schema.json" for n in PAYLOADS} | {"asyncapi.yaml"}
    assert {p.relative_to(out).as_posix() for p in paths} == expected
    for path in paths:
        if path.suffix == ".json":
            schema = json.loads(path.read_text(encoding="utf-8"))
            assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
            assert schema["title"] == path.name.removesuffix(".schema.json")
            for node in _objects(schema):
                if "$ref" in node:
                    resolve(schema, node["$ref"])


def test_export_is_deterministic(exported: tuple[Path, list[Path]], tmp_path: Path) -> None:
    again = export_contract(tmp_path)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in exported[1]]


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


#: Fields the AsyncAPI 3.0.0 spec allows on each object we emit (its JSON Schema forbids others).
ASYNCAPI_FIELDS = {
    "channels": {"address", "title", "summary", "description", "parameters", "messages",
                 "servers", "bindings", "tags", "externalDocs"},
    "operations": {"action", "channel", "title", "summary", "description", "security", "tags",
                   "externalDocs", "bindings", "traits", "messages", "reply"},
    "messages": {"name", "title", "summary", "description", "contentType", "payload", "headers",
                 "correlationId", "tags", "externalDocs", "bindings", "examples", "traits",
                 "deprecated"},
    "parameters": {"enum", "default", "description", "examples", "location"},
}  # fmt: skip


def test_asyncapi_objects_use_only_spec_fields(doc: dict[str, Any]) -> None:
    assert set(doc) <= {"asyncapi", "id", "info", "servers", "defaultContentType", "channels",
                        "operations", "components"}  # fmt: skip
    sections = {
        "channels": doc["channels"],
        "operations": doc["operations"],
        "messages": doc["components"]["messages"],
        "parameters": doc["components"]["parameters"],
    }
    for section, objects in sections.items():
        for name, obj in objects.items():
            assert set(obj) <= ASYNCAPI_FIELDS[section], (section, name)
    for op in doc["operations"].values():
        assert op["action"] in ("send", "receive")
        assert set(op.get("reply", {})) <= {"address", "channel", "messages"}
    for message in doc["components"]["messages"].values():
        for example in message["examples"]:
            assert set(example) <= {"name", "summary", "headers", "payload"}
    for schema in _objects(doc["components"]["schemas"]):
        assert not isinstance(schema.get("discriminator"), dict), "AsyncAPI wants a string"


def test_asyncapi_refs_all_resolve(doc: dict[str, Any]) -> None:
    refs = [node["$ref"] for node in _objects(doc) if "$ref" in node]
    assert len(refs) > 100
    for ref in refs:
        assert isinstance(resolve(doc, ref), dict), ref


def test_asyncapi_has_a_channel_for_every_topic(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == _topic_templates()
    params = doc["components"]["parameters"]
    assert params["device"]["enum"] == list(DEVICES)
    assert set(params) == {"station", "user", "device"}
    for key, channel in channels.items():
        used = set(re.findall(r"{(\w+)}", channel["address"]))
        assert set(channel["parameters"]) == used, key
        assert used <= set(params)


def test_asyncapi_operations_qos_and_retain(doc: dict[str, Any]) -> None:
    t, d = Topics("{station}"), "{device}"
    # topic -> (the controller sends or receives, retained)
    expected = {
        t.status: ("send", True), t.cmd: ("receive", False), t.reply: ("send", False),
        t.events: ("send", False), t.inventory: ("send", True), t.controller: ("send", True),
        t.cmd_from("{user}"): ("receive", False), t.alarms: ("send", True),
        t.history: ("send", True),
        t.driver_cmd(d): ("send", False), t.driver_result(d): ("receive", False),
        t.driver_state(d): ("receive", True), t.driver_online(d): ("receive", True),
        t.driver_events(d): ("receive", False), t.sim_control: ("send", False),
        t.sim_events: ("receive", False), t.sim_world: ("receive", True),
    }  # fmt: skip
    seen = {}
    for op in doc["operations"].values():
        channel = resolve(doc, op["channel"]["$ref"])
        mqtt = op["bindings"]["mqtt"]
        assert mqtt["qos"] == 1
        seen[channel["address"]] = (op["action"], mqtt["retain"])
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
        if "reply" in op:
            for ref in op["reply"]["messages"]:
                assert ref["$ref"].startswith(op["reply"]["channel"]["$ref"] + "/messages/")
    assert seen == expected
    address = {
        ref: ch["address"]
        for ref, ch in ((f"#/channels/{k}", ch) for k, ch in doc["channels"].items())
    }
    replies = {
        address[op["channel"]["$ref"]]: address[op["reply"]["channel"]["$ref"]]
        for op in doc["operations"].values()
        if "reply" in op
    }
    assert replies == {
        t.cmd: t.reply,
        t.cmd_from("{user}"): t.reply,
        t.driver_cmd(d): t.driver_result(d),
    }


def test_asyncapi_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    assert set(messages) == set(MESSAGES) | {LIVENESS}
    for name, message in messages.items():
        schema = resolve(doc, message["payload"]["$ref"])
        assert message["examples"], name
        for example in message["examples"]:
            payload = example["payload"]
            assert errors(payload, schema, doc) == [], (name, payload)
            if name != LIVENESS:
                decode_message(name, json.dumps(payload).encode())
        assert ("correlationId" in message) == (
            name in {"OperatorCommand", "Reply", "DriverCommand", "DriverResult", "CommandHandled"}
        )


def test_schemas_use_only_keywords_the_test_validator_knows(
    exported: tuple[Path, list[Path]], doc: dict[str, Any]
) -> None:
    schemas = [json.loads(p.read_text()) for p in exported[1] if p.suffix == ".json"]
    schemas += list(doc["components"]["schemas"].values())
    used = {k for s in schemas for k in keywords(s)}
    assert used <= KNOWN, used - KNOWN
    formats = {
        n["format"] for s in schemas for n in _objects(s) if isinstance(n.get("format"), str)
    }
    assert formats <= {"date-time"}


def _schema_files_for(name: str) -> list[str]:
    if name in EVENTS:
        return ["Event"]
    if name in STATES:
        return ["DeviceState", name]
    return [name]


@pytest.mark.parametrize(("name", "message"), EXAMPLES)
def test_schema_files_agree_with_the_models(name: str, message: BaseModel) -> None:
    """Each example validates; each field dropped or added is refused by both or by neither."""
    payload = json.loads(encode(message))
    for file in _schema_files_for(name):
        schema = json_schema(file)
        assert errors(payload, schema, schema) == [], file
        assert errors({**payload, "surplus": 1}, schema, schema), file
        for field in payload:
            rest = {k: v for k, v in payload.items() if k != field}
            try:
                decode_message(name, json.dumps(rest).encode())
                model_ok = True
            except PayloadError:
                model_ok = False
            assert (errors(rest, schema, schema) == []) == model_ok, (file, field)


def test_tags_are_required_as_the_unions_require_them() -> None:
    for name in ("ArmState", "DeviceState"):
        schema = json_schema(name)
        assert errors({"position": "home"}, schema, schema), name
    with pytest.raises(PayloadError, match="discriminator 'device'"):
        decode_as(DeviceStateAdapter, b'{"position": "home"}')


# ---- docs/mqtt-api.md -----------------------------------------------------------------------

FENCE = re.compile(r"^```(\w+)(?: (\S+))?\n(.*?)^```$", re.M | re.S)


def _blocks(lang: str) -> list[tuple[str | None, str]]:
    return [(m[2], m[3]) for m in FENCE.finditer(DOC.read_text(encoding="utf-8")) if m[1] == lang]


def _channel_of(topic: str) -> str:
    """The AsyncAPI address a concrete topic belongs to."""
    parts = topic.split("/")
    parts[1] = "{station}"
    if len(parts) > 3 and parts[2] == "drivers":
        assert parts[3] in DEVICES, topic
        parts[3] = "{device}"
    if len(parts) == 4 and parts[2] == "cmd":
        parts[3] = "{user}"
    address = "/".join(parts)
    assert address in _topic_templates(), topic
    return address


def test_doc_json_examples_decode_on_their_topics() -> None:
    blocks = _blocks("json")
    assert len(blocks) >= 20
    covered: set[str] = set()
    kinds: set[str] = set()
    for topic, body in blocks:
        assert topic, "every JSON example names its topic: ```json swap/<station>/..."
        message = decode_on(topic, body.encode())
        assert isinstance(message, BaseModel)
        covered.add(_channel_of(topic))
        kinds.add(type(message).__name__)
    for label, body in _blocks("text"):
        lines = body.strip().splitlines() if label == "mosquitto_sub" else [f"{label} {body}"]
        covered |= {_channel_of(line.split(" ", 1)[0]) for line in lines}
    assert covered == _topic_templates(), "every topic has an example"
    assert (EVENTS | STATES) - {"ErrorEvent"} <= kinds | {"ErrorEvent"}
    assert "ErrorEvent" in kinds


def test_doc_text_examples_are_liveness_or_subscriber_output() -> None:
    blocks = _blocks("text")
    assert blocks
    for label, body in blocks:
        if label == "mosquitto_sub":
            for line in body.strip().splitlines():
                topic, payload = line.split(" ", 1)
                _channel_of(topic)
                decode_on(topic, payload.encode())
        else:
            assert label is not None
            assert decode_on(label, body.strip().encode()) in (ONLINE, OFFLINE)


def test_doc_shell_examples_use_real_topics_and_valid_payloads() -> None:
    published = 0
    for _, body in _blocks("sh"):
        for line in body.splitlines():
            if line.startswith("mosquitto_pub"):
                topic = re.search(r"-t '([^']+)'", line)
                payload = re.search(r"-m '([^']+)'", line)
                assert topic and payload, line
                decode_on(topic[1], payload[1].encode())
                published += 1
            elif line.startswith("mosquitto_sub"):
                for pattern in re.findall(r"-t '([^']+)'", line):
                    regex = re.escape(pattern).replace(r"\+", "[^/]+").replace("\\#", ".*")
                    examples = {
                        a.replace("{station}", "cq-changshou-01")
                        .replace("{device}", "arm")
                        .replace("{user}", "operator")
                        for a in _topic_templates()
                    }
                    assert any(re.fullmatch(regex, e) for e in examples), pattern
    assert published >= 1


def _template(name: str) -> str:
    """``swap/<station>/cmd/<user>`` as the doc writes it -> ``swap/{station}/cmd/{user}``."""
    return re.sub(r"<(station|device|user)>", r"{\1}", name)


def test_doc_names_every_topic_and_no_other() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = {_template(n) for n in re.findall(r"`(swap/<station>/[^`]*)`", text)}
    topics = {n for n in named if not n.endswith("/")}
    roots = named - topics
    assert topics == _topic_templates()
    for root in roots:
        assert any(t.startswith(root) for t in _topic_templates()), root
    for d in DEVICES:
        assert f"`{d}`" in text


def test_doc_actions_table_matches_driver_actions() -> None:
    rows = re.findall(
        r"^\| `(\w+)` \| `(\w+)` \| [^|]*(?:&#124;[^|]*)* \| (yes)? \|$", DOC.read_text(), re.M
    )
    assert {(d, a) for d, a, _ in rows} == {
        (d, a) for d, acts in DRIVER_ACTIONS.items() for a in acts
    }
    assert {(d, a) for d, a, motion in rows if motion} == set(MOTION_ACTIONS)


def test_doc_names_commands_limits_and_version() -> None:
    text = DOC.read_text(encoding="utf-8")
    for cmd in OPERATOR_COMMANDS:
        assert f"`{cmd}`" in text, cmd
    assert str(MAX_PAYLOAD_BYTES) in text
    assert "`MAX_JSON_DEPTH`" in text and f"{MAX_JSON_DEPTH} levels" in text
    assert "`AwareDatetime`" in text
    for model in (IdentifyData, VerifyData):
        assert f"`{model.__name__}`" in text, model
        for field in model.model_fields:
            assert f"`{field}`" in text, (model, field)
    assert "(architecture.md#the-station-modes-phases-commands)" in text
    assert "## The station: modes, phases, commands" in (DOC.parent / "architecture.md").read_text()


def _table(header: str) -> list[list[str]]:
    """The cells of each row of the doc's table whose header row starts with ``header``."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, header
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_doc_error_code_table_matches_driver_error_codes() -> None:
    rows = _table("| `error_code` | meaning")
    assert [r[0] for r in rows] == [f"`{c}`" for c in DRIVER_ERROR_CODES]
    assert {r[0].strip("`"): r[1] for r in rows} == DRIVER_ERROR_CODES


def test_doc_event_table_names_every_kind() -> None:
    rows = _table("| `kind` | model")
    kinds = {m.model_fields["kind"].default: m.__name__ for m in EVENT_MODELS}
    assert {r[0].strip("`"): r[1].strip("`") for r in rows} == kinds


def test_doc_topic_table_agrees_with_the_exporter() -> None:
    rows = _table("| topic | payload |")
    table = {_template(r[0].strip("`")): (r[3], r[4]) for r in rows}
    chans = {c.address: c for c in channels()}
    assert set(table) == set(chans) == _topic_templates()
    for address, (qos, retained) in table.items():
        assert qos == "1", address
        assert (retained == "yes") == chans[address].retain, address
        if chans[address].action == "receive" and address.rsplit("/", 1)[-1] == "cmd":
            assert retained == "never", address


def test_doc_json_examples_are_the_generated_ones() -> None:
    """The page shows the examples the exporter builds from the models, not hand-written JSON."""
    generated = [
        json.loads(encode(m))
        for items in example_payloads().values()
        for m in items
        if isinstance(m, BaseModel)
    ]
    for topic, body in _blocks("json"):
        assert json.loads(body) in generated, topic


def test_doc_sim_control_table_matches_the_simulator() -> None:
    assert [r[0] for r in _table("| `op` | `args`")] == [f"`{op}`" for op in CONTROL_OPS]
