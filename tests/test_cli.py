"""swapctl as a user runs it: separate processes, real brokers, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.brokers import Mosquitto
from tests.harness import slacken_deadlines

pytestmark = pytest.mark.timeout(120)

SWAPCTL = [sys.executable, "-m", "controller.cli.main"]
ROOT = Path(__file__).resolve().parent.parent


def swapctl(
    *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWAPCTL, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def station_file(tmp_path: Path, station_id: str, **changes: object) -> Path:
    """The shipped station file with this test's station id, and the harness's deadline slack
    (a loaded machine's stall is many station seconds at these time scales)."""
    data = yaml.safe_load((ROOT / "config" / "station.yaml").read_text())
    data["station_id"] = station_id
    slacken_deadlines(data["swap"])
    data.update(changes)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_demo_json_swaps_in_budget_and_accounts_for_every_pack(tmp_path: Path) -> None:
    cfg = station_file(tmp_path, "cli-demo")
    proc = swapctl("demo", "--swaps", "2", "--time-scale", "50", "--json", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["station"] == "cli-demo"
    assert doc["inventory_ok"] is True
    assert len(doc["swaps"]) == 2
    for swap in doc["swaps"]:
        assert set(swap) >= {
            "swap_id",
            "vehicle_id",
            "result",
            "duration_s",
            "budget_s",
            "phases",
            "pack_out",
            "pack_in",
        }
        assert swap["result"] == "completed"
        assert swap["duration_s"] <= swap["budget_s"] == 180
        assert list(swap["phases"]) == [
            "identify",
            "position",
            "prepare",
            "unlock",
            "remove",
            "stow",
            "fetch",
            "insert",
            "lock",
            "verify",
            "release",
        ]
        assert swap["pack_in"]["soc"] >= 0.9 > swap["pack_out"]["soc"]
    assert "Traceback" not in proc.stderr


def test_demo_human_output_has_a_table_per_swap(tmp_path: Path) -> None:
    cfg = station_file(tmp_path, "cli-demo-h")
    proc = swapctl("demo", "--swaps", "1", "--time-scale", "50", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pack out" in proc.stdout and "Seconds per phase" in proc.stdout
    assert "1 of 1 swaps completed within the 180 s budget" in proc.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("station_id: x\nswap: {budget_s: -3}\n", "swap"),
        ("station_id: [unclosed\n", "not valid YAML"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_config_is_one_clear_line_not_a_traceback(
    tmp_path: Path, text: str, words: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    proc = swapctl("demo", "--config", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and words in proc.stderr


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    proc = swapctl("status", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_cmd_without_a_station_answering_exits_2(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = station_file(tmp_path, "cli-nobody")
    proc = swapctl(
        "cmd", "start", "--broker", mosquitto.url, "--config", str(cfg), "--timeout", "0.5"
    )
    assert proc.returncode == 2, proc.stderr
    assert "no reply" in proc.stderr


def test_no_broker_exits_2(tmp_path: Path) -> None:
    from controller.embedded_broker import free_port

    cfg = station_file(tmp_path, "cli-nobroker")
    proc = swapctl(
        "status",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--config",
        str(cfg),
        "--timeout",
        "0.5",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_for(predicate: object, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto-clients")
def test_run_and_sim_as_two_processes_against_mosquitto(
    mosquitto: Mosquitto, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    cfg = station_file(tmp_path, "cli-two", time_scale=50)
    url = mosquitto.url
    wire = tmp_path / "wire.txt"
    with wire.open("w") as out:
        processes.append(
            subprocess.Popen(
                [
                    "mosquitto_sub",
                    "-p",
                    str(mosquitto.port),
                    "-h",
                    "127.0.0.1",
                    "-t",
                    "swap/cli-two/#",
                    "-v",
                ],
                stdout=out,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    processes.append(
        subprocess.Popen(
            [*SWAPCTL, "run", "--broker", url, "--config", str(cfg)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    processes.append(
        subprocess.Popen(
            [
                *SWAPCTL,
                "sim",
                "--broker",
                url,
                "--config",
                str(cfg),
                "--arrivals",
                "2",
                "--state",
                str(tmp_path / "world.json"),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
    )

    def status() -> dict[str, object] | None:
        proc = swapctl("status", "--json", "--broker", url, "--config", str(cfg), "--timeout", "2")
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    assert _wait_for(lambda: (s := status()) is not None and s["controller_online"], 20)
    # an operator starts the station; cmd exits 0 when ok...
    assert _wait_for(
        lambda: swapctl("cmd", "start", "--broker", url, "--config", str(cfg)).returncode == 0, 20
    )
    # ...and 1 when refused, with the reason
    refused = swapctl("cmd", "reset", "--broker", url, "--config", str(cfg), "--json")
    assert refused.returncode == 1 and json.loads(refused.stdout)["ok"] is False
    assert _wait_for(lambda: (s := status()) is not None and s["swaps_completed"] == 2, 60)
    time.sleep(0.5)
    text = wire.read_text()
    for topic in (
        "status",
        "events",
        "inventory",
        "controller",
        "reply",
        "cmd",
        "drivers/arm/cmd",
        "drivers/arm/result",
        "drivers/arm/state",
        "drivers/arm/online",
        "drivers/bay/state",
        "drivers/rack/state",
        "drivers/vehicle/state",
        "drivers/safety/state",
        "drivers/door/state",
    ):
        assert f"swap/cli-two/{topic} " in text, topic
    assert '"kind":"swap_finished"' in text


@pytest.mark.parametrize(
    ("spec", "result", "reason"),
    [
        ("arm.lift:fail", "aborted", "injected_fault"),
        ("bay.unlock:hang", "aborted", "phase 'unlock' exceeded"),
        ("rack.dock:slow", "completed", None),
    ],
)
def test_demo_inject_specs_work_as_written(
    tmp_path: Path, spec: str, result: str, reason: str | None
) -> None:
    cfg = station_file(tmp_path, f"cli-inject-{spec.split(':')[1]}")
    proc = swapctl(
        "demo",
        "--swaps",
        "1",
        "--time-scale",
        "50",
        "--inject",
        spec,
        "--json",
        "--config",
        str(cfg),
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == (0 if result == "completed" else 1), proc.stderr[-1000:]
    assert doc["swaps"][0]["result"] == result
    if reason:
        assert reason in doc["swaps"][0]["reason"]
    assert doc["inventory_ok"] is True, doc["problems"]


def test_bad_inject_spec_is_a_clear_error(tmp_path: Path) -> None:
    cfg = station_file(tmp_path, "cli-inject-bad")
    proc = swapctl("demo", "--inject", "arm.fly:fail", "--config", str(cfg))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "arm.fly" in proc.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("sim", "--arrivals", "1", "--rate", "2"), "'--rate': not allowed with --arrivals"),
        (("demo", "--time-scale", "0"), "time_scale"),
        (("demo", "--swaps", "0"), "--swaps"),
        (("cmd", "start", "--arg", "novalue"), "expected KEY=VALUE"),
        (("frobnicate",), "No such command"),
        ((), "Missing command"),
    ],
)
def test_usage_errors_and_bad_option_values_exit_2(args: tuple[str, ...], words: str) -> None:
    """Each is refused before anything connects: exit 2, the reason, no traceback."""
    proc = swapctl(*args)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_human_tables_in_a_pipe_are_plain_whole_and_verbatim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a terminal: no ANSI codes even with FORCE_COLOR, a wide table is not cropped to 80
    columns, and a station's text with [brackets] and :colons: is printed as it is."""
    import datetime as dt
    import io

    from controller.cli.render import alarms_table, echo, swaps_table
    from controller.contract import SWAP_PHASES, Alarms, SwapRecord

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "40")
    now = dt.datetime.now(dt.UTC)
    record = SwapRecord(
        swap_id="cli-0001",
        vehicle_id="T-1",
        result="aborted",
        duration_s=90.0,
        budget_s=180.0,
        in_budget=False,
        phases={p.value: 1234.5 for p in SWAP_PHASES},
        pack_out=None,
        pack_in=None,
        started_at=now,
        ended_at=now,
    )
    alarms = Alarms.model_validate(
        {
            "ts": now,
            "station": "cli",
            "alarms": [
                {
                    "id": "A-1",
                    "code": "estop",
                    "severity": "critical",
                    "text": "e-stop [bay] :fail: pressed",
                    "raised_at": now,
                }
            ],
        }
    )
    out = io.StringIO()
    echo(swaps_table([record]), out)
    echo(alarms_table(alarms, controller_online=False), out)
    text = out.getvalue()
    assert "\x1b" not in text
    phase_rows = [
        line for line in text.splitlines() if line.startswith("0001") and "1234.5" in line
    ]
    assert phase_rows and phase_rows[0].count("1234.5") == len(SWAP_PHASES)
    assert "e-stop [bay] :fail: pressed" in text and "NO" in text and "aborted" in text
    assert "controller OFFLINE" in text


def test_sim_refuses_another_station_s_world_file_naming_it(tmp_path: Path) -> None:
    """The world file belongs to one station; a wrong one is refused before anything starts."""
    from controller.clock import Clock
    from controller.config import load_config
    from simulator import persist
    from simulator.traffic import Traffic
    from simulator.world import World

    other = load_config(station_file(tmp_path, "someone-else"))
    world_file = tmp_path / "world.json"
    world = World(other, Clock(1.0))
    persist.save(world, Traffic(other, Clock(1.0), world), world_file)
    (tmp_path / "mine").mkdir()
    mine = station_file(tmp_path / "mine", "cli-world")
    proc = swapctl(
        "sim", "--config", str(mine), "--broker", "mqtt://127.0.0.1:1", "--state", str(world_file)
    )
    assert proc.returncode == 2, proc.stderr
    assert str(world_file) in proc.stderr and "someone-else" in proc.stderr
