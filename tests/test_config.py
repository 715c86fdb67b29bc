"""The station file: the shipped defaults model a real heavy-truck station, and bad files are
refused with the file, the field path and the reason (one line, never a traceback).

The nominal-swap arithmetic below prices the phase plan (``PHASE_PLAN``, the one the sequencer
runs) at the simulated action timings, so a change to the plan or to the defaults that would
make a nominal swap miss its 150 s target fails here, before anyone runs a demo.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import DEFAULT_CONFIG, StationConfig, load_config
from controller.contract import DRIVER_ACTIONS, PHASE_PLAN, SWAP_PHASES
from controller.errors import ConfigError
from controller.phase_timing import nominal_phase_s


@pytest.fixture(scope="module")
def cfg() -> StationConfig:
    return load_config()


# ---- the shipped file ---------------------------------------------------------------------


def test_shipped_config_loads(cfg: StationConfig) -> None:
    assert load_config(DEFAULT_CONFIG) == cfg
    assert cfg.station_id == "cq-changshou-01"
    assert set(cfg.swap.phase_deadlines_s) == {p.value for p in SWAP_PHASES}


def test_defaults_model_a_heavy_truck_station(cfg: StationConfig) -> None:
    assert cfg.swap.budget_s == 180
    for name, pack in cfg.rack.pack_types.items():
        assert pack.mass_kg >= 2500, name  # a heavy-truck pack is ~3 t
        assert pack.capacity_kwh >= 150, name
    assert cfg.simulator.traffic.pack_type in cfg.rack.pack_types
    lay, move = cfg.simulator.layout, cfg.simulator.actions["arm.move"]
    farthest_m = lay.first_slot_m + (max(s.slot for s in cfg.rack.slots) - 1) * lay.slot_pitch_m
    carry_s = move.nominal_s + move.per_m_s * abs(farthest_m - lay.vehicle_m)
    assert carry_s >= 10, "moving a 3 t pack takes tens of seconds"
    assert 0 < cfg.rack.swappable_soc <= 1
    charged = [p for p in cfg.simulator.initial_packs if p.soc >= cfg.rack.swappable_soc]
    assert charged, "the rack must start with at least one swappable pack"


def test_every_driver_action_has_a_simulated_duration(cfg: StationConfig) -> None:
    declared = {f"{dev}.{act}" for dev, acts in DRIVER_ACTIONS.items() for act in acts}
    assert declared <= set(cfg.simulator.actions), declared - set(cfg.simulator.actions)
    assert set(cfg.simulator.actions) <= declared, "timing for an action no driver knows"


def test_nominal_swap_leaves_slack_in_the_budget(cfg: StationConfig) -> None:
    per_phase = nominal_phase_s(cfg)
    assert list(per_phase) == [p.phase for p in PHASE_PLAN]
    assert sum(per_phase.values()) <= 150, per_phase
    slowest = sum(nominal_phase_s(cfg, jitter=True).values())
    assert slowest <= cfg.swap.budget_s, "every action at its slowest jitter still fits"


def test_every_phase_fits_its_deadline_at_worst_jitter(cfg: StationConfig) -> None:
    for phase, slowest in nominal_phase_s(cfg, jitter=True).items():
        assert slowest < cfg.swap.phase_deadlines_s[phase.value], (phase, slowest)


def test_every_step_policy_fits_its_phase_deadline(cfg: StationConfig) -> None:
    """All attempts of a step with a policy fit the deadline of every phase that runs it, so a
    retry the station file allows can happen before the phase runs out of time."""
    for plan in PHASE_PLAN:
        for step in plan.steps:
            policy = cfg.swap.steps.get(step.key)
            if policy is not None and policy.deadline_s is not None:
                attempts_s = policy.deadline_s * (1 + policy.retries)
                deadline_s = cfg.swap.phase_deadlines_s[plan.phase.value]
                assert attempts_s <= deadline_s, (plan.phase, step.key, attempts_s)


# ---- bad files ------------------------------------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


def _set(*path: str | int, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _drop(*path: str | int) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _fill_rack(data: dict[str, Any]) -> None:
    packs = data["simulator"]["initial_packs"]
    used = {p["slot"] for p in packs}
    for s in data["rack"]["slots"]:
        if s["slot"] not in used:
            packs.append({"slot": s["slot"], "id": f"P-9{s['slot']}", "type": "HT-282", "soc": 0.5})


# (case id, edit, field path the error should name, words the message must contain)
BAD: list[tuple[str, Edit, str, str]] = [
    ("unknown-field", _set("swap", "budget_seconds", value=170), "swap.budget_seconds", "Extra"),
    ("wrong-type", _set("rack", "slots", 2, "charger_kw", value="fast"),
     "rack.slots[2].charger_kw", "valid number"),
    ("wrong-type-dict-entry", _set("swap", "phase_deadlines_s", "stow", value="soon"),
     "swap.phase_deadlines_s.stow", "valid number"),
    ("missing-section", _drop("swap"), "swap", "Field required"),
    ("negative-deadline", _set("swap", "phase_deadlines_s", "stow", value=-5),
     "swap.phase_deadlines_s.stow", "0"),
    ("missing-phase-deadline", _drop("swap", "phase_deadlines_s", "fetch"),
     "swap.phase_deadlines_s", "fetch"),
    ("unknown-phase", _set("swap", "phase_deadlines_s", "polish", value=5),
     "swap.phase_deadlines_s", "polish"),
    ("duplicate-slot", _set("rack", "slots", 2, "slot", value=2), "rack.slots[2].slot", "repeat"),
    ("initial-pack-in-unknown-slot", _set("simulator", "initial_packs", 0, "slot", value=42),
     "simulator.initial_packs", "slot 42 is not in the rack"),
    ("rack-full", _fill_rack, "simulator.initial_packs", "free slot"),
    ("negative-budget", _set("swap", "budget_s", value=-1), "swap.budget_s", "greater than 0"),
    ("step-not-in-plan", _set("swap", "steps", "arm.stop", value={"deadline_s": 2}),
     "swap.steps.arm.stop", "not a step of the swap plan"),
    ("step-no-such-action", _set("swap", "steps", "arm.fly", value={"retries": 1}),
     "swap.steps.arm.fly", "no such driver action"),
]  # fmt: skip


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _refusal(tmp_path: Path, edit: Edit) -> ConfigError:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8")))
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: {err.field}: "), str(err)
    assert "\n" not in str(err)
    return err


@pytest.mark.parametrize(("edit", "field", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_is_refused_naming_file_field_and_reason(
    tmp_path: Path, edit: Edit, field: str, words: str
) -> None:
    err = _refusal(tmp_path, edit)
    assert err.field == field or field.startswith(err.field + "."), str(err)
    assert words in str(err)


@pytest.mark.parametrize(("edit", "field"), [b[1:3] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_file_names_the_exact_field(tmp_path: Path, edit: Edit, field: str) -> None:
    assert _refusal(tmp_path, edit).field == field


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert "cannot read" in str(info.value) and "No such file" in str(info.value)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("station_id: a\nswap:\n  budget_s: [180\n  ack_timeout_s: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert err.field.startswith("line ") and ", column " in err.field, str(err)
    assert "not valid YAML" in err.reason


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert "mapping at the top level" in info.value.reason


def test_several_problems_are_counted(tmp_path: Path) -> None:
    def two(data: dict[str, Any]) -> None:
        data["swap"]["budget_seconds"] = 1
        data["broker"]["keepalive_s"] = "often"

    assert "(and 1 more problem)" in _refusal(tmp_path, two).reason
