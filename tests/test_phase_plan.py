"""The phase plan is the one definition of a swap's order: it is well formed, every hook it names
has a behaviour, and a nominal swap sends exactly its steps, in its order, with its arguments.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest

from controller.contract import Phase, Topics
from controller.contract.phases import (
    HOOK_PURPOSE,
    PHASE_PLAN,
    SWAP_PHASES,
    Hook,
    Place,
    Step,
    do,
    plan_problems,
)
from controller.station.swap import HOOKS, SwapRun
from tests.harness import far_deadlines, raw_client, running_station, station_config

pytestmark = pytest.mark.timeout(60)


# ---- the plan itself ------------------------------------------------------------------------
def test_the_plan_is_well_formed_and_is_the_phase_order() -> None:
    assert plan_problems(PHASE_PLAN) == []
    assert [Phase.waiting, *SWAP_PHASES] == list(Phase)


def test_a_broken_plan_is_named() -> None:
    swapped = (PHASE_PLAN[1], PHASE_PLAN[0], *PHASE_PLAN[2:])
    assert any("not the Phase enum" in p for p in plan_problems(swapped))
    bad_step = replace(PHASE_PLAN[0], branches=((do("arm.fly"),),))
    assert plan_problems((bad_step, *PHASE_PLAN[1:])) == ["identify: arm.fly is no driver action"]


def test_every_hook_has_a_behaviour_a_purpose_and_a_use() -> None:
    used = {p.before for p in PHASE_PLAN} | {s.then for p in PHASE_PLAN for s in p.steps}
    assert set(Hook) <= used, f"hooks the plan never runs: {set(Hook) - used}"
    assert set(HOOKS) == set(Hook) == set(HOOK_PURPOSE)


def test_a_fact_the_plan_needs_before_a_hook_found_it_is_a_clear_error() -> None:
    run = SwapRun(swap_id="s-1", plate="P", started=0.0, started_at=None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="needs the stow slot before it is known"):
        run.slot(Place.stow)
    run.stow_slot = 3
    assert run.location(Place.stow) == "slot:3"


# ---- the sequencer runs it --------------------------------------------------------------------
def _resolve(step: Step, slots: dict[Place, int]) -> tuple[str, dict[str, Any]]:
    args = {k: slots[v] if isinstance(v, Place) else v for k, v in step.args.items()}
    return step.action, args


async def test_a_nominal_swap_sends_exactly_the_plans_steps_in_its_order(
    embedded_broker: object, station_id: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    # far deadlines: a step deadline cut short by a loaded machine would add a stop and a retry
    # (one failure in 3 runs under two CPU hogs), which is not the nominal swap this judges
    cfg = station_config(station_id, **far_deadlines())
    topics = Topics(station_id)
    wire: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)

    async def on_command(topic: str, payload: bytes) -> None:
        device = topics.device_of(topic)
        command = json.loads(payload)
        wire[device or "?"].append((command["action"], command.get("args", {})))

    recorder = await raw_client(url, f"plan-recorder-{station_id}")
    try:
        await recorder.subscribe(topics.every_driver("cmd"), on_command)
        async with running_station(url, cfg) as st:
            station = st.controller.station
            marks: list[tuple[Phase, int]] = []
            slots: dict[Place, int] = {}

            def on_phase(phase: Phase) -> None:
                marks.append((phase, len(station.sent)))
                run = station.run
                if run is not None and run.stow_slot and run.fetch_slot:
                    slots.update({Place.stow: run.stow_slot, Place.fetch: run.fetch_slot})

            station.phase_listeners.append(on_phase)
            await st.sim.arrive(1)
            record = await st.next_swap()
            assert record.result == "completed", record.reason
            await st.wait_no_command_in_flight()
            sent = [f"{device}.{action}" for _, device, action in station.sent]
    finally:
        await recorder.stop()

    # phase by phase (the station's own log of what it sent, split where each phase began)
    assert [phase for phase, _ in marks] == [*SWAP_PHASES, Phase.waiting]
    assert marks[0][1] == 0, f"sent before the first phase: {sent[: marks[0][1]]}"
    for plan, (_, begin), (_, end) in zip(PHASE_PLAN, marks, marks[1:], strict=False):
        got = sent[begin:end]
        assert sorted(got) == sorted(s.key for s in plan.steps), plan.phase
        for branch in plan.branches:  # each branch in its order (concurrent ones interleave)
            keys = [s.key for s in branch]
            assert [k for k in got if k in keys] == keys, (plan.phase, got)
    assert len(sent) == marks[-1][1], f"sent after the last phase: {sent[marks[-1][1] :]}"

    # device by device on the wire, with the arguments the plan gives (its slots resolved)
    expected: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for plan in PHASE_PLAN:
        for step in plan.steps:
            expected[step.device].append(_resolve(step, slots))
    assert dict(wire) == dict(expected)
