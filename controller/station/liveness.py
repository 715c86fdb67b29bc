"""A driver going offline is an alarm, not only a status reason.

The station already refuses every motion that needs an offline driver and holds a swap until it
is back; this makes the operator hear of it where alarms are looked at (the alarms topic, the
console's alarm panel) with the driver named. The alarm returns to normal when the driver is online
again (the journal records the clearing): it describes a condition, and the condition is gone.
"""

from __future__ import annotations

from controller.station.alarms import AlarmBook

CODE = "driver_offline"


class Liveness:
    """Raises ``driver_offline`` when a driver that was online goes offline; clears it when
    the driver is back."""

    def __init__(self, alarms: AlarmBook) -> None:
        self._alarms = alarms
        self._online: dict[str, bool] = {}

    def update(self, device: str, online: bool | None) -> None:
        was = self._online.get(device)
        if online is None or online == was:
            return
        self._online[device] = online
        if online:
            if was is False:
                self._alarms.clear_where(CODE, lambda a: a.text.startswith(f"{device} driver"))
            return
        if was is True:
            self._alarms.raise_(CODE, f"{device} driver offline", {"device": device})
