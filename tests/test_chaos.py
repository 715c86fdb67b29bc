"""SIGKILL the controller process at random points of a swap, restart it, check the recovery.

Each trial is one fresh station (its own station id, simulator, SQLite database and controller
processes, on the session's Mosquitto), so trials are independent and leave nothing behind:

1. the controller starts as a separate process (``swapctl run --broker URL --config FILE``),
   the simulator runs in this process (its ``world`` is the ground truth), an operator sends
   ``start`` and one truck arrives;
2. the kill is aimed at one stage of the truck's visit: manoeuvring in, each of the 11 swap
   phases, driving out (trial *i* takes stage *i* mod 13, so every stage gets its share) plus a
   seeded random offset within the stage's nominal length (:func:`nominal_stage_s`), counted
   from the moment the controller announced the stage; there the controller process is
   SIGKILLed;
3. the simulated hardware finishes what it was doing, as real hardware would (an action runs to
   completion, a released truck drives away), and the journal is read as the dead process left
   it (from a copy: the restarted process opens the untouched file);
4. a new controller process starts on the same database and config. Once it is online the test
   reads its retained ``status``, ``alarms`` and ``inventory``, watches the wire for 30 station
   seconds, stops it (SIGTERM, must exit 0) and checks:

   - it came up ``aborted`` with an active ``recovery_needed`` alarm exactly when the journal it
     found had a swap in flight or a move open, and ``idle`` otherwise;
   - no motion command reached any driver after the restart (no operator command is sent after
     it), as seen on ``drivers/+/cmd`` by an independent MQTT client;
   - the journal (``Store.pack_locations``) and the world agree on every pack: in the station at
     the same place, ``departed:<vehicle>`` for a pack that left on a truck, no move left open;
     the published inventory shows every slot and the gripper as the world has them.

   A pack that left on a truck while no controller ran may also be journaled ``unknown`` if an
   alarm is active (nobody can see it any more; the issue allows "explicitly marked unknown
   with an alarm"). Known controller bugs (:data:`KNOWN_BUGS`) are counted and printed, and
   pinned by their own ``xfail(strict=True)`` reproductions below; anything else fails.

5. the station is left as it is: the next trial uses a new station id, simulator, database and
   controller processes (simplest, and trials cannot influence each other). Every process a
   test starts is reaped at its end, every task stopped.

Environment: ``SWAPSTATION_CHAOS_TRIALS`` (default 50; ``make chaos`` runs 1,000),
``SWAPSTATION_CHAOS_SEED`` (trial *i* uses seed ``SEED + i`` for its offset and the simulator's
jitter), ``SWAPSTATION_CHAOS_ONLY`` (comma separated trial numbers to rerun and describe, e.g.
``SWAPSTATION_CHAOS_ONLY=17,42``; the kill instant is real time, so a rerun lands close to,
not exactly on, the same point),
``SWAPSTATION_CHAOS_SCALE`` (time scale, default 100), ``SWAPSTATION_CHAOS_COLD=1`` (start every
controller with ``python -m controller.cli.main``; see :mod:`tests.chaos_helpers`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.bus.login import make_bus
from controller.clock import Clock
from controller.config import StationConfig, load_config
from controller.console import OperatorClient
from controller.contract import (
    SWAP_PHASES,
    AlarmRaised,
    Mode,
    ModeChanged,
    PhaseChanged,
    SwapFinished,
)
from controller.contract.phases import Place
from controller.phase_timing import nominal_phase_s
from simulator.app import Simulator
from tests.brokers import Mosquitto
from tests.chaos_helpers import (
    ControllerLauncher,
    JournalView,
    WireRecorder,
    compare_inventory,
    compare_packs,
    env_float,
    env_int,
    histogram,
    read_journal,
    table,
    write_config,
)
from tests.harness import settle_world, station_config

TRIALS = env_int("SWAPSTATION_CHAOS_TRIALS", 50)
SEED = env_int("SWAPSTATION_CHAOS_SEED", 20_260_000)
SCALE = env_float("SWAPSTATION_CHAOS_SCALE", 100.0)
COLD = bool(env_int("SWAPSTATION_CHAOS_COLD", 0))
ONLY = [int(x) for x in os.environ.get("SWAPSTATION_CHAOS_ONLY", "").split(",") if x.strip()]
#: How long the restarted controller is watched for motion before it is stopped.
OBSERVE_STATION_S = 30.0


def nominal_stage_s(cfg: StationConfig) -> dict[str, float]:
    """Nominal station seconds of each stage of a truck's visit: the phase plan priced at the
    simulator's nominal action times (``controller.phase_timing``), the arm's moves over the rail
    distances of a first swap (stow in the lowest free slot, fetch the best charged pack);
    manoeuvring in and driving out from the traffic settings."""
    sim = cfg.simulator
    occupied = {p.slot for p in sim.initial_packs}
    stow = min(s.slot for s in cfg.rack.slots if s.slot not in occupied)
    fetch = max(sim.initial_packs, key=lambda p: (p.soc, -p.slot)).slot
    phases = nominal_phase_s(cfg, slots={Place.stow: [stow], Place.fetch: [fetch]})
    return {
        "manoeuvre": sim.traffic.manoeuvre_s.nominal_s,
        **{phase.value: seconds for phase, seconds in phases.items()},
        "departing": sim.traffic.depart_s.nominal_s,
    }


NOMINAL_S = nominal_stage_s(load_config())
STAGES = tuple(NOMINAL_S)

#: Controller bugs this test found, by the id the summary and the regression tests use. Both
#: are fixed (see test_b1_*, test_b2_*); a trial that shows one again fails.
KNOWN_BUGS: dict[str, str] = {}

pytestmark = pytest.mark.timeout(120 + 6 * max(TRIALS, len(ONLY)))


# ---- one trial --------------------------------------------------------------------------------
@dataclass
class Trial:
    index: int
    seed: int
    stage: str
    offset_s: float
    station_id: str = ""
    killed_in: str = "?"
    left_execute: str | None = None  # the station had left execute on its own before the kill
    before: JournalView | None = None
    mode: str = "?"
    alarms: list[str] = field(default_factory=list)
    alarm_texts: list[str] = field(default_factory=list)
    commands_before_kill: int = 0
    commands_after_restart: list[tuple[float, str, str, str]] = field(default_factory=list)
    unknown_with_alarm: list[str] = field(default_factory=list)
    alarm_event_seen: bool = False  # the recovery alarm also came as an ``alarm_raised`` event
    known_bugs: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    directory: Path | None = None

    @property
    def at_kill(self) -> str:
        b = self.before
        if b is None:
            return "?"
        return "move open" if b.open_moves else "swap in flight" if b.mid_swap else "between swaps"

    @property
    def outcome(self) -> str:
        if self.failures:
            return "FAIL"
        if self.known_bugs:
            return "known bug " + "+".join(sorted(self.known_bugs))
        return self.mode + (" + recovery alarm" if "recovery_needed" in self.alarms else "")

    def describe(self) -> str:
        b = self.before
        lines = [
            f"trial {self.index} (seed {self.seed}, station {self.station_id}, "
            f"{self.seconds:.1f} s): kill aimed at {self.stage}+{self.offset_s:.1f} s, "
            f"landed in {self.killed_in}"
            + (f" (station had left execute: {self.left_execute})" if self.left_execute else ""),
            f"  journal at the kill: swap in flight {b.swap_in_flight if b else '?'}, "
            f"open moves {b.open_moves if b else '?'}",
            f"  came up {self.mode}, alarms {self.alarms}, files in {self.directory}",
            *(f"  alarm {text}" for text in self.alarm_texts),
        ]
        lines += [f"  FAIL: {f}" for f in self.failures]
        lines += [f"  {bug}: {t}" for bug, texts in self.known_bugs.items() for t in texts]
        return "\n".join(lines)


@dataclass
class Chaos:
    """What the trials of one test share: the broker, the launcher, a directory."""

    url: str
    launcher: ControllerLauncher
    tmp: Path
    prefix: str


KillTrigger = Callable[[WireRecorder, Simulator, Clock, float], Awaitable[None]]


async def _start_station(operator: OperatorClient) -> None:
    """``start``, retried while the controller has not yet heard from every driver."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 15.0
    last = None
    while loop.time() < end:
        reply = await operator.command("start", timeout_s=3.0)
        if reply is not None and reply.ok:
            return
        last = reply.error if reply is not None else "no reply"
        await asyncio.sleep(0.05)  # before asking again (the restarted station may be busy)
    raise AssertionError(f"station refused start: {last}")


def _stage_began(rec: WireRecorder, stage: str, since: float) -> float | None:
    for t, event in rec.events():
        if t <= since:
            continue
        if stage == "departing" and isinstance(event, SwapFinished):
            return t
        if isinstance(event, PhaseChanged) and event.phase and event.phase.value == stage:
            return t
    return None


def aim_at(stage: str, offset_s: float) -> KillTrigger:
    """Kill ``offset_s`` station seconds after the controller announced ``stage`` (the truck's
    arrival for ``manoeuvre``, the swap's end for ``departing``)."""

    async def wait(rec: WireRecorder, sim: Simulator, clock: Clock, t0: float) -> None:
        loop = asyncio.get_running_loop()
        began = t0
        if stage != "manoeuvre":
            began = await rec.wait_for(lambda: _stage_began(rec, stage, t0), 15.0) or loop.time()
        # the kill's point in time is the experiment: the trial's offset after the stage began
        await asyncio.sleep(max(0.0, began + clock.to_real(offset_s) - loop.time()))

    return wait


def _what_it_was_doing(
    trial: Trial, rec: WireRecorder, truck_in_bay: bool, t0: float, t: float
) -> None:
    """The stage the controller had announced when it died, and whether it had left execute."""
    label = "manoeuvre"
    for at, event in rec.events(until=t):
        if at <= t0:
            continue
        if isinstance(event, PhaseChanged) and event.phase and event.phase.value != "waiting":
            label = event.phase.value
        elif isinstance(event, SwapFinished) and event.record.result != "completed":
            label = f"after {event.record.result} swap"
        elif isinstance(event, SwapFinished):
            label = "departing" if truck_in_bay else "departed"
        elif isinstance(event, ModeChanged) and event.mode is not Mode.execute:
            trial.left_execute = f"{event.mode.value}: {event.reason}"
    trial.killed_in = label
    trial.commands_before_kill = len(rec.driver_commands(until=t))


def _seeded(rec: WireRecorder, since: float) -> bool:
    """The restarted controller has published an inventory built from the drivers' reports
    (packs it knows only from the journal carry the placeholder type ``unknown``)."""
    inv = rec.inventory(since)
    if inv is None or rec.status(since) is None:
        return False
    packs = [s.pack for s in inv.slots if s.pack is not None]
    packs += [inv.gripper] if inv.gripper is not None else []
    return bool(packs) and all(p.type != "unknown" for p in packs)


async def run_trial(
    chaos: Chaos,
    index: int,
    *,
    seed: int | None = None,
    trigger: KillTrigger | None = None,
    stage: str | None = None,
    scale: float = SCALE,
) -> Trial:
    """One trial; ``trigger`` (default: :func:`aim_at` the trial's stage and offset) decides
    when the controller dies."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    seed = SEED + index if seed is None else seed
    rng = random.Random(f"swapstation-chaos:{seed}")
    stage = stage or STAGES[index % len(STAGES)]
    trial = Trial(index, seed, stage, rng.uniform(0.0, NOMINAL_S.get(stage, 0.0)))
    trigger = trigger or aim_at(stage, trial.offset_s)
    trial.station_id = station_id = f"{chaos.prefix}-{index:04d}"
    trial.directory = tdir = chaos.tmp / station_id
    tdir.mkdir()
    db = tdir / "station.sqlite3"
    cfg = station_config(station_id, time_scale=scale, database=str(db), simulator__seed=seed)
    config_path = write_config(cfg, tdir / "station.yaml")
    clock = Clock(scale)
    fail = trial.failures.append
    async with AsyncExitStack() as stack:
        rec = WireRecorder(chaos.url, station_id, f"rec-{station_id}")
        await rec.start()
        stack.push_async_callback(rec.stop)
        sim = Simulator(cfg, url=chaos.url, clock=clock)
        await sim.start()
        stack.push_async_callback(sim.stop)
        bus = make_bus(cfg, chaos.url, client_id=f"op-{station_id}")
        operator = OperatorClient(bus, station_id)
        await operator.start()
        stack.push_async_callback(operator.stop)

        # 1. a controller process, started, a truck arrives
        first = await chaos.launcher.launch(chaos.url, config_path, tdir / "controller-1.log")
        stack.push_async_callback(first.kill)
        if not await rec.wait_for(lambda: rec.controller_online_since(first.started_at), 20):
            raise AssertionError(f"controller did not come online:\n{first.log_tail()}")
        await _start_station(operator)
        t0 = loop.time()
        await sim.arrive(1)

        # 2. SIGKILL, 3. the hardware carries on and settles
        await trigger(rec, sim, clock, t0)
        truck_in_bay = sim.world.bay is not None
        await first.kill()
        t_kill = loop.time()
        _what_it_was_doing(trial, rec, truck_in_bay, t0, t_kill)
        if not await settle_world(sim):
            fail("the simulated hardware did not settle after the kill")
        trial.before = before = read_journal(db, scratch=tdir / "at-kill")

        # 4. the restart
        t_restart = loop.time()
        second = await chaos.launcher.launch(chaos.url, config_path, tdir / "controller-2.log")
        stack.push_async_callback(second.kill)
        online = await rec.wait_for(lambda: rec.controller_online_since(t_restart), 20)
        if not online:
            raise AssertionError(f"restarted controller not online:\n{second.log_tail()}")
        if not await rec.wait_for(lambda: _seeded(rec, online), 5.0):
            fail("restarted controller published no inventory built from the drivers' reports")
        # measures: the restarted controller moves nothing and says what it is, meanwhile
        await asyncio.sleep(max(0.15, clock.to_real(OBSERVE_STATION_S)))
        status, alarms, inventory = rec.status(online), rec.alarms(online), rec.inventory(online)
        code = await second.terminate()
        if code != 0:
            fail(f"restarted controller exited with {code}:\n{second.log_tail()}")
        trial.commands_after_restart = rec.driver_commands(since=t_restart)
        trial.alarm_event_seen = any(
            isinstance(e, AlarmRaised) and e.alarm.code == "recovery_needed"
            for t, e in rec.events()
            if t > t_restart
        )

        # its mode and alarms
        trial.mode = status.mode.value if status else "no status"
        trial.alarms = sorted(a.code for a in alarms.alarms) if alarms else []
        trial.alarm_texts = [f"{a.code}: {a.text}" for a in alarms.alarms] if alarms else []
        if "recovery_needed" in trial.alarms and not trial.alarm_event_seen:
            fail("recovery_needed is on the alarms topic but never came as an alarm_raised event")
        # the controller announces a phase only after journaling the swap's start, and (no
        # fault, no abort) records its end only in release: so in between it is in flight
        mid_phases = [p.value for p in SWAP_PHASES][:-1]
        if trial.killed_in in mid_phases and not trial.left_execute and not before.swap_in_flight:
            fail(f"killed in {trial.killed_in}, but the journal has no swap in flight")
        # (a station that had aborted on its own before the kill is test_b2's business)
        want = Mode.aborted if before.mid_swap else None if trial.left_execute else Mode.idle
        if status is None or (want is not None and status.mode is not want):
            expected = want.value if want else "a status"
            fail(f"came up {trial.mode}, expected {expected} (journal: {trial.at_kill})")
        if before.mid_swap != ("recovery_needed" in trial.alarms):
            fail(f"recovery_needed alarm {'missing' if before.mid_swap else 'unexpected'}")

        # no motion after the restart
        motions = rec.motions(since=t_restart)
        if motions:
            fail(f"motion after the restart without an operator command: {motions}")
        if trial.killed_in not in ("manoeuvre", "identify") and not trial.commands_before_kill:
            fail("the wire recorder saw no driver command before the kill: is it listening?")

        # every pack: journal and inventory against the world
        after = read_journal(db)
        world = dict(sim.world.locations)
        departed = {d.pack.id: d.location.removeprefix("vehicle:") for d in sim.world.departed}
        for kind, pack, text in compare_packs(after.locations, world, departed):
            if kind == "departure_missed":
                fail(f"B1 again: a truck that left while the controller was down: {text}")
            elif kind == "unknown" and pack in departed and trial.alarms:
                trial.unknown_with_alarm.append(pack)  # honest: nobody can see it any more
            else:
                fail(f"journal and world disagree [{kind}]: {text}")
        if inventory is None:
            fail("no inventory published after the restart")
        else:
            for text in compare_inventory(inventory, world):
                fail(f"published inventory and world disagree: {text}")
        if after.open_moves:
            fail(f"moves still open after recovery: {after.open_moves}")
        if problems := sim.world.problems():
            fail(f"simulated world inconsistent: {problems}")
    trial.seconds = loop.time() - started
    if not trial.failures and not trial.known_bugs:
        shutil.rmtree(tdir, ignore_errors=True)  # keep what a failure or a known bug shows
        trial.directory = None
    return trial


# ---- the random trials ------------------------------------------------------------------------
_fixture_ids = itertools.count(1)


@pytest.fixture
async def chaos(mosquitto: Mosquitto, tmp_path: Path) -> Chaos:
    """The broker, a controller launcher (closed at the end: no process survives a test)."""
    launcher = ControllerLauncher(tmp_path, cold=COLD)
    try:
        prefix = f"chaos{os.getpid() % 10000}-{next(_fixture_ids)}"
        yield Chaos(mosquitto.url, launcher, tmp_path, prefix=prefix)
    finally:
        await launcher.close()


def _summary(trials: list[Trial], elapsed: float) -> str:
    n = len(trials)
    out = [
        "",
        f"Controller SIGKILL chaos: {n} trials in {elapsed:.1f} s ({elapsed / max(n, 1):.2f} s "
        f"per trial; time scale {SCALE:g}; seed {SEED}; {'cold' if COLD else 'warm'} starts)",
        "",
        table(
            "Kill landed in (stage the controller had announced) x outcome after the restart:",
            [(t.killed_in, t.outcome) for t in trials],
            row_order=[*STAGES, "departed"],
        ),
        "",
        histogram("Kill aimed at:", Counter(t.stage for t in trials)),
        histogram("Journal at the kill:", Counter(t.at_kill for t in trials)),
        histogram("Outcome after the restart:", Counter(t.outcome for t in trials)),
    ]
    unknown = sum(1 for t in trials if t.unknown_with_alarm)
    left = [t for t in trials if t.left_execute]
    recovering = [t for t in trials if "recovery_needed" in t.alarms]
    evented = sum(1 for t in recovering if t.alarm_event_seen)
    before = sum(t.commands_before_kill for t in trials)
    after = sum(len(t.commands_after_restart) for t in trials)
    out += [
        f"Departed pack journaled unknown, with an alarm (accepted): {unknown}",
        f"Station had left execute on its own before the kill: {len(left)}"
        + "".join(f"\n  trial {t.index}: {t.left_execute}" for t in left),
        f"Driver commands on the wire: {before} before the kills, {after} after the restarts",
        f"recovery_needed also published as an alarm_raised event: {evented} of "
        f"{len(recovering)} (every one must)",
    ]
    for bug, text in KNOWN_BUGS.items():
        hit = [t.index for t in trials if bug in t.known_bugs]
        out.append(f"Known bug {bug} ({text}): {len(hit)} trials {hit[:20]}")
    out += [t.describe() for t in trials if t.failures or (t.known_bugs and ONLY)]
    return "\n".join(out)


async def test_sigkill_at_random_points_recovers(
    chaos: Chaos, report: Callable[[str], None]
) -> None:
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    trials: list[Trial] = []
    try:
        for i in ONLY or range(TRIALS):
            trials.append(await run_trial(chaos, i))
    finally:  # the table of what ran, also when a trial could not be run at all
        report(_summary(trials, loop.time() - t_start))
    failed = [t for t in trials if t.failures]
    assert not failed, f"{len(failed)} of {len(trials)} trials failed:\n" + "\n".join(
        t.describe() for t in failed
    )


# ---- regression tests for the bugs this test found (both fixed) ----------------------------
class KnownBugStillPresent(AssertionError):
    """The reproduction shows the bug again."""


async def _when_release_commanded(rec: WireRecorder, *_: object) -> None:
    await rec.wait_for(lambda: any(c[1:3] == ("bay", "release") for c in rec.driver_commands()), 15)


async def _when_swap_finished(rec: WireRecorder, sim: Simulator, clock: Clock, t0: float) -> None:
    await rec.wait_for(lambda: _stage_began(rec, "departing", t0), 15)


B1_REASON = (
    "B1 (fixed): a truck that leaves while the controller is down stayed in the journal. "
    "Station._check_departures journals a departure only for plates in the in-memory _served "
    "map, which a restart empties, and neither recover_from_journal nor _seed_and_reconcile "
    "looks at journaled vehicle:<id> packs whose truck is gone (PackLedger.disagreements "
    "excuses a vehicle:<id> location no sensor reports)"
)


@pytest.mark.parametrize(
    ("case", "trigger", "landed"),
    [
        ("during_release", _when_release_commanded, None),
        ("after_swap", _when_swap_finished, "departing"),
    ],
    ids=["during_release", "after_swap"],
)
async def test_b1_truck_leaving_while_controller_down_is_journaled_departed(
    chaos: Chaos, case: str, trigger: KillTrigger, landed: str | None
) -> None:
    """The controller dies once ``bay.release`` is on the wire (``during_release``: the swap is
    in flight) or once the swap has completed, the truck still in the bay (``after_swap``).
    The truck leaves with the fresh pack while no controller runs. After the restart the journal
    must not keep that pack on the truck (``departed:<vehicle>``, or ``unknown`` with an alarm,
    would both be honest); before the fix it said ``vehicle:CQ-T0001``: in the recovery alarm's
    list of
    packs (``during_release``), and silently, with the station idle and no alarm at all
    (``after_swap``). Time scale 50, so the truck's 10 station seconds of driving out are 200 ms
    of real time: the kill always comes before it has left."""
    trial = await run_trial(chaos, 0, seed=SEED, trigger=trigger, stage=case, scale=50.0)
    # the reproduction did what it says (else this is an ordinary failure, not the bug)
    assert not trial.failures, trial.describe()
    assert landed is None or trial.killed_in == landed, trial.describe()
    assert trial.before is not None, trial.describe()
    assert trial.before.mid_swap is (case == "during_release"), trial.describe()
    if "B1" in trial.known_bugs:
        raise KnownBugStillPresent(B1_REASON + "\n" + trial.describe())


async def _after_fault_abort(rec: WireRecorder, sim: Simulator, clock: Clock, t0: float) -> None:
    sim.inject("arm.lift:fail")  # the first lift (remove) fails: the station aborts
    await rec.wait_for(
        lambda: any(isinstance(e, ModeChanged) and e.mode is Mode.aborted for _, e in rec.events()),
        20,
    )


B2_REASON = (
    "B2 (fixed): an aborted station came back idle, its alarms gone. "
    "recover_from_journal picked the "
    "mode from swap_in_flight()/open_moves() only; an aborted swap is already closed in the "
    "journal, the mode is not persisted and AlarmBook starts empty (Store.active_alarms() is "
    "never read at start), so a restart acts as clear + reset"
)


async def test_b2_aborted_station_stays_aborted_after_restart(chaos: Chaos) -> None:
    """A fault aborts the swap (``arm.lift`` fails in ``remove``); the controller process is
    killed while the station sits in ``aborted``. PackML and the issue: only ``clear`` then
    ``reset`` leave aborted, and state survives power loss. After the restart the station must
    still be aborted (or stopped) with the fault's alarm active; before the fix it was ``idle``, no
    alarm and takes ``start`` at once. Packs and motion are checked as in every trial."""
    trial = await run_trial(
        chaos, 0, seed=SEED, trigger=_after_fault_abort, stage="after_abort", scale=50.0
    )
    assert not trial.failures, trial.describe()
    assert trial.left_execute and trial.left_execute.startswith("aborted"), trial.describe()
    assert trial.before is not None and not trial.before.mid_swap, trial.describe()
    if trial.mode == Mode.idle.value or not trial.alarms:
        raise KnownBugStillPresent(B2_REASON + "\n" + trial.describe())
