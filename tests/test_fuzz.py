"""Fuzz every subscribed topic of a running station; it answers as documented and still swaps.

For every topic the controller subscribes to (``cmd``, ``cmd/<user>``, each driver's ``result``,
``state`` and ``online``) and every topic the simulator subscribes to (each driver's ``cmd``,
``sim/control``), :mod:`tests.fuzz_payloads` generates ``SWAPSTATION_FUZZ_PER_TOPIC`` bad
payloads (seeded: ``SWAPSTATION_FUZZ_SEED``) and a worker *process* publishes them at the running
station, 100 at a time with at most 150 unanswered, and counts the answers. The station (the
controller and the simulator) runs in this process, so the checks can look inside it.

What must come back, per the documentation (docs/mqtt-api.md, "Bad input"):

- ``cmd`` and ``cmd/<user>``: exactly one ``Reply`` per payload, ``ok: false`` (the generator
  never sends a command that is valid now), echoing the id, ``""`` when none can be read; and
  for each payload either an ``ErrorEvent`` (it did not parse) or a ``CommandHandled`` event (it
  parsed and was refused), never both, never twice.
- each driver's ``result``/``state``/``online``: one ``ErrorEvent`` on ``events`` per payload
  (an empty ``state`` payload, a cleared retained message, is ignored as documented).
- each driver's ``cmd``: one ``ErrorEvent`` on ``drivers/<device>/events`` per payload, a
  ``failed`` result for each one whose id can be read, and the controller reports each of those
  results (for a command it never sent) with an ``ErrorEvent`` of its own.
- ``sim/control``: one ``ErrorEvent`` (source ``simulator``, on ``sim/events``) per payload.

After every topic nothing has changed: mode, phase, alarms, the ledger, the commands sent (none),
the drivers' states and liveness as the controller sees them, the simulated world (packs, safety
inputs, trucks, armed faults), no handler raised, and no state was ever believed from a fuzz
payload. At the end a truck arrives and the station swaps it to ``completed``.

Throughput (see the table this prints): the station in this process takes 400-1,000 bad
payloads a second on this 2-core machine (each is an MQTT delivery, a decode and an error event
published with QoS 1; a bad driver command is three messages), so 27 topics x 10,000 = 270,000
payloads take ~8-10 minutes. ``make test`` runs ``SWAPSTATION_FUZZ_PER_TOPIC`` = 1,000 (27,000
payloads, about a minute); ``make fuzz`` the full 10,000 per topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from controller.bus import Bus
from controller.contract import Mode, Phase, Reply, decode
from tests.fuzz_payloads import Target, targets
from tests.harness import StationUnderTest, running_station, station_config
from tests.waits import holds_within

PER_TOPIC = int(os.environ.get("SWAPSTATION_FUZZ_PER_TOPIC", "1000"))
#: Only these topics (names as in the table, comma-separated), e.g. "cmd,arm/state".
ONLY = {t for t in os.environ.get("SWAPSTATION_FUZZ_TOPICS", "").split(",") if t}
SEED = int(os.environ.get("SWAPSTATION_FUZZ_SEED", "20250512"))
ALL_CATEGORIES = os.environ.get("SWAPSTATION_FUZZ_ALL_CATEGORIES") == "1"
ROOT = Path(__file__).resolve().parent.parent

#: Categories left out of the main run, per topic kind, because of a known bug. BUG-A..D (see
#: the regression tests below) are fixed, so nothing is left out; keep the mechanism for the
#: next one. SWAPSTATION_FUZZ_ALL_CATEGORIES=1 sends every category regardless.
KNOWN_BUGS: dict[str, frozenset[str]] = {}

pytestmark = pytest.mark.timeout(max(300, PER_TOPIC * 27 // 200))


# ---- the worker process --------------------------------------------------------------------


class WorkerProcess:
    """``python -m tests.fuzz_payloads``: publishes the payloads, counts the answers."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, url: str, station_id: str, log_path: Path) -> WorkerProcess:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.fuzz_payloads",
                url,
                station_id,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                limit=1 << 24,
            )
        worker = cls(proc, log_path)
        ready = await worker._read(30.0)
        assert ready.get("ready"), ready
        return worker

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the fuzz worker exited; its log ends:\n{tail}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def run(self, target: Target, n: int, *, tag: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        job = {
            "target": asdict(target),
            "n": n,
            "seed": SEED,
            "tag": tag,
            "exclude": [] if ALL_CATEGORIES else sorted(KNOWN_BUGS.get(target.kind, ())),
        }
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(60.0 + n / 20)

    async def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ---- watching the station ------------------------------------------------------------------


#: The warning each bad payload is expected to cause (one per payload: counted, not kept).
EXPECTED_WARNINGS = ("bad input on ", "sim/control refused: ", ": bad command on ")


class LogWatch(logging.Handler):
    """Watches the controller's and the simulator's logs while fuzzing: every ERROR (a handler
    that raised) and every WARNING other than the one each bad payload causes (e.g. an error
    event that could not be published)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.expected = 0
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno < logging.ERROR and any(w in text for w in EXPECTED_WARNINGS):
            self.expected += 1
            return
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {str(exc)[:200]}"
        self.records.append(f"{record.levelname} {record.name}: {text[:400]}")


@contextlib.contextmanager
def quiet_and_watched() -> Iterator[LogWatch]:
    """Bad input is logged as a warning per payload: keep those out of pytest's log capture
    (hundreds of thousands of records) and watch the rest."""
    watch = LogWatch()
    loggers = [logging.getLogger(name) for name in ("controller", "simulator")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
        lg.propagate = False
        lg.addHandler(watch)
    try:
        yield watch
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.setLevel(level)
            lg.propagate = propagate
            lg.removeHandler(watch)


def _state_key(state: Any) -> Any:
    """A driver state without what changes on its own (timestamps; charge in the rack)."""
    if state is None:
        return None
    data = state.model_dump(mode="json", exclude={"ts"})
    if data.get("device") == "rack":
        data["slots"] = [
            (s["slot"], s["pack"]["id"] if s["pack"] else None, s["docked"], s["out_of_service"])
            for s in data["slots"]
        ]
    return data


def snapshot(st: StationUnderTest) -> dict[str, Any]:
    """Everything bad input must not change."""
    ctl, world = st.controller, st.sim.world
    station = ctl.station
    return {
        "mode": station.mode,
        "phase": station.phases.phase,
        "reason": station.reason,
        "alarms": sorted(a.id for a in station.alarms.active()),
        "ledger": dict(ctl.ledger.locations),
        "ledger problems": ctl.ledger.problems(),
        "commands sent": list(station.sent),
        "swaps": len(station.records),
        "online": {d: p.online for d, p in ctl.devices.proxies.items()},
        "states": {d: _state_key(p.state) for d, p in ctl.devices.proxies.items()},
        "world packs": dict(world.locations),
        "world problems": world.problems(),
        "estop": world.estop_pressed,
        "light curtain": world.light_curtain_broken,
        "trucks": (len(world.queue), world.bay is not None),
        "faults armed": [str(f) for f in st.sim.faults.armed],
        "drivers connected": {d: drv.bus.connected for d, drv in st.sim.drivers.items()},
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f"{k}: {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after[k]]


class Believed:
    """Every state or liveness the controller took in while fuzzing (it must take in none but
    the rack's own periodic charging reports)."""

    def __init__(self, st: StationUnderTest) -> None:
        self.st = st
        self.rack = _state_key(st.controller.devices.rack)
        self.seen: list[str] = []
        st.controller.devices.add_listener(self)

    def __call__(self, device: str) -> None:
        proxy = self.st.controller.devices[device]
        if proxy.online is not True:
            self.seen.append(f"{device} went {proxy.online}")
        elif proxy.state is None:
            pass  # an empty payload clears the state: unknown now (an open interlock), by design
        elif device != "rack" or _state_key(proxy.state) != self.rack:
            self.seen.append(f"{device} state {str(_state_key(proxy.state))[:200]}")


async def _driver_states_again(st: StationUnderTest, device: str) -> list[str]:
    """The fuzzed driver publishes its state again; the controller takes it in."""
    proxy, since = st.controller.devices[device], st.clock.now()
    await st.sim.drivers[device].publish_state(force=True)
    if await holds_within(lambda: proxy.state is not None and proxy.state.ts >= since, 10):
        return []
    return [f"the controller never took the {device} driver's state again"]


def dead_tasks(st: StationUnderTest) -> list[str]:
    """The controller's long-running tasks that ended (a crash; the names are private, but
    "no crash" is what this test is for)."""
    tasks = {
        "command handler": getattr(st.controller.commands, "_task", None),
        "outbox": getattr(st.controller.outbox, "_task", None),
        "bus": getattr(st.controller.bus, "_task", None),
    }
    out = []
    for name, task in tasks.items():
        if task is None or task.done():
            exc = task.exception() if task is not None and not task.cancelled() else None
            out.append(f"controller {name} task ended: {exc!r}")
    return out


@contextlib.asynccontextmanager
async def fuzz_worker(url: str, station_id: str, log_path: Path) -> AsyncIterator[WorkerProcess]:
    worker = await WorkerProcess.start(url, station_id, log_path)
    try:
        yield worker
    finally:
        await worker.stop()


def _row(report: dict[str, Any], believed: int, errors: int) -> str:
    t = report["target"]
    answers = report.get("replies", report.get("error_events", 0))
    extra = ""
    if t["kind"] == "cmd":
        extra = f"err {report['error_events']}, refused {report['command_events']}"
    elif t["kind"] == "driver_cmd":
        extra = f"failed {report['failed_results']}, controller {report['knock_on']}"
    elif report["ignored"]:
        extra = f"ignored {report['ignored']} (empty)"
    rate = report["sent"] / max(report["answered_s"], 1e-9)
    status = "ok" if not report["problems"] and not believed and not errors else "FAIL"
    return (
        f"{t['name']:<15} {t['kind']:<11} {report['sent']:>7} {answers:>8}  {extra:<28}"
        f" {report['answered_s']:>7.1f} {rate:>7.0f}  {status}"
    )


# ---- the test ------------------------------------------------------------------------------


async def test_fuzz_every_subscribed_topic_then_station_still_swaps(
    mosquitto: Any, station_id: str, tmp_path: Path, report: Callable[[str], None]
) -> None:
    cfg = station_config(station_id)
    url = mosquitto.url
    problems: dict[str, list[str]] = {}
    rows: list[str] = []
    total_sent, started = 0, time.monotonic()
    async with running_station(url, cfg) as st:
        # the operator client would decode every error event: it sleeps while we fuzz
        await st.operator.bus.stop()
        before = snapshot(st)
        assert before["mode"] is Mode.execute and before["phase"] is Phase.waiting
        with quiet_and_watched() as errors:
            async with fuzz_worker(url, station_id, tmp_path / "worker.log") as worker:
                for i, target in enumerate(targets(st.controller.topics)):
                    if ONLY and target.name not in ONLY:
                        continue
                    believed = Believed(st)
                    seen_errors = len(errors.records)
                    result = await worker.run(target, PER_TOPIC, tag=f"fz{i}")
                    found = list(result["problems"])
                    st.controller.devices._listeners.remove(believed)
                    if target.kind == "state":
                        # the empty payloads among them cleared the state (unknown): the driver
                        # says it again, as a driver does after a reconnect
                        found += await _driver_states_again(st, target.name.split("/")[0])
                    try:
                        await st.controller.outbox.flush(30)
                    except TimeoutError:
                        found.append("the controller's outbox did not empty in 30 s")
                    found += dead_tasks(st)
                    after = snapshot(st)
                    found += [f"changed {c}" for c in changes(before, after)]
                    found += [f"believed {b}" for b in believed.seen[:5]]
                    new_errors = errors.records[seen_errors:]
                    found += [f"logged: {e}" for e in new_errors[:5]]
                    if found:
                        problems[target.name] = found
                    rows.append(_row(result, len(believed.seen), len(new_errors)))
                    total_sent += result["sent"]
                    before = after if not found else snapshot(st)
        fuzz_s = time.monotonic() - started
        header = (
            f"{'topic':<15} {'kind':<11} {'sent':>7} {'answers':>8}  {'detail':<28}"
            f" {'time s':>7} {'msg/s':>7}  result"
        )
        found_lines = [
            line
            for name, found in problems.items()
            for line in [f"  {name}:", *(f"    - {p}" for p in found[:8])]
        ]
        report(
            f"\nFuzz: {PER_TOPIC} payloads per topic, seed {SEED}\n\n{header}\n"
            + "\n".join(rows + found_lines)
            + f"\n\n{total_sent} payloads in {fuzz_s:.1f} s ({total_sent / fuzz_s:.0f}/s overall)"
        )
        # and the station still swaps
        await st.operator.bus.start()
        await st.sim.arrive(1)
        record = await st.next_swap(60)
        assert record.result == "completed", record.reason
        assert problems == {}, f"{len(problems)} topic(s) misbehaved: {sorted(problems)}"


# ---- reproductions of what the fuzz found --------------------------------------------------
# Regression tests: each reproduced a bug the fuzz found (all fixed); they must keep passing.

BUG_A = (
    "BUG-A: CommandHandler._run's last-resort handler is not exception-safe. For a payload it "
    "cannot decode it computes the reply id with _id_of(payload), which raises RecursionError "
    "for JSON nested deeper than the parser's recursion limit (_id_of catches only ValueError "
    "and UnicodeDecodeError), and returns ids Reply refuses (a lone surrogate, '\\ud800': "
    "Reply.id validation fails). The exception escapes _run's own except block, the "
    "station-commands task ends, and no later command (estop and abort included) is answered "
    "or executed."
)
BUG_B = (
    "BUG-B: a command whose args hold a lone surrogate string (valid JSON: '\\ud800') is "
    "refused, but its CommandHandled event cannot be serialized (PydanticSerializationError in "
    "Bus.publish). Outbox._send catches only BusDisconnected, so the station-outbox task dies: "
    "no event, status, inventory or alarms update is published again, and Controller.stop "
    "then raises from outbox.stop() and leaves its bus running."
)
BUG_C = (
    "BUG-C: codec._load_json catches JSONDecodeError, UnicodeDecodeError and RecursionError, "
    "but json.loads raises a plain ValueError for an integer literal over 4300 digits "
    "(Python's int max-str-digits limit). decode() lets it escape instead of raising "
    "PayloadError, on every topic: the controller publishes no error event (cmd: the reply is "
    "'internal error', not 'bad command'), a simulated driver publishes no error event and no "
    "failed result, sim/control no error event; the handler's traceback goes to the log. The "
    "simulator has the same gap a second time in simulator/drivers/action.py readable_id."
)
BUG_D = (
    "BUG-D (simulator): a driver command whose 'action' is a lone surrogate string cannot be "
    "decoded; the driver publishes its error event, then builds a 'failed' result echoing that "
    "action, which cannot be serialized (PydanticSerializationError escapes _publish_result, "
    "which catches only BusDisconnected): the documented failed result for a readable id is "
    "never sent."
)
HUGE = b"7" * 4400


@contextlib.asynccontextmanager
async def crash_tolerant(st: StationUnderTest) -> AsyncIterator[None]:
    """Let the harness stop a controller whose task died of a bug under test (a dead task
    re-raises its exception when ``Controller.stop`` awaits it, leaving the bus running)."""
    try:
        yield
    finally:
        for owner in (st.controller.commands, st.controller.outbox):
            task = getattr(owner, "_task", None)
            if task is not None and task.done():
                owner._task = None  # type: ignore[attr-defined]


async def _listen(st: StationUnderTest, *topics: str) -> tuple[Bus, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []

    async def on_message(topic: str, payload: bytes) -> None:
        got.append((topic, payload))

    bus = Bus(st.url, client_id=f"listen-{st.config.station_id}", max_payload_bytes=1 << 20)
    for topic in topics:
        await bus.subscribe(topic, on_message)
    await bus.start()
    return bus, got


async def _replies_to(st: StationUnderTest, payloads: list[bytes]) -> list[Reply]:
    """Send raw payloads on ``cmd`` and collect the replies (3 s at most each)."""
    bus, got = await _listen(st, st.controller.topics.reply)
    try:
        for payload in payloads:
            before = len(got)
            await bus.publish(st.controller.topics.cmd, payload)
            await holds_within(lambda: len(got) > before, 3)  # noqa: B023
    finally:
        await bus.stop()
    return [decode(Reply, p) for _, p in got]


@pytest.mark.parametrize(
    "payload",
    [b"[" * 5000, b'{"id": "\\ud800", "cmd": "start"}'],
    ids=["nested-5000-deep", "lone-surrogate-id"],
)
async def test_bug_a_bad_command_is_refused_and_the_next_one_answered(
    mosquitto: Any, station_id: str, payload: bytes
) -> None:
    cfg = station_config(station_id)
    async with running_station(mosquitto.url, cfg, start=False) as st, crash_tolerant(st):
        replies = await _replies_to(st, [payload, b'{"id": "next", "cmd": "estop"}'])
        assert [(r.id, r.ok) for r in replies][-1:] == [("next", True)], replies
        assert len(replies) == 2 and not replies[0].ok
        assert st.controller.station.mode is Mode.estopped


async def test_bug_b_refused_command_with_odd_args_keeps_events_flowing(
    mosquitto: Any, station_id: str
) -> None:
    cfg = station_config(station_id)
    async with running_station(mosquitto.url, cfg, start=False) as st, crash_tolerant(st):
        odd = b'{"id": "b1", "cmd": "start", "args": {"x": "\\ud800"}}'
        replies = await _replies_to(st, [odd, b'{"id": "b2", "cmd": "fly"}'])
        assert [(r.id, r.ok) for r in replies] == [("b1", False), ("b2", False)]
        handled = await holds_within(
            lambda: any(getattr(e, "id", None) == "b2" for e in st.events), 3
        )
        assert handled, "no CommandHandled event for b2: the outbox is dead"


@pytest.mark.parametrize("where", ["cmd", "arm/state", "arm/cmd", "sim/control"])
async def test_bug_c_huge_integer_gets_an_error_event(
    mosquitto: Any, station_id: str, where: str
) -> None:
    async with running_station(mosquitto.url, station_config(station_id), start=False) as st:
        t = st.controller.topics
        topic, answer = {
            "cmd": (t.cmd, t.events),
            "arm/state": (t.driver_state("arm"), t.events),
            "arm/cmd": (t.driver_cmd("arm"), t.driver_events("arm")),
            "sim/control": (t.sim_control, f"{t.base}/sim/events"),
        }[where]
        bus, got = await _listen(st, answer, t.reply)
        try:
            await bus.publish(topic, b'{"id": "c1", "v": ' + HUGE + b"}")
            errors = lambda: [  # noqa: E731
                json.loads(p) for tp, p in got if tp == answer and b'"kind":"error"' in p
            ]
            assert await holds_within(lambda: any(e["topic"] == topic for e in errors()), 3), (
                f"no error event about {topic}"
            )
            if where == "cmd":
                reply = next(json.loads(p) for tp, p in got if tp == t.reply)
                assert reply["error"].startswith("bad command"), reply
        finally:
            await bus.stop()


async def test_bug_d_driver_answers_unreadable_action_with_failed_result(
    mosquitto: Any, station_id: str
) -> None:
    async with running_station(mosquitto.url, station_config(station_id), start=False) as st:
        t = st.controller.topics
        bus, got = await _listen(st, t.driver_events("door"), t.driver_result("door"))
        try:
            await bus.publish(t.driver_cmd("door"), b'{"id": "d1", "action": "\\ud800"}')
            await holds_within(lambda: len(got) >= 2, 3)
            topics = sorted(tp.rsplit("/", 1)[-1] for tp, _ in got)
            assert topics == ["events", "result"], got
        finally:
            await bus.stop()
