"""Tools for the crash test (tests/test_chaos.py): controller processes, a wire recorder, checks.

The controller runs as a real OS process (``swapctl run``) so that SIGKILL means what it means
on a station: no ``finally``, no flush, no DISCONNECT. Starting a Python process costs ~0.7 s
of imports on a small machine, two per trial, so :class:`ControllerLauncher` keeps two processes
pre-started ("warm"): each has imported ``controller.cli.main`` and waits for its argv on stdin;
once given it runs exactly ``controller.cli.main.main(["run", ...])``, the code path of
``python -m controller.cli.main run``. Nothing the controller does before the argv arrives
touches the broker, the config or the database. A running warm controller also stops itself
(as on SIGTERM) when its stdin reaches EOF, i.e. when the test process is gone, so not even a
crashed test run leaves a controller behind. ``SWAPSTATION_CHAOS_COLD=1`` launches each
controller cold with ``python -m controller.cli.main run ...`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from controller.bus import Bus
from controller.config import StationConfig
from controller.contract import (
    MOTION_ACTIONS,
    Alarms,
    DriverCommand,
    EventAdapter,
    Inventory,
    PayloadError,
    Status,
    Topics,
    decode,
    decode_as,
)
from controller.store import Store

M = TypeVar("M", bound=BaseModel)

REPO = Path(__file__).resolve().parent.parent

#: The warm controller: import everything heavy, then wait for argv (a JSON list) on stdin.
#: An empty line or EOF (the launcher is closing) exits without doing anything. Once running,
#: EOF on stdin means the test process is gone: the controller stops as on SIGTERM, so not
#: even a crashed test run leaves a controller behind.
_WARM_BOOT = """\
import json, os, signal, sys, threading
import controller.cli.main as cli
import controller.cli.commands, controller.app  # the heavy part of start-up, done ahead
line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)


def orphaned():
    sys.stdin.read()
    os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=orphaned, daemon=True).start()
sys.exit(cli.main(json.loads(line)))
"""


def write_config(cfg: StationConfig, path: Path) -> Path:
    """The station file the controller process reads (``swapctl run --config``)."""
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


# ---- controller processes -------------------------------------------------------------------
@dataclass
class ControllerProcess:
    """One controller OS process and the file its stderr goes to."""

    proc: asyncio.subprocess.Process
    log: Path
    started_at: float = 0.0  # loop time when it was told to run

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL and reap: the process vanishes mid-instruction."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        await self.close_stdin()

    async def close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(OSError):
                await stdin.wait_closed()

    async def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (swapctl stops cleanly), SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                await self.kill()
        await self.close_stdin()
        return int(self.proc.returncode or 0)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ControllerLauncher:
    """Starts ``swapctl run`` processes, keeping ``ahead`` warm processes ready (module doc).

    Every process it started is ended by :meth:`close` (killed if need be, always reaped).
    """

    def __init__(self, log_dir: Path, *, cold: bool = False, ahead: int = 2) -> None:
        self.log_dir = log_dir
        self.cold = cold
        self.ahead = 0 if cold else ahead
        self._count = 0
        self._warm: deque[ControllerProcess] = deque()
        self._live: list[ControllerProcess] = []

    async def _spawn(self, args: list[str]) -> ControllerProcess:
        self._count += 1
        log = self.log_dir / f"controller-{self._count:04d}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL if self.cold else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                cwd=REPO,
            )
        cp = ControllerProcess(proc, log)
        self._live.append(cp)
        return cp

    async def launch(self, broker_url: str, config: Path, log: Path) -> ControllerProcess:
        """A controller process running ``run --broker URL --config FILE``, stderr to ``log``."""
        self._live = [cp for cp in self._live if cp.alive()]
        argv = ["run", "--broker", broker_url, "--config", str(config)]
        if self.cold:
            cp = await self._spawn(["-m", "controller.cli.main", *argv])
        else:
            cp = self._warm.popleft() if self._warm else await self._spawn(["-c", _WARM_BOOT])
            assert cp.proc.stdin is not None
            try:
                if not cp.alive():
                    raise ConnectionResetError(f"exited with {cp.proc.returncode}")
                cp.proc.stdin.write((json.dumps(argv) + "\n").encode())
                await cp.proc.stdin.drain()  # stdin stays open: EOF would tell it we are gone
            except (ConnectionResetError, BrokenPipeError) as exc:
                await cp.kill()
                raise RuntimeError(
                    f"warm controller process died before it was used ({exc}):\n{cp.log_tail()}"
                ) from None
        cp.started_at = asyncio.get_running_loop().time()
        cp.log = cp.log.rename(log)  # the open file follows: same inode
        while len(self._warm) < self.ahead:  # they import while this one runs
            self._warm.append(await self._spawn(["-c", _WARM_BOOT]))
        return cp

    async def close(self) -> None:
        """End every process this launcher started: warm ones exit on EOF, others get
        SIGTERM (SIGKILL after 10 s); all are reaped."""
        warm, self._warm = list(self._warm), deque()
        for cp in warm:
            await cp.close_stdin()
        for cp in self._live:
            if cp in warm:
                try:
                    await asyncio.wait_for(cp.proc.wait(), 10.0)
                except TimeoutError:
                    await cp.kill()
            else:
                await cp.terminate()
        self._live.clear()


# ---- the wire ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One message as the recorder saw it, with its (loop) arrival time."""

    t: float
    topic: str
    payload: bytes


class WireRecorder:
    """An independent MQTT client recording what crosses the broker for one station.

    It subscribes to every driver's ``cmd`` topic (what the controller commands), and to the
    operator-facing ``controller``, ``status``, ``alarms``, ``inventory`` and ``events`` topics.
    """

    def __init__(self, url: str, station_id: str, client_id: str) -> None:
        self.topics = Topics(station_id)
        self.bus = Bus(url, client_id=client_id)
        self.seen: list[Seen] = []
        self._events: list[tuple[float, Any]] = []  # decoded once, as they arrive
        self._changed = asyncio.Event()
        self.driver_cmd_filter = f"{self.topics.base}/drivers/+/cmd"

    async def start(self) -> None:
        t = self.topics
        for flt in (
            self.driver_cmd_filter,
            t.controller,
            t.status,
            t.alarms,
            t.inventory,
            t.events,
        ):
            await self.bus.subscribe(flt, self._record)
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()

    async def _record(self, topic: str, payload: bytes) -> None:
        t = asyncio.get_running_loop().time()
        self.seen.append(Seen(t, topic, payload))
        if topic == self.topics.events:
            with contextlib.suppress(PayloadError):
                self._events.append((t, decode_as(EventAdapter, payload)))
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float) -> Any:
        """Wait (real seconds) until ``predicate()`` is truthy; return its last value."""
        try:
            async with asyncio.timeout(timeout_s):
                while not (value := predicate()):
                    await self._changed.wait()
                return value
        except TimeoutError:
            return predicate()

    # ---- reading what was seen ------------------------------------------------------------
    def on(self, topic: str, since: float = float("-inf")) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic and s.t > since]

    def last(self, model: type[M], topic: str, since: float = float("-inf")) -> M | None:
        for s in reversed(self.on(topic, since)):
            with contextlib.suppress(PayloadError):
                return decode(model, s.payload)
        return None

    def controller_online_since(self, since: float) -> float | None:
        """Arrival time of the first ``online`` of the controller after ``since``."""
        for s in self.on(self.topics.controller, since):
            if s.payload.strip() == b"online":
                return s.t
        return None

    def driver_commands(
        self, since: float = float("-inf"), until: float = float("inf")
    ) -> list[tuple[float, str, str, str]]:
        """(arrival, device, action, command id) of every driver command seen in (since, until]."""
        out = []
        for s in self.seen:
            device = self.topics.device_of(s.topic)
            if not since < s.t <= until or device is None or not s.topic.endswith("/cmd"):
                continue
            try:
                cmd = decode(DriverCommand, s.payload)
            except PayloadError:
                out.append((s.t, device, "<undecodable>", ""))
                continue
            out.append((s.t, device, cmd.action, cmd.id))
        return out

    def motions(self, since: float) -> list[tuple[float, str, str, str]]:
        """Driver commands after ``since`` that move something (``stop`` is not a motion)."""
        return [c for c in self.driver_commands(since) if (c[1], c[2]) in MOTION_ACTIONS]

    def events(self, until: float = float("inf")) -> list[tuple[float, Any]]:
        """(arrival, event) of every decodable event seen up to ``until``."""
        return [(t, e) for t, e in self._events if t <= until]

    def status(self, since: float) -> Status | None:
        return self.last(Status, self.topics.status, since)

    def alarms(self, since: float) -> Alarms | None:
        return self.last(Alarms, self.topics.alarms, since)

    def inventory(self, since: float) -> Inventory | None:
        return self.last(Inventory, self.topics.inventory, since)


# ---- the journal ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JournalView:
    locations: dict[str, str]
    open_moves: list[str]  # "P-1001 slot:1->gripper"
    swap_in_flight: str | None

    @property
    def mid_swap(self) -> bool:
        """Whether a restart from this journal must come up aborted (recover_from_journal)."""
        return self.swap_in_flight is not None or bool(self.open_moves)


def read_journal(db: Path, scratch: Path | None = None) -> JournalView:
    """The journal as a restarted controller will find it.

    With ``scratch``, the database files (and WAL) are copied there and the copy is read, so the
    file the next controller opens is exactly what the dead one left behind.
    """
    path = db
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(db) + suffix)
            if src.exists():
                shutil.copyfile(src, Path(str(scratch / db.name) + suffix))
        path = scratch / db.name
    with Store.open(path) as store:
        return JournalView(
            locations=store.pack_locations(),
            open_moves=[f"{m.pack_id} {m.src}->{m.dst}" for m in store.open_moves()],
            swap_in_flight=store.swap_in_flight(),
        )


# ---- comparing with the world -----------------------------------------------------------------
def compare_packs(
    journal: dict[str, str], world: dict[str, str], departed: dict[str, str]
) -> list[tuple[str, str, str]]:
    """(kind, pack, text) for every pack on which the journal and the simulated world disagree.

    ``world``: pack -> location of the packs in the station; ``departed``: pack -> vehicle id of
    packs that left on trucks. Kinds: ``unknown`` (the journal still does not know the place
    although the sensors report exactly one), ``unjournaled`` (a pack the world has that the
    journal never recorded), ``departure_missed`` (the journal keeps a pack on a truck that has
    left with it), ``mismatch`` (anything else).
    """
    out: list[tuple[str, str, str]] = []
    for pack in sorted(set(journal) | set(world) | set(departed)):
        mine = journal.get(pack)
        if pack in departed:
            real = f"departed:{departed[pack]}"
        else:
            real = world.get(pack, "<not in the world>")
        if mine == real:
            continue
        text = f"{pack}: journal {mine or '<none>'}, world {real}"
        if mine == "unknown":
            kind = "unknown"
        elif mine is None:
            kind = "unjournaled"
        elif pack in departed and mine == f"vehicle:{departed[pack]}":
            kind = "departure_missed"
        else:
            kind = "mismatch"
        out.append((kind, pack, text))
    return out


def compare_inventory(inv: Inventory, world: dict[str, str]) -> list[str]:
    """Where the controller's published inventory (slots, gripper) differs from the world."""
    problems = []
    shown = {f"slot:{s.slot}": s.pack.id for s in inv.slots if s.pack is not None}
    if inv.gripper is not None:
        shown["gripper"] = inv.gripper.id
    real = {loc: p for p, loc in world.items() if loc.startswith("slot:") or loc == "gripper"}
    for loc in sorted(set(shown) | set(real)):
        if shown.get(loc) != real.get(loc):
            problems.append(
                f"inventory shows {shown.get(loc) or 'nothing'} at {loc}, "
                f"world has {real.get(loc) or 'nothing'}"
            )
    return problems


# ---- reporting --------------------------------------------------------------------------------
def table(title: str, pairs: Iterable[tuple[str, str]], row_order: Iterable[str] = ()) -> str:
    """A count table of (row, column) pairs, rows in ``row_order`` first, then as they come."""
    counts = Counter(pairs)
    rows = [r for r in row_order if any(k[0] == r for k in counts)]
    rows += sorted({r for r, _ in counts} - set(rows))
    cols = sorted({c for _, c in counts})
    width = max([5, *(len(r) for r in rows)])
    head = f"{'':<{width}} | " + " | ".join(cols) + " | total"
    lines = [title, head, "-" * len(head)]
    for r in rows:
        cells = [f"{counts[(r, c)] or '.':>{len(c)}}" for c in cols]
        lines.append(
            f"{r:<{width}} | " + " | ".join(cells) + f" | {sum(counts[(r, c)] for c in cols):>5}"
        )
    totals = [f"{sum(counts[(r, c)] for r in rows):>{len(c)}}" for c in cols]
    lines.append(f"{'total':<{width}} | " + " | ".join(totals) + f" | {sum(counts.values()):>5}")
    return "\n".join(lines)


def histogram(title: str, counts: Counter[str], total: int | None = None) -> str:
    total = total if total is not None else sum(counts.values())
    width = max([12, *(len(k) for k in counts)])
    lines = [title]
    for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        pct = 100.0 * n / total if total else 0.0
        lines.append(f"  {k:<{width}} {n:>5}  {pct:5.1f} %")
    return "\n".join(lines)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default
