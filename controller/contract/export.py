"""Export the contract as JSON Schema files and an AsyncAPI 3.0 document.

Integrators build drivers and consoles in any language from these files, so they are generated
from the pydantic models and from :class:`Topics` (no topic string is typed here) and cannot
drift from the code; the example payloads come from :mod:`controller.contract.examples`.
``swapctl contract export DIR`` calls :func:`export_contract`.

Two adjustments to pydantic's output, both making the schema say what the wire requires:

- A tag field (``kind`` of events, ``device`` of device states: a ``Literal`` with a default) is
  marked required, because the discriminated unions that decode those topics refuse a payload
  without it.
- In the AsyncAPI document, pydantic's OpenAPI-style ``discriminator`` object is dropped: in an
  AsyncAPI Schema ``discriminator`` is a property name whose value must be a schema name, which
  ours are not. The ``oneOf`` stays exact without it, since every branch has a ``const`` tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from controller.contract.codec import encode
from controller.contract.commands import COMMANDS, describe_args
from controller.contract.common import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, SCHEMA_VERSION
from controller.contract.drivers import (
    DRIVER_ERROR_CODES,
    ArmState,
    BayState,
    DeviceStateAdapter,
    DoorState,
    DriverCommand,
    DriverResult,
    IdentifyData,
    RackState,
    SafetyState,
    SimControl,
    SimWorld,
    VehicleState,
    VerifyData,
)
from controller.contract.examples import LIVENESS, STATION, example_payloads
from controller.contract.operator import (
    AlarmRaised,
    Alarms,
    CommandHandled,
    ErrorEvent,
    EventAdapter,
    History,
    Inventory,
    ModeChanged,
    OperatorCommand,
    PhaseChanged,
    Reply,
    Status,
    SwapFinished,
    VehicleArrived,
)
from controller.contract.results import AlarmHistory, ReconcileReport
from controller.contract.topics import DEVICES, OFFLINE, ONLINE, Topics

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION: Final = "3.0.0"
MQTT_BINDING_VERSION: Final = "0.2.0"

#: Every payload exported as ``schemas/<name>.schema.json``; the unions through their adapters.
PAYLOADS: Final[dict[str, TypeAdapter[Any]]] = {
    "OperatorCommand": TypeAdapter(OperatorCommand),
    "Reply": TypeAdapter(Reply),
    "Status": TypeAdapter(Status),
    "Inventory": TypeAdapter(Inventory),
    "Alarms": TypeAdapter(Alarms),
    "History": TypeAdapter(History),
    "Event": EventAdapter,
    "DriverCommand": TypeAdapter(DriverCommand),
    "DriverResult": TypeAdapter(DriverResult),
    "DeviceState": DeviceStateAdapter,
    "ArmState": TypeAdapter(ArmState),
    "BayState": TypeAdapter(BayState),
    "DoorState": TypeAdapter(DoorState),
    "RackState": TypeAdapter(RackState),
    "VehicleState": TypeAdapter(VehicleState),
    "SafetyState": TypeAdapter(SafetyState),
    "SimControl": TypeAdapter(SimControl),
    "SimWorld": TypeAdapter(SimWorld),
    "IdentifyData": TypeAdapter(IdentifyData),
    "VerifyData": TypeAdapter(VerifyData),
    # a Reply's ``result``: of reconcile, of alarm_history
    "ReconcileReport": TypeAdapter(ReconcileReport),
    "AlarmHistory": TypeAdapter(AlarmHistory),
}

#: AsyncAPI messages: name -> (payload model, summary). Events are one message per kind.
MESSAGES: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "OperatorCommand": (OperatorCommand, "A command from an operator (v and ts may be omitted)"),
    "Reply": (Reply, "Exactly one reply per operator command, echoing its id"),
    "Status": (Status, "Station mode, phase and swap progress"),
    "Inventory": (Inventory, "Every slot and pack the station knows of"),
    "Alarms": (Alarms, "The alarm list, oldest first; shelved alarms apart"),
    "History": (History, "The most recent swap records, oldest first"),
    "PhaseChanged": (PhaseChanged, "The swap entered a phase (or left the last one)"),
    "ModeChanged": (ModeChanged, "The station changed mode"),
    "AlarmRaised": (AlarmRaised, "An alarm was raised"),
    "VehicleArrived": (VehicleArrived, "A truck stopped in the bay"),
    "CommandHandled": (CommandHandled, "Audit trail: an operator command, its sender, its fate"),
    "SwapFinished": (SwapFinished, "A swap ended: completed, aborted or estopped"),
    "ErrorEvent": (ErrorEvent, "Bad input on a subscribed topic; nothing changed"),
    "DriverCommand": (DriverCommand, "A command to a driver"),
    "DriverResult": (DriverResult, "accepted, then done or failed, echoing the command id"),
    "ArmState": (ArmState, "Robot arm"),
    "BayState": (BayState, "Bay: vehicle sensors, clamps, pack locks, queue"),
    "DoorState": (DoorState, "Door between bay and rack"),
    "RackState": (RackState, "Charging rack: slots, packs, chargers"),
    "VehicleState": (VehicleState, "Vehicle link: identity, HV, the pack the BMS reports"),
    "SafetyState": (SafetyState, "Safety relay: e-stop and light curtain"),
    "SimControl": (SimControl, "Drive the simulated world (simulator only)"),
    "SimWorld": (SimWorld, "Ground truth of the simulated world (simulator only)"),
}
EVENT_MESSAGES: Final = (
    "PhaseChanged",
    "ModeChanged",
    "AlarmRaised",
    "VehicleArrived",
    "CommandHandled",
)
STATE_MESSAGES: Final = ("ArmState", "BayState", "DoorState", "RackState", "VehicleState")


@dataclass(frozen=True)
class Channel:
    """One topic of the contract, described from the controller's point of view."""

    key: str
    address: str
    action: Literal["send", "receive"]
    messages: tuple[str, ...]
    description: str

    @property
    def retain(self) -> bool:
        return self.key in RETAINED

    @property
    def reply(self) -> str | None:
        """Key of the channel that carries the answers to this one, if any."""
        return REPLIES.get(self.key)


RETAINED: Final = frozenset(
    {
        "status",
        "inventory",
        "alarms",
        "history",
        "controller",
        "driverState",
        "driverOnline",
        "simWorld",
    }
)
REPLIES: Final = {"cmd": "reply", "cmdUser": "reply", "driverCmd": "driverResult"}


def channels() -> list[Channel]:
    """Every topic of :class:`Topics`, with ``{station}``, ``{user}`` and ``{device}`` as
    parameters."""
    t, d, c = Topics("{station}"), "{device}", Channel
    events = (*EVENT_MESSAGES, "SwapFinished", "ErrorEvent")
    states = (*STATE_MESSAGES, "SafetyState")
    # fmt: off
    return [
        c("status", t.status, "send", ("Status",), "Station status, on every change."),
        c("cmd", t.cmd, "receive", ("OperatorCommand",),
          "Operator commands from an unknown sender (unauthenticated or development use)."),
        c("cmdUser", t.cmd_from("{user}"), "receive", ("OperatorCommand",),
          "Operator commands from broker user {user}: the broker's ACL lets only that user "
          "write here, so the controller records who sent each command."),
        c("reply", t.reply, "send", ("Reply",), "Exactly one reply per operator command."),
        c("events", t.events, "send", events,
          "Phases, modes, alarms, arrivals, swaps, handled commands, error events."),
        c("inventory", t.inventory, "send", ("Inventory",), "Every slot and pack, on change."),
        c("alarms", t.alarms, "send", ("Alarms",), "The alarm list, on every change."),
        c("history", t.history, "send", ("History",), "The most recent swaps, after each swap."),
        c("controller", t.controller, "send", (LIVENESS,), "Controller liveness (last will)."),
        c("driverCmd", t.driver_cmd(d), "send", ("DriverCommand",), "Commands to a driver."),
        c("driverResult", t.driver_result(d), "receive", ("DriverResult",),
          "A driver's answers: accepted, then done or failed."),
        c("driverState", t.driver_state(d), "receive", states,
          "A driver's state: on every change, after connect, and periodically."),
        c("driverOnline", t.driver_online(d), "receive", (LIVENESS,), "Driver liveness (will)."),
        c("driverEvents", t.driver_events(d), "receive", ("ErrorEvent",),
          "Error events a driver raises about input it could not use."),
        c("simControl", t.sim_control, "send", ("SimControl",),
          "Simulator control, sent by tests and swapctl; absent in a real station."),
        c("simEvents", t.sim_events, "receive", ("ErrorEvent",),
          "Error events about unusable simulator control input; absent in a real station."),
        c("simWorld", t.sim_world, "receive", ("SimWorld",),
          "Simulated ground truth, read by tests; absent in a real station."),
    ]
    # fmt: on


# ---- JSON Schema ----------------------------------------------------------------------------


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _require_tags(schema: dict[str, Any]) -> dict[str, Any]:
    """Mark ``Literal`` tag fields with a default (``kind``, ``device``) as required."""
    for node in _walk(schema):
        props = node.get("properties")
        if node.get("type") != "object" or not isinstance(props, dict):
            continue
        for name, prop in props.items():
            if isinstance(prop, dict) and "const" in prop and prop.get("default") == prop["const"]:
                required = node.setdefault("required", [])
                if name not in required:
                    required.append(name)
    return schema


def json_schema(name: str) -> dict[str, Any]:
    """The standalone JSON Schema (draft 2020-12) of payload ``name`` of :data:`PAYLOADS`."""
    schema = _require_tags(PAYLOADS[name].json_schema())
    schema.setdefault("title", name)
    header = {"$schema": JSON_SCHEMA_DIALECT, "$comment": f"swapstation contract v{SCHEMA_VERSION}"}
    return header | schema


def component_schemas() -> dict[str, Any]:
    """Every schema, pydantic's ``$defs`` lifted into one flat ``components/schemas`` map."""
    mode: JsonSchemaMode = "validation"
    inputs = [(name, mode, adapter) for name, adapter in PAYLOADS.items()]
    top, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for (name, _mode), schema in top.items():
        if schema.get("$ref") != f"#/components/schemas/{name}":
            schemas[name] = {"title": name, **schema}  # a union: no model of its own
    for node in _walk(schemas):
        if isinstance(node.get("discriminator"), dict):
            del node["discriminator"]
    schemas[LIVENESS] = {
        "title": LIVENESS,
        "description": "Plain text, not JSON: a last will is fixed at connect time.",
        "type": "string",
        "enum": [ONLINE, OFFLINE],
    }
    return _require_tags(dict(sorted(schemas.items())))


# ---- AsyncAPI -------------------------------------------------------------------------------


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _more_description(name: str) -> str:
    """What the tables beside the models add to a message's description."""
    if name == "OperatorCommand":
        listed = " ".join(
            f"`{c.name}`" + (f" ({describe_args(c)})." if c.args.model_fields else ".")
            for c in COMMANDS
            if c.operator
        )
        return f" Commands, with their `args`: {listed} Anything else is refused."
    if name == "DriverResult":
        codes = "; ".join(f"`{c}`: {text}" for c, text in DRIVER_ERROR_CODES.items())
        return (
            " The `data` of a `done` `vehicle.identify` is an `IdentifyData`, of a `done` "
            f"`vehicle.verify` a `VerifyData`. `error_code` of a `failed` result: {codes}."
        )
    return ""


def _message(name: str, examples: dict[str, list[BaseModel | str]]) -> dict[str, Any]:
    payloads = [json.loads(encode(p)) if isinstance(p, BaseModel) else p for p in examples[name]]
    out: dict[str, Any] = {"name": name}
    if name == LIVENESS:
        out |= {
            "title": "online / offline",
            "summary": "Liveness: retained; the peer sets `offline` as its last will",
            "contentType": "text/plain",
        }
    else:
        model, summary = MESSAGES[name]
        out |= {"title": name, "summary": summary, "contentType": "application/json"}
        description = " ".join((model.__doc__ or "").split()) + _more_description(name)
        if description:
            out["description"] = description.strip()
        id_field = model.model_fields.get("id")
        if id_field is not None and id_field.is_required():
            out["correlationId"] = {
                "description": "MQTT 3.1.1 has no correlation property: the id is in the payload",
                "location": "$message.payload#/id",
            }
    out["payload"] = _ref("components", "schemas", name)
    out["examples"] = [{"name": f"{name}-{i + 1}", "payload": p} for i, p in enumerate(payloads)]
    return out


def _operation(ch: Channel) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": ch.action,
        "channel": _ref("channels", ch.key),
        "summary": ch.description,
        "messages": [_ref("channels", ch.key, "messages", m) for m in ch.messages],
        "bindings": {
            "mqtt": {"qos": 1, "retain": ch.retain, "bindingVersion": MQTT_BINDING_VERSION}
        },
    }
    if ch.reply is not None:
        reply = next(c for c in channels() if c.key == ch.reply)
        op["reply"] = {
            "channel": _ref("channels", reply.key),
            "messages": [_ref("channels", reply.key, "messages", m) for m in reply.messages],
        }
    return op


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the contract, as plain data."""
    examples = example_payloads()
    chans = channels()
    params = {
        "station": {
            "description": "Station id: one MQTT topic segment (no '/', '+', '#').",
            "examples": [STATION],
        },
        "user": {
            "description": "Broker user name: one MQTT topic segment. The broker's ACL lets "
            "only this user publish on cmd/{user}.",
            "examples": ["operator"],
        },
        "device": {"description": "Hardware driver id.", "enum": list(DEVICES)},
    }
    channel_docs: dict[str, Any] = {}
    for ch in chans:
        used = [p for p in params if "{" + p + "}" in ch.address]
        channel_docs[ch.key] = {
            "address": ch.address,
            "description": ch.description + (" Retained." if ch.retain else " Not retained."),
            "parameters": {p: _ref("components", "parameters", p) for p in used},
            "messages": {m: _ref("components", "messages", m) for m in ch.messages},
        }
    names = list(dict.fromkeys(m for ch in chans for m in ch.messages))
    description = (
        "The MQTT contract of a swapstation battery-swap station for heavy electric trucks, "
        "from the controller's point of view (`send` = the controller publishes). "
        "Every JSON payload carries the schema version `v` and a timestamp `ts` (ISO 8601 with "
        "a UTC offset; a `ts` without one is refused), and refuses unknown fields. Commands "
        "carry an `id` that the reply or result echoes (MQTT 3.1.1: correlation is in the "
        "payload). All messages use QoS 1; state is retained, commands never are. Payloads "
        f"larger than {MAX_PAYLOAD_BYTES} bytes or nested deeper than {MAX_JSON_DEPTH} levels "
        "are refused. See docs/mqtt-api.md."
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "swapstation MQTT contract",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": description,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "station": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "The station's broker (MQTT 3.1.1 or 5; TLS and ACLs in a station).",
            }
        },
        "channels": channel_docs,
        "operations": {
            f"{ch.action}{ch.key[0].upper()}{ch.key[1:]}": _operation(ch) for ch in chans
        },
        "components": {
            "parameters": params,
            "messages": {n: _message(n, examples) for n in names},
            "schemas": component_schemas(),
        },
    }


def export_contract(out_dir: Path) -> list[Path]:
    """Write ``schemas/<name>.schema.json`` for every payload and ``asyncapi.yaml`` to ``out_dir``.

    Returns the paths written. Output is deterministic (stable key order), so a diff of two
    exports shows exactly how the contract changed.
    """
    schema_dir = out_dir / "schemas"
    schema_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in PAYLOADS:
        path = schema_dir / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(name), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    path = out_dir / "asyncapi.yaml"
    text = yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    path.write_text(text, encoding="utf-8")
    written.append(path)
    return written
