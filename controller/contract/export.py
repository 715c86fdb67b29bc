"""Export the contract as JSON Schema files and an AsyncAPI 3.0 document.

Integrators build drivers and consoles in any language from these files, so they are generated
from the pydantic models and from :class:`Topics` (no topic string is typed here) and cannot
drift from the code. ``swapctl contract export DIR`` calls :func:`export_contract`.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from controller.contract.codec import encode
from controller.contract.common import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    AlarmInfo,
    PackInfo,
    Severity,
)
from controller.contract.drivers import (
    ArmState,
    BayState,
    DeviceStateAdapter,
    DoorState,
    DriverCommand,
    DriverResult,
    IdentifyData,
    RackSlotState,
    RackState,
    SafetyState,
    SimControl,
    SimWorld,
    VehicleInBay,
    VehicleState,
    VerifyData,
    WorldPack,
)
from controller.contract.operator import (
    AlarmRaised,
    ErrorEvent,
    EventAdapter,
    Inventory,
    Mode,
    ModeChanged,
    OperatorCommand,
    Phase,
    PhaseChanged,
    Reply,
    SlotInfo,
    Status,
    SwapFinished,
    SwapRecord,
    VehicleArrived,
)
from controller.contract.topics import DEVICES, OFFLINE, ONLINE, Topics

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION: Final = "3.0.0"
MQTT_BINDING_VERSION: Final = "0.2.0"
LIVENESS: Final = "Liveness"

#: Every payload exported as ``schemas/<name>.schema.json``; the unions through their adapters.
PAYLOADS: Final[dict[str, TypeAdapter[Any]]] = {
    "OperatorCommand": TypeAdapter(OperatorCommand),
    "Reply": TypeAdapter(Reply),
    "Status": TypeAdapter(Status),
    "Inventory": TypeAdapter(Inventory),
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
}

#: AsyncAPI messages: name -> (payload model, summary). Events are one message per kind.
MESSAGES: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "OperatorCommand": (OperatorCommand, "A command from an operator (v and ts may be omitted)"),
    "Reply": (Reply, "Exactly one reply per operator command, echoing its id"),
    "Status": (Status, "Station mode, phase and swap progress"),
    "Inventory": (Inventory, "Every slot and pack the station knows of"),
    "PhaseChanged": (PhaseChanged, "The swap entered a phase (or left the last one)"),
    "ModeChanged": (ModeChanged, "The station changed mode"),
    "AlarmRaised": (AlarmRaised, "An alarm was raised"),
    "VehicleArrived": (VehicleArrived, "A truck stopped in the bay"),
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
EVENT_MESSAGES: Final = ("PhaseChanged", "ModeChanged", "AlarmRaised", "VehicleArrived")
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
    {"status", "inventory", "controller", "driverState", "driverOnline", "simWorld"}
)
REPLIES: Final = {"cmd": "reply", "driverCmd": "driverResult"}


def channels() -> list[Channel]:
    """Every topic of :class:`Topics`, with ``{station}`` and ``{device}`` as parameters."""
    t, d, c = Topics("{station}"), "{device}", Channel
    events = (*EVENT_MESSAGES, "SwapFinished", "ErrorEvent")
    states = (*STATE_MESSAGES, "SafetyState")
    # fmt: off
    return [
        c("status", t.status, "send", ("Status",), "Station status, on every change."),
        c("cmd", t.cmd, "receive", ("OperatorCommand",), "Operator commands."),
        c("reply", t.reply, "send", ("Reply",), "Exactly one reply per operator command."),
        c("events", t.events, "send", events, "Phases, modes, alarms, swaps, error events."),
        c("inventory", t.inventory, "send", ("Inventory",), "Every slot and pack, on change."),
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
        c("simWorld", t.sim_world, "receive", ("SimWorld",),
          "Simulated ground truth, read by tests; absent in a real station."),
    ]
    # fmt: on


# ---- examples -------------------------------------------------------------------------------


def example_payloads(station: str = "cq-changshou-01") -> dict[str, list[BaseModel | str]]:
    """Valid payloads of every message, for the AsyncAPI document and docs/mqtt-api.md.

    One coherent moment: swap 42 is in ``stow``, the arm holds the depleted pack at slot 7.
    Built from the models, so an example that stops validating fails here, not in a reader's
    driver.
    """
    s, ts = station, datetime(2025, 5, 12, 8, 31, 4, 250000, tzinfo=UTC)
    swap_id, vehicle = "SW-20250512-0042", "CQ-HT-0427"
    # fmt: off
    full = PackInfo(id="P-1002", type="HT-282", soc=0.95, health=0.97, capacity_kwh=282)
    flat = PackInfo(id="P-2291", type="HT-282", soc=0.14, health=0.93, temperature_c=31.5,
                    capacity_kwh=282)
    p1001 = PackInfo(id="P-1001", type="HT-282", soc=0.97, capacity_kwh=282)
    slots = [
        RackSlotState(slot=1, pack=p1001, docked=True, charger_kw=240, charging_kw=48.0),
        RackSlotState(slot=2, pack=full, docked=False, charger_kw=240),
        RackSlotState(slot=7, charger_kw=240),
        RackSlotState(slot=8, charger_kw=240),
    ]
    phases = {"identify": 2.1, "position": 8.3, "prepare": 12.6, "unlock": 6.1, "remove": 10.2,
              "stow": 24.8, "fetch": 20.9, "insert": 20.4, "lock": 6.0, "verify": 12.5,
              "release": 5.1}
    record = SwapRecord(
        swap_id="SW-20250512-0041", vehicle_id="CQ-HT-0311", result="completed",
        duration_s=129.0, budget_s=180, in_budget=True, phases=phases, pack_out=flat,
        pack_in=full, queued_s=12.0, manoeuvre_s=23.1,
        started_at=datetime(2025, 5, 12, 8, 26, 10, tzinfo=UTC),
        ended_at=datetime(2025, 5, 12, 8, 28, 19, tzinfo=UTC))
    alarm = AlarmInfo(id="AL-0007", code="phase_deadline", severity=Severity.error, raised_at=ts,
                      text="phase 'stow' exceeded its 50 s deadline",
                      hint="check the arm and the rack, then clear and reset")
    in_bay = VehicleInBay(plate=vehicle, stopped=True, queued_s=41.0, manoeuvre_s=24.6,
                          position_error_mm=12.0)
    arm_cmd, vehicle_cmd, lift_cmd = "arm-17-5081.204", "vehicle-9-5021.882", "arm-18-5112.730"
    return {
        "OperatorCommand": [OperatorCommand(id="op-7f3a", cmd="start", ts=ts),
                            OperatorCommand(id="op-7f3b", cmd="hold", ts=ts)],
        "Reply": [Reply(id="op-7f3a", ok=True, cmd="start", mode=Mode.execute, ts=ts),
                  Reply(id="op-7f3c", ok=False, cmd="reset", mode=Mode.execute, ts=ts,
                        error="not valid in mode execute; valid now: hold, abort, estop")],
        "Status": [Status(station=s, mode=Mode.execute, phase=Phase.stow, swap_id=swap_id,
                          vehicle_id=vehicle, elapsed_s=61.4, budget_s=180, phase_elapsed_s=9.2,
                          phase_deadline_s=50, queue_length=1, active_alarms=0,
                          swaps_completed=41, ts=ts)],
        "Inventory": [Inventory(station=s, slots=[SlotInfo(**x.model_dump()) for x in slots],
                                gripper=flat, vehicle_id=vehicle, swappable_soc=0.9,
                                consistent=True, ts=ts)],
        "PhaseChanged": [PhaseChanged(station=s, swap_id=swap_id, phase=Phase.stow,
                                      previous=Phase.remove, elapsed_s=52.2,
                                      previous_phase_s=10.2, ts=ts)],
        "ModeChanged": [ModeChanged(station=s, mode=Mode.held, previous=Mode.execute,
                                    reason="operator command hold", ts=ts)],
        "AlarmRaised": [AlarmRaised(station=s, alarm=alarm, ts=ts)],
        "VehicleArrived": [VehicleArrived(station=s, vehicle_id=vehicle, queued_s=41.0,
                                          manoeuvre_s=24.6, ts=ts)],
        "SwapFinished": [SwapFinished(station=s, record=record, ts=ts)],
        "ErrorEvent": [ErrorEvent(station=s, source="controller", topic=Topics(s).cmd, ts=ts,
                                  error="schema: cmd: Field required",
                                  payload_excerpt='{"id": "op-9"}'),
                       ErrorEvent(station=s, source="arm", topic=Topics(s).driver_cmd("arm"),
                                  error="schema: action: Field required", ts=ts,
                                  payload_excerpt='{"id": "arm-19-5120.001", "args": {}}')],
        "DriverCommand": [
            DriverCommand(id=arm_cmd, action="move", args={"target": "slot", "slot": 7}, ts=ts),
            DriverCommand(id=vehicle_cmd, action="identify", ts=ts)],
        "DriverResult": [
            DriverResult(id=arm_cmd, device="arm", action="move", status="accepted", ts=ts),
            DriverResult(id=arm_cmd, device="arm", action="move", status="done", ts=ts),
            DriverResult(id=vehicle_cmd, device="vehicle", action="identify", status="done",
                         data={"vehicle_id": vehicle, "pack": flat.model_dump(mode="json")},
                         ts=ts),
            DriverResult(id=lift_cmd, device="arm", action="lift", status="failed",
                         error_code="busy", error=f"busy with move (command {arm_cmd})", ts=ts)],
        "ArmState": [ArmState(position="slot:7", holding=flat, ts=ts)],
        "BayState": [BayState(vehicle=in_bay, secured=True, pack_locked=False, queue_length=1,
                              ts=ts)],
        "DoorState": [DoorState(position="open", ts=ts)],
        "RackState": [RackState(slots=slots, ts=ts)],
        "VehicleState": [VehicleState(connected=True, vehicle_id=vehicle, hv_on=False, ts=ts)],
        "SafetyState": [SafetyState(estop_pressed=False, ts=ts)],
        LIVENESS: [ONLINE, OFFLINE],
        "SimControl": [SimControl(op="arrive", args={"count": 3}, ts=ts),
                       SimControl(op="estop", args={"pressed": True}, ts=ts)],
        "SimWorld": [SimWorld(packs=[WorldPack(pack=p1001, location="slot:1"),
                                     WorldPack(pack=full, location="slot:2"),
                                     WorldPack(pack=flat, location="gripper")], ts=ts)],
    }
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
        if model.__doc__:
            out["description"] = " ".join(model.__doc__.split())
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
            "examples": ["cq-changshou-01"],
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
        "Every JSON payload carries the schema version `v` and a timestamp `ts`, and refuses "
        "unknown fields. Commands carry an `id` that the reply or result echoes (MQTT 3.1.1: "
        "correlation is in the payload). All messages use QoS 1; state is retained, commands "
        f"never are. Payloads larger than {MAX_PAYLOAD_BYTES} bytes are refused. "
        "See docs/mqtt-api.md."
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
