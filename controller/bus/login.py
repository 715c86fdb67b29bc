"""How a peer logs in to the broker: credentials from its station file, overridden by the
environment, and one place that turns them into a :class:`Bus`.

Credentials never come from the command line, where other users of the machine could read
them (``ps``, shell history). The station's Mosquitto binds every client id to its user
(``use_username_as_clientid``), so a process that plays several peers (the simulator plays all
six drivers) must log each one in with an account of its own: ``account`` below.
"""

from __future__ import annotations

import os
from typing import TypedDict

from controller.bus.client import Bus, LastWill
from controller.config import BrokerConfig, StationConfig

ENV_PREFIX = "SWAPSTATION_MQTT_"


class Credentials(TypedDict):
    username: str | None
    password: str | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None


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

    def pick(name: str, value: str | None) -> str | None:
        return os.environ.get(ENV_PREFIX + name.upper()) or value

    common = Credentials(
        username=pick("username", broker.username),
        password=pick("password", broker.password),
        ca_file=pick("ca_file", broker.ca_file),
        cert_file=pick("cert_file", broker.cert_file),
        key_file=pick("key_file", broker.key_file),
    )
    if account is None:
        return common
    own = f"{ENV_PREFIX}{account.upper()}_"
    password = os.environ.get(own + "PASSWORD")
    if not password:
        return common
    return Credentials(
        username=account,
        password=password,
        ca_file=common["ca_file"],
        cert_file=os.environ.get(own + "CERT_FILE") or None,
        key_file=os.environ.get(own + "KEY_FILE") or None,
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
