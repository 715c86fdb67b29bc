"""Fixtures of the security tests: the station directory make-certs.sh makes, and Mosquitto
running the shipped config for it (see helpers.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.helpers import (
    SecureBroker,
    Station,
    build_certbind,
    make_station,
    missing_tools,
    new_station_root,
)


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tools() -> None:
    missing = missing_tools()
    if missing:
        pytest.fail("the security tests need these tools:\n  " + "\n  ".join(missing))


@pytest.fixture(scope="module")
def station(tools: None) -> Iterator[Station]:
    root = new_station_root()
    try:
        yield make_station(root, "sec-test", "--demo")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(station: Station) -> Iterator[SecureBroker]:
    b = SecureBroker(station)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def fresh_root(tools: None) -> Iterator[Path]:
    """A station directory of the test's own (for brokers a test reconfigures or restarts)."""
    root = new_station_root()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def certbind_dir(tools: None) -> Iterator[Path]:
    """The certbind plugin, built by scripts/build-certbind.sh once per test process."""
    root = new_station_root("swapstation-certbind-")
    try:
        yield build_certbind(root / "plugin")
    finally:
        shutil.rmtree(root, ignore_errors=True)
