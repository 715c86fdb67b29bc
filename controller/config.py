"""Station configuration: one YAML file loaded into pydantic models.

A bad file is refused with a :class:`~controller.errors.ConfigError` naming the file, the field
and the reason; the CLI prints that one line and exits 2, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.contract import DRIVER_ACTIONS, SWAP_PHASES
from controller.contract.common import Id
from controller.contract.phases import PLAN_STEP_KEYS
from controller.error_table import NEVER_RETRIED
from controller.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "station.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(Strict):
    """Where the MQTT broker is. ``url: null`` runs the embedded broker in-process."""

    url: str | None = Field(default=None, description="mqtt://host:port or mqtts://host:port")
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = Field(default=15, ge=2, le=3600)
    reconnect_min_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)


class StepPolicy(Strict):
    """How one driver action is supervised: its own deadline, and how often it is retried."""

    deadline_s: float | None = Field(default=None, gt=0, description="station s per attempt")
    retries: int = Field(default=0, ge=0, le=5)


class SwapConfig(Strict):
    """The numbers of the swap; what they apply to is the phase plan (``PHASE_PLAN`` in the
    contract): ``phase_deadlines_s`` has one deadline per phase of the plan, and ``steps`` may
    give a step of the plan (``device.action``) its own deadline and retries."""

    budget_s: float = Field(default=180.0, gt=0)
    phase_deadlines_s: dict[str, Annotated[float, Field(gt=0)]]
    ack_timeout_s: float = Field(
        default=3.0, gt=0, description="Real seconds for a driver to accept a command"
    )
    steps: dict[str, StepPolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _steps_name_steps_of_the_plan(self) -> Self:
        for key, policy in self.steps.items():
            device, _, action = key.partition(".")
            if action not in DRIVER_ACTIONS.get(device, {}):
                raise ValueError(f"steps.{key}: no such driver action (write device.action)")
            if key not in PLAN_STEP_KEYS:
                raise ValueError(
                    f"steps.{key}: not a step of the swap plan; its steps are "
                    + ", ".join(sorted(PLAN_STEP_KEYS))
                )
            if key in NEVER_RETRIED and policy.retries:
                raise ValueError(f"steps.{key}: moves a pack, so it is never retried")
        return self

    @model_validator(mode="after")
    def _every_phase_has_a_deadline(self) -> Self:
        order = [p.value for p in SWAP_PHASES]
        unknown = [k for k in self.phase_deadlines_s if k not in order]
        missing = [p for p in order if p not in self.phase_deadlines_s]
        if unknown:
            raise ValueError(f"phase_deadlines_s: unknown phase(s) {unknown}; phases are {order}")
        if missing:
            raise ValueError(f"phase_deadlines_s: no deadline for phase(s) {missing}")
        return self


class PackType(Strict):
    capacity_kwh: float = Field(gt=0, le=2000)
    mass_kg: float = Field(gt=0, le=10000)


class SlotConfig(Strict):
    slot: int = Field(ge=1)
    pack_types: list[Id] = Field(min_length=1)
    charger_kw: float = Field(ge=0, le=2000)


class RackConfig(Strict):
    swappable_soc: float = Field(default=0.9, gt=0, le=1)
    pack_types: dict[Id, PackType] = Field(min_length=1)
    slots: list[SlotConfig] = Field(min_length=2)
    grid_limit_kw: float | None = Field(
        default=None,
        gt=0,
        description="The station's grid connection, shared by all chargers (null: no cap below"
        " the sum of the chargers)",
    )

    @model_validator(mode="after")
    def _slots_are_consistent(self) -> Self:
        first: dict[int, int] = {}
        for i, s in enumerate(self.slots):
            if s.slot in first:
                raise ValueError(f"slots[{i}].slot: slot {s.slot} repeats slots[{first[s.slot]}]")
            first[s.slot] = i
            unknown = [t for t in s.pack_types if t not in self.pack_types]
            if unknown:
                raise ValueError(f"slots[{i}].pack_types: unknown pack type(s) {unknown}")
        return self


class ActionTiming(Strict):
    """How long a simulated action takes: ``nominal_s`` (+ ``per_m_s`` per metre for moves)."""

    nominal_s: float = Field(ge=0)
    jitter: float = Field(default=0.1, ge=0, lt=1, description="Uniform +- fraction")
    per_m_s: float = Field(default=0.0, ge=0)


class InitialPack(Strict):
    slot: int = Field(ge=1)
    id: Id
    type: Id
    soc: float = Field(ge=0, le=1)
    health: float = Field(default=1.0, ge=0, le=1)


class TrafficConfig(Strict):
    """Trucks the simulator sends: a count or a rate, with pack type and arriving SoC."""

    pack_type: Id = "HT-282"
    soc_min: float = Field(default=0.08, ge=0, le=1)
    soc_max: float = Field(default=0.30, ge=0, le=1)
    manoeuvre_s: ActionTiming = ActionTiming(nominal_s=25.0, jitter=0.2)
    depart_s: ActionTiming = ActionTiming(nominal_s=10.0, jitter=0.2)


class LayoutConfig(Strict):
    """Positions along the arm's rail, in metres, for move durations."""

    vehicle_m: float = 0.0
    home_m: float = 4.0
    first_slot_m: float = 6.0
    slot_pitch_m: float = 2.0


class SimulatorConfig(Strict):
    seed: int | None = 7
    actions: dict[str, ActionTiming]
    layout: LayoutConfig = LayoutConfig()
    initial_packs: list[InitialPack]
    traffic: TrafficConfig = TrafficConfig()
    charge_tick_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _actions_are_named_device_dot_action(self) -> Self:
        for key in self.actions:
            if key.count(".") != 1:
                raise ValueError(f"action {key!r} must be written device.action, e.g. arm.move")
        return self


class StationConfig(Strict):
    station_id: Id
    time_scale: float = Field(default=1.0, gt=0, le=10000)
    broker: BrokerConfig = BrokerConfig()
    swap: SwapConfig
    rack: RackConfig
    simulator: SimulatorConfig
    database: str | None = Field(default=None, description="SQLite file; null = in memory")

    @model_validator(mode="after")
    def _initial_packs_fit_the_rack(self) -> Self:
        slots = {s.slot: s for s in self.rack.slots}
        seen: set[str] = set()
        used: set[int] = set()
        for p in self.simulator.initial_packs:
            if p.slot not in slots:
                raise ValueError(f"simulator.initial_packs: slot {p.slot} is not in the rack")
            if p.slot in used:
                raise ValueError(f"simulator.initial_packs: slot {p.slot} holds two packs")
            if p.type not in slots[p.slot].pack_types:
                raise ValueError(f"simulator.initial_packs: slot {p.slot} cannot hold {p.type}")
            if p.id in seen:
                raise ValueError(f"simulator.initial_packs: pack id {p.id} repeats")
            seen.add(p.id)
            used.add(p.slot)
        if len(used) >= len(slots):
            raise ValueError("simulator.initial_packs: the rack needs a free slot to stow into")
        return self

    def with_overrides(self, **changes: Any) -> StationConfig:
        """A copy with top-level fields replaced (validated again)."""
        data = self.model_dump()
        data.update(changes)
        return StationConfig.model_validate(data)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_NAMED_FIELD = re.compile(r"([A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): (.+)", re.S)


def parse_config(data: Any, path: str = "<config>") -> StationConfig:
    """Validate already-loaded data; errors name ``path``, the field and the reason."""
    if not isinstance(data, dict):
        raise ConfigError(path, "", "the file must hold a YAML mapping at the top level")
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
        reason = err["msg"].removeprefix("Value error, ")
        field = _field_path(loc)
        # A model validator blames a field by starting its message with the field's path,
        # relative to the model ("simulator.initial_packs: ..."): move it into the field.
        named = _NAMED_FIELD.match(reason) if err["type"] == "value_error" else None
        if named:
            field = f"{field}.{named[1]}" if field else named[1]
            reason = named[2]
        more = exc.error_count() - 1
        if more:
            reason += f" (and {more} more problem{'s' if more > 1 else ''})"
        return _raise(path, field or "(top level)", reason)


def _raise(path: str, field: str, reason: str) -> StationConfig:
    raise ConfigError(path, field, reason)


def load_config(path: str | Path | None = None) -> StationConfig:
    """Load and validate a station file (default: ``config/station.yaml``)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), where, f"not valid YAML: {problem}") from None
    return parse_config(data, str(p))
