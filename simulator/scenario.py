"""Scenario files (``config/scenarios/*.yaml``): faults and traffic for a simulator run.

A scenario is the reproducible description of "what goes wrong, and when", kept next to the
station file so a fault can be replayed by name (``swapctl sim --scenario ...``)::

    description: The arm fails to lift the depleted pack once.
    faults:
      - arm.lift:fail
    arrivals: 1          # optional: trucks sent at start
    rate_per_hour: null  # optional: Poisson arrivals instead

A bad file is refused like a bad station file: :class:`~controller.errors.ConfigError` with the
file, the field and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.errors import ConfigError
from simulator.faults import FaultSpec, parse_fault


class Scenario(BaseModel):
    """What a scenario file holds (faults are kept as validated spec strings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    faults: list[str] = Field(default_factory=list)
    arrivals: int = Field(default=0, ge=0, le=10_000)
    rate_per_hour: float | None = Field(default=None, gt=0, le=3600)

    def fault_specs(self) -> list[FaultSpec]:
        return [parse_fault(s) for s in self.faults]


def parse_scenario(data: Any, path: str = "<scenario>") -> Scenario:
    """Validate loaded YAML; every fault spec is parsed so a typo is caught at load time."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, "", "a scenario file holds a YAML mapping at the top level")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(path, field, err["msg"]) from None
    for i, spec in enumerate(scenario.faults):
        try:
            parse_fault(spec)
        except ConfigError as exc:
            raise ConfigError(path, f"faults[{i}]", f"{spec!r}: {exc.reason}") from None
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), "", f"not valid YAML: {exc}") from None
    return parse_scenario(data, str(p))
