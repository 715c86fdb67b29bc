"""The one place that builds MQTT topic names. Nothing else formats a topic string.

Root: ``swap/<station_id>/``. Operator-facing topics sit directly under it; hardware drivers
under ``drivers/<device>/``; simulator-only controls under ``sim/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ROOT: Final = "swap"

DeviceId = Literal["arm", "bay", "door", "rack", "vehicle", "safety"]
DEVICES: Final[tuple[DeviceId, ...]] = ("arm", "bay", "door", "rack", "vehicle", "safety")

ONLINE: Final = "online"
OFFLINE: Final = "offline"


def _check_segment(name: str, value: str) -> None:
    if not value or any(ch in value for ch in "/+#\x00") or value != value.strip():
        raise ValueError(f"{name} {value!r} is not a valid MQTT topic segment")


@dataclass(frozen=True)
class Topics:
    """Topic names of one station."""

    station_id: str

    def __post_init__(self) -> None:
        _check_segment("station id", self.station_id)

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.station_id}"

    @property
    def all(self) -> str:
        """Filter matching every topic of this station."""
        return f"{self.base}/#"

    # --- operator-facing ---------------------------------------------------------------
    @property
    def status(self) -> str:
        """Retained station status."""
        return f"{self.base}/status"

    @property
    def cmd(self) -> str:
        """Operator commands in (never retained)."""
        return f"{self.base}/cmd"

    def cmd_from(self, user: str) -> str:
        """Commands from one authenticated broker user: the broker's ACL lets only ``user``
        write here, so the controller knows who sent a command without trusting the payload."""
        _check_segment("user", user)
        return f"{self.cmd}/{user}"

    @property
    def cmd_any_user(self) -> str:
        return f"{self.cmd}/+"

    @property
    def reply(self) -> str:
        """Exactly one reply per operator command."""
        return f"{self.base}/reply"

    @property
    def events(self) -> str:
        """Phase changes, alarms, swap completions, error events (QoS 1, not retained)."""
        return f"{self.base}/events"

    @property
    def inventory(self) -> str:
        """Retained inventory: every slot and pack."""
        return f"{self.base}/inventory"

    @property
    def alarms(self) -> str:
        """Retained list of the station's active alarms."""
        return f"{self.base}/alarms"

    @property
    def history(self) -> str:
        """Retained list of the most recent swap records."""
        return f"{self.base}/history"

    @property
    def controller(self) -> str:
        """Retained ``online``/``offline`` of the controller; ``offline`` is its last will."""
        return f"{self.base}/controller"

    # --- hardware drivers --------------------------------------------------------------
    def driver(self, device: str) -> str:
        _check_segment("device", device)
        return f"{self.base}/drivers/{device}"

    def driver_cmd(self, device: str) -> str:
        return f"{self.driver(device)}/cmd"

    def driver_result(self, device: str) -> str:
        return f"{self.driver(device)}/result"

    def driver_state(self, device: str) -> str:
        return f"{self.driver(device)}/state"

    def driver_online(self, device: str) -> str:
        return f"{self.driver(device)}/online"

    def driver_events(self, device: str) -> str:
        """Error events a driver raises about input it could not use."""
        return f"{self.driver(device)}/events"

    def every_driver(self, leaf: str) -> str:
        """Filter for one leaf topic of every driver, e.g. ``every_driver("online")``."""
        if leaf not in ("cmd", "result", "state", "online", "events"):
            raise ValueError(f"no driver topic {leaf!r}")
        return f"{self.base}/drivers/+/{leaf}"

    @property
    def drivers_all(self) -> str:
        return f"{self.base}/drivers/+/+"

    # --- simulator-only ----------------------------------------------------------------
    @property
    def sim_control(self) -> str:
        """Simulator control (faults, e-stop button, traffic); not part of a real station."""
        return f"{self.base}/sim/control"

    @property
    def sim_events(self) -> str:
        """Error events about unusable ``sim/control`` input (simulator only)."""
        return f"{self.base}/sim/events"

    @property
    def sim_world(self) -> str:
        """Retained ground truth of the simulated world (where every pack really is)."""
        return f"{self.base}/sim/world"

    def device_of(self, topic: str) -> str | None:
        """The device id in a ``drivers/<device>/...`` topic of this station, else ``None``."""
        prefix = f"{self.base}/drivers/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        return rest[0] if len(rest) == 2 else None
