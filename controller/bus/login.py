"""How a peer logs in to the broker: credentials from its station file, overridden by the
environment, and one place that turns them into a :class:`Bus`.

Credentials never come from the command line, where other users of the machine could read
them (``ps``, shell history). The station's Mosquitto binds every client id to its user
(``use_username_as_clientid``), so a process that plays several peers (the simulator plays all
six drivers) must log each one in with an account of its own: ``account`` below.
"""

from __future__ import annotations

from typing import TypedDict

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.bus.client import Bus, LastWill
from controller.config import BrokerConfig, StationConfig

ENV_PREFIX = "SWAPSTATION_MQTT_"


class Credentials(TypedDict):
    username: str | None
    password: str | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


class LoginEnvironment(BaseSettings):
    """The login a process finds in its environment (``SWAPSTATION_MQTT_USERNAME`` and so on;
    for one account of several, ``SWAPSTATION_MQTT_<ACCOUNT>_PASSWORD`` and so on). Empty
    values count as unset. Nothing else is read: no ``.env`` file, no secrets directory."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def broker_credentials(broker: BrokerConfig, *, account: str | None = None) -> Credentials:
    """Credentials and TLS files from config, overridden by ``SWAPSTATION_MQTT_*`` variables.

    Args:
        broker: the station file's ``broker`` section.
        account: the peer's own account, for a process that plays several peers. When
            ``SWAPSTATION_MQTT_<ACCOUNT>_PASSWORD`` is set (make-certs.sh writes these into
            ``env/sim.env``), the client logs in as user ``account`` with that password and
            ``SWAPSTATION_MQTT_<ACCOUNT>_CERT_FILE``/``_KEY_FILE``; the CA stays the common one.
            Otherwise it uses the common login (an open development broker).
    """
    env = LoginEnvironment()
    common = Credentials(
        username=env.username or broker.username,
        password=env.password or broker.password,
        ca_file=env.ca_file or broker.ca_file,
        cert_file=env.cert_file or broker.cert_file,
        key_file=env.key_file or broker.key_file,
    )
    if account is None:
        return common
    own = LoginEnvironment(_env_prefix=f"{ENV_PREFIX}{account.upper()}_")
    if not own.password:
        return common
    return Credentials(
        username=account,
        password=own.password,
        ca_file=common["ca_file"],
        cert_file=own.cert_file,
        key_file=own.key_file,
    )


def make_bus(
    config: StationConfig,
    url: str,
    *,
    client_id: str,
    will: LastWill | None = None,
    account: str | None = None,
) -> Bus:
    """A :class:`Bus` to ``url`` with the login and timings of the station file's ``broker``
    section (see :func:`broker_credentials` for ``account``)."""
    broker = config.broker
    return Bus(
        url,
        client_id=client_id,
        will=will,
        keepalive_s=broker.keepalive_s,
        reconnect_min_s=broker.reconnect_min_s,
        reconnect_max_s=broker.reconnect_max_s,
        **broker_credentials(broker, account=account),
    )
