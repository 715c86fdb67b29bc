"""How a peer logs in: the station file's broker section, overridden by the environment."""

from __future__ import annotations

import os

import pytest

from controller.bus.login import broker_credentials
from controller.config import BrokerConfig

pytestmark = pytest.mark.timeout(10)

FILE = BrokerConfig(username="controller", password="from-file", ca_file="/etc/ca.crt")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SWAPSTATION_MQTT_"):
            monkeypatch.delenv(name)


def test_the_station_file_alone() -> None:
    assert broker_credentials(FILE) == {
        "username": "controller",
        "password": "from-file",
        "ca_file": "/etc/ca.crt",
        "cert_file": None,
        "key_file": None,
    }


def test_the_environment_overrides_the_file_and_empty_values_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWAPSTATION_MQTT_PASSWORD", "from-env")
    monkeypatch.setenv("SWAPSTATION_MQTT_USERNAME", "")
    monkeypatch.setenv("SWAPSTATION_MQTT_CERT_FILE", "/etc/c.crt")
    got = broker_credentials(FILE)
    assert (got["username"], got["password"], got["cert_file"]) == (
        "controller",
        "from-env",
        "/etc/c.crt",
    )


def test_an_account_of_its_own_when_the_environment_has_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator's drivers: each logs in with its driver's account (env/sim.env)."""
    monkeypatch.setenv("SWAPSTATION_MQTT_USERNAME", "sim")
    monkeypatch.setenv("SWAPSTATION_MQTT_PASSWORD", "sim-secret")
    monkeypatch.setenv("SWAPSTATION_MQTT_ARM_PASSWORD", "arm-secret")
    monkeypatch.setenv("SWAPSTATION_MQTT_ARM_CERT_FILE", "/etc/arm.crt")
    monkeypatch.setenv("SWAPSTATION_MQTT_ARM_KEY_FILE", "/etc/arm.key")
    assert broker_credentials(FILE, account="arm") == {
        "username": "arm",
        "password": "arm-secret",
        "ca_file": "/etc/ca.crt",
        "cert_file": "/etc/arm.crt",
        "key_file": "/etc/arm.key",
    }
    # an account the environment has no password for uses the common login
    bay = broker_credentials(FILE, account="bay")
    assert (bay["username"], bay["password"]) == ("sim", "sim-secret")
    # and the common login is not touched by the per-account lines
    assert broker_credentials(FILE)["username"] == "sim"
