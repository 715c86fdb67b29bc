"""Run the test suite N times, each in a fresh pytest process, and tabulate every failure.

Finds flaky tests by repetition: a test that fails once in ten runs is a bug, in the test or in
the controller. ``--load K`` keeps K busy processes (CPU hogs) running meanwhile, as on a noisy
CI machine. The table lists each test that failed at least once: how often, and the first line
of its first error. Exit status 0 only when every run passed.

Usage (``make repeat N=10 LOAD=1`` calls this)::

    python scripts/repeat.py --runs 10 [--load 2] [--out DIR] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _hog(stop_at: float) -> None:  # pragma: no cover - runs in a child process
    """Burn one CPU until ``stop_at`` (or until killed)."""
    x = 0
    while time.time() < stop_at:
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


@dataclass
class Failure:
    count: int = 0
    first_error: str = ""
    runs: list[int] = field(default_factory=list)


@dataclass
class RunResult:
    index: int
    exit_code: int
    seconds: float
    passed: int = 0
    failed: int = 0
    skipped: int = 0


def _first_line(element: ET.Element) -> str:
    message = (element.get("message") or "").strip() or (element.text or "").strip()
    for line in message.splitlines():
        if line.strip():
            return line.strip()[:160]
    return "(no message)"


def _parse_junit(path: Path, run: RunResult, failures: dict[str, Failure]) -> None:
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        module = classname.rsplit(".", 1)
        nodeid = (
            f"{classname.replace('.', '/')}.py::{name}"
            if len(module) == 1 or not module[-1][:1].isupper()
            else f"{module[0].replace('.', '/')}.py::{module[1]}::{name}"
        )
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            run.failed += 1
            entry = failures.setdefault(nodeid, Failure())
            entry.count += 1
            entry.runs.append(run.index)
            if not entry.first_error:
                entry.first_error = _first_line(bad)
        elif case.find("skipped") is not None:
            run.skipped += 1
        else:
            run.passed += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--load", type=int, default=0, help="busy processes to run meanwhile")
    parser.add_argument("--out", type=Path, default=ROOT / ".repeat", help="junit files go here")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    workers = os.environ.get("TEST_WORKERS", "3")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if workers != "0":
        base += ["-n", workers, "--dist", "loadfile"]

    hogs: list[multiprocessing.Process] = []
    if args.load:
        stop_at = time.time() + 24 * 3600
        for _ in range(args.load):
            p = multiprocessing.Process(target=_hog, args=(stop_at,), daemon=True)
            p.start()
            hogs.append(p)
        print(f"repeat: {args.load} CPU hog(s) running", flush=True)

    runs: list[RunResult] = []
    failures: dict[str, Failure] = {}
    try:
        for i in range(1, args.runs + 1):
            junit = args.out / f"run-{i}.xml"
            junit.unlink(missing_ok=True)
            cmd = [*base, f"--junitxml={junit}", *args.pytest_args]
            started = time.monotonic()
            log = args.out / f"run-{i}.log"
            with log.open("w") as out:
                code = subprocess.call(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            run = RunResult(i, code, time.monotonic() - started)
            if junit.exists():
                _parse_junit(junit, run, failures)
            elif code != 0:
                failures.setdefault("(whole run)", Failure()).count += 1
                failures["(whole run)"].first_error = f"exit {code}, no junit file; see {log}"
            runs.append(run)
            print(
                f"run {i}/{args.runs}: exit {code}, {run.passed} passed, {run.failed} failed, "
                f"{run.skipped} skipped, {run.seconds:.0f} s (log {log.relative_to(ROOT)})",
                flush=True,
            )
    finally:
        for p in hogs:
            p.terminate()
        for p in hogs:
            p.join(5)

    print()
    load = f", {args.load} CPU hog(s)" if args.load else ""
    bad_runs = sum(1 for r in runs if r.exit_code != 0)
    print(f"## {len(runs)} run(s){load}: {bad_runs} failed")
    print()
    print("| run | exit | passed | failed | skipped | seconds |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.index} | {r.exit_code} | {r.passed} | {r.failed} | {r.skipped} | "
            f"{r.seconds:.0f} |"
        )
    print()
    if failures:
        print("| test | failures | runs | first error line |")
        print("|---|---|---|---|")
        for nodeid, f in sorted(failures.items(), key=lambda kv: (-kv[1].count, kv[0])):
            error = f.first_error.replace("|", "\\|")
            print(f"| {nodeid} | {f.count}/{len(runs)} | {','.join(map(str, f.runs))} | {error} |")
    else:
        print("no test failed")
    return 0 if bad_runs == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
