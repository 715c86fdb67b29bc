"""One exception base for the whole product; every error carries a code.

Details travel as attributes, not only in the message, so callers (and the operator's reply)
can say exactly what went wrong without parsing strings. What happens to an error (is a retry
worth it, which alarm it raises, how severe, what the operator does) is not decided here but in
one table keyed by the code, :mod:`controller.error_table`: an exception says what happened,
the table says what it means.
"""

from __future__ import annotations


class SwapstationError(Exception):
    """Base of every error swapstation raises on purpose."""

    #: Key into :data:`controller.error_table.ERRORS`; each subclass names its own.
    code: str = "internal_error"

    def fields(self) -> dict[str, str]:
        """What an alarm's hint may name about this error (device, action, phase, pack...)."""
        return {}


class ConfigError(SwapstationError):
    """A station or scenario file is unusable. Names the file, the field and the reason."""

    code = "config_error"

    def __init__(self, path: str, field: str, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        where = f"{path}: {field}" if field else path
        super().__init__(f"{where}: {reason}")


class BusError(SwapstationError):
    """The broker could not be reached or a publish could not be confirmed."""

    code = "bus_error"


class BusDisconnected(BusError):
    """No broker connection right now; the bus is reconnecting with backoff."""

    code = "bus_disconnected"


class DeviceError(SwapstationError):
    """A hardware driver did not do what it was asked. ``code`` is the driver's error code
    (``failed`` when it gave none) or one the controller chose (``step_deadline``...)."""

    def __init__(self, device: str, action: str, code: str, detail: str = "") -> None:
        self.device = device
        self.action = action
        self.code = code
        self.detail = detail
        text = f"{device}.{action}: {code}"
        super().__init__(f"{text}: {detail}" if detail else text)

    def fields(self) -> dict[str, str]:
        return {"device": self.device, "action": self.action, "code": self.code}


class DeviceTimeout(DeviceError):
    """A driver did not accept or finish a command within its deadline."""


class DeviceFailed(DeviceError):
    """A driver reported that an action failed (with the driver's error code)."""


class DeviceOffline(DeviceError):
    """A driver's last will says it is offline."""


class InterlockOpen(SwapstationError):
    """A motion was refused because an interlock is open."""

    code = "interlock_open"

    def __init__(self, device: str, action: str, reasons: list[str]) -> None:
        self.device = device
        self.action = action
        self.reasons = list(reasons)
        super().__init__(f"{device}.{action} refused: " + "; ".join(self.reasons))

    def fields(self) -> dict[str, str]:
        return {"device": self.device, "action": self.action}


class PackLost(SwapstationError):
    """A driver reported a pack move done and the pack sensors do not show the pack there: a
    sensor mismatch on a pack (its place is whatever the sensors say, or unknown)."""

    code = "pack_lost"

    def __init__(
        self, pack_id: str, expected: str, seen: str, *, device: str = "arm", action: str
    ) -> None:
        self.pack_id = pack_id
        self.expected = expected
        self.seen = seen
        self.device = device
        self.action = action
        super().__init__(
            f"{device}.{action} reported done, but the sensors do not show pack {pack_id} at "
            f"{expected} (they report {seen})"
        )

    def fields(self) -> dict[str, str]:
        # the pack, where it should be and where it is are in the text: the sensor_mismatch
        # hint is shared with non-pack actions, so it names only the device and the action
        return {"device": self.device, "action": self.action}


class PhaseDeadlineExceeded(SwapstationError):
    """A swap phase ran past its configured deadline.

    ``awaiting`` names the driver steps (``device.action``) the phase was still waiting for
    when its time ran out, so the alarm says what to look at; empty when it was between steps.
    """

    code = "phase_deadline"

    def __init__(self, phase: str, deadline_s: float, awaiting: tuple[str, ...] = ()) -> None:
        self.phase = phase
        self.deadline_s = deadline_s
        self.awaiting = tuple(awaiting)
        text = f"phase {phase!r} exceeded its {deadline_s:g} s deadline"
        super().__init__(f"{text} waiting for {', '.join(awaiting)}" if awaiting else text)

    def fields(self) -> dict[str, str]:
        waiting = ", ".join(self.awaiting) or "no driver step (it was between steps)"
        return {"phase": self.phase, "waiting": waiting}


class CommandRefused(SwapstationError):
    """An operator command is not valid now. The reason goes into the reply verbatim."""

    code = "command_refused"

    def __init__(self, cmd: str, reason: str) -> None:
        self.cmd = cmd
        self.reason = reason
        super().__init__(f"{cmd}: {reason}")
