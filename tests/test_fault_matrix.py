"""Every fault kind at every swap phase: the station ends safe, stops moving, loses no pack.

For each (phase, kind) a fault is armed in the simulator at the instant the phase begins, on the
action of that phase listed in STRIKE. The test then asserts, whatever the outcome:

- the station ends in a documented safe way: the swap completes (the fault was cured by a
  bounded retry, or was harmless), or it is aborted / e-stopped, or it is held for the operator
  (then the cause is removed and the operator resumes);
- no motion command was sent after the fault was detected (the station left execute), until an
  operator resumed;
- every pack is in exactly one place, where the simulated world has it, or explicitly
  ``unknown`` with a ``pack_location_unknown`` alarm active.

The matrix of outcomes is printed as a table at the end of the module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from controller.cli.demo import compare_with_world
from controller.contract import PHASE_PLAN, SWAP_PHASES, Mode, Phase
from controller.error_table import ALARMS
from tests.harness import StationUnderTest, running_station, station_config
from tests.waits import until

pytestmark = pytest.mark.timeout(60)

KINDS = ("fail", "hang", "slow", "disconnect", "lie", "drop", "estop", "light_curtain")

#: Phases whose fault strikes another step than their first: the step worth striking there.
STRIKE_INSTEAD: dict[str, str] = {"fetch": "arm.lift", "verify": "vehicle.verify"}
#: The action each phase's fault strikes, from the phase plan: its first step, or the one above
#: (a phase with no driver action has nothing to strike).
STRIKE: dict[str, str] = {
    p.phase.value: STRIKE_INSTEAD.get(p.phase.value, p.steps[0].key) for p in PHASE_PLAN if p.steps
}
#: ``drop`` needs a pack in the gripper: it strikes the first step of a phase that moves or
#: carries a pack. In the other phases it strikes the arm's next move, which carries no pack, so
#: the spec is not consumed and the swap completes.
DROP_STRIKE: dict[str, str] = {
    p.phase.value: next(s.key for s in p.steps if s.moves or s.carries)
    for p in PHASE_PLAN
    if any(s.moves or s.carries for s in p.steps)
}


def test_every_strike_is_a_step_of_its_phase() -> None:
    """A strike on an action the phase never sends would never fire: the swap would complete
    and the matrix would pass without testing anything."""
    for p in PHASE_PLAN:
        keys = [s.key for s in p.steps]
        assert STRIKE.get(p.phase.value) in (keys or [None]), (p.phase, STRIKE.get(p.phase.value))
        assert DROP_STRIKE.get(p.phase.value, STRIKE.get(p.phase.value)) in (keys or [None])
    assert set(STRIKE_INSTEAD) <= set(STRIKE)
    assert DROP_STRIKE, "no phase of the plan holds a pack: drop would test nothing"


MATRIX: dict[tuple[str, str], str] = {}


@dataclass
class Watch:
    """When the fault was injected and when the station first left execute after it."""

    injected_at: float | None = None
    detected_at: float | None = None
    resumed_at: float | None = None


def _arm(st: StationUnderTest, phase: str, kind: str, watch: Watch) -> None:
    action = DROP_STRIKE.get(phase, "arm.move") if kind == "drop" else STRIKE[phase]
    # x10: the tests run with 4x deadline slack (see harness), so x3 would always fit
    spec = f"{action}:slow:10" if kind == "slow" else f"{action}:{kind}"
    station = st.controller.station

    def on_phase(new: Phase) -> None:
        if new.value == phase and watch.injected_at is None:
            st.sim.inject(spec)
            watch.injected_at = st.clock.monotonic()

    def on_mode(new: Mode, previous: Mode) -> None:
        if watch.injected_at is not None and watch.detected_at is None and new is not Mode.execute:
            watch.detected_at = st.clock.monotonic()

    station.phase_listeners.append(on_phase)
    station.mode_listeners.append(on_mode)


STOPPED = (Mode.held, Mode.suspended, Mode.estopped, Mode.aborted)
#: Polls in a row (10 ms apart) the station must look stopped for the operator. A result that
#: was in flight when it stopped (a motion the light curtain cut) turns a hold into an abort a
#: few loop turns after it arrives, with no I/O in between.
STABLE_POLLS = 3


def _stopped_for_the_operator(st: StationUnderTest) -> bool:
    """Stopped, no halt still making the station safe, and no result still to come from an
    online driver (one that is offline answers when it is back, after the operator resumes)."""
    station, devices = st.controller.station, st.controller.devices
    if station.mode not in STOPPED or station.halting:
        return False
    return all(devices[d].online is not True for d in st.awaiting_results())


async def _settle(st: StationUnderTest) -> str:
    """Wait for the swap to end or the station to stop for the operator; say which."""
    station = st.controller.station
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    stopped_polls = 0
    while loop.time() < end:
        if not st.finished.empty():
            return "finished"
        stopped_polls = stopped_polls + 1 if _stopped_for_the_operator(st) else 0
        if stopped_polls >= STABLE_POLLS:
            return "stopped"
        await asyncio.sleep(0.01)
    raise AssertionError(f"no outcome: mode {station.mode.value}, phase {station.phases.phase}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("phase", list(STRIKE))
async def test_fault_at_phase_ends_safe(
    embedded_broker: object, station_id: str, phase: str, kind: str
) -> None:
    url = embedded_broker.url  # type: ignore[attr-defined]
    cfg = station_config(station_id)
    async with running_station(url, cfg) as st:
        watch = Watch()
        _arm(st, phase, kind, watch)
        await st.sim.arrive(1)
        how = await _settle(st)
        station = st.controller.station
        outcome = ""
        if how == "stopped" and station.mode is Mode.held:
            # held for the operator (driver offline, light curtain): nothing moves meanwhile
            t = st.clock.monotonic()
            await asyncio.sleep(st.clock.to_real(30))  # measures: nothing is sent meanwhile
            assert st.motions_after(t) == []
            held_for = station.reason or ""
            if kind == "disconnect":
                for device in ("arm", "bay", "door", "rack", "vehicle"):
                    await st.sim.reconnect(device)
            if kind == "light_curtain":
                await st.sim.set_light_curtain(False)
            await st.controller.devices.wait_until(lambda: not st.controller.devices.offline(), 5)
            await until(st.controller_heard_every_driver, "the drivers' states after the hold")
            # stamped before sending: the swap may move the instant the mode changes
            watch.resumed_at = st.clock.monotonic()
            reply = await st.command("resume")
            assert reply.ok, reply.error
            how = await _settle(st)
            outcome = f"held ({held_for}) -> resumed -> "
        if how == "finished":
            record = await st.next_swap(5)
            outcome += record.result
            if record.result == "completed" and st.controller.station.gate.retries:
                outcome += " after retry"
        else:
            outcome += station.mode.value
        await st.wait_world_settled()

        # 1. safe end
        final = station.mode
        assert final in (Mode.execute, Mode.aborted, Mode.estopped, Mode.held), final
        # every alarm has a code of the error table (so its severity and hint), never a class name
        codes = {a.code for a in station.alarms.alarms.values()}
        assert codes <= set(ALARMS), codes
        # 2. no motion after the fault was detected (until an operator resumed)
        if watch.detected_at is not None:
            resumed = watch.resumed_at if watch.resumed_at is not None else float("inf")
            late = [s for s in st.motions_after(watch.detected_at) if s[0] < resumed]
            assert late == [], f"motion after the fault was detected: {late}"
        # 3. every pack in exactly one place, as the world has it, or unknown with an alarm
        problems = compare_with_world(st.controller, dict(st.sim.world.locations))
        unknown = {p for p, loc in st.controller.ledger.locations.items() if loc == "unknown"}
        real = [p for p in problems if not any(f"pack {u}:" in p or u in p for u in unknown)]
        assert real == [], real
        if unknown:
            codes = {a.code for a in station.alarms.active()}
            assert "pack_location_unknown" in codes, codes
            outcome += f", {len(unknown)} pack unknown (alarm)"
        if kind == "drop" and phase not in DROP_STRIKE:
            outcome += " (no pack held here: fired on the next loaded move, if any)"
        MATRIX[(phase, kind)] = outcome


def test_zz_print_fault_matrix(report: Callable[[str], None]) -> None:
    """The outcomes as a table (run last in this module; shown in the summary at the end)."""
    phases = [p.value for p in SWAP_PHASES]
    width = max((len(v) for v in MATRIX.values()), default=10)
    lines = ["", "Fault matrix: outcome per phase (rows) and fault kind (columns)", ""]
    for kind in KINDS:
        lines.append(f"== {kind} ==")
        for phase in phases:
            lines.append(f"  {phase:<9} {MATRIX.get((phase, kind), 'not run'):<{width}}")
    report("\n".join(lines))
