"""One exception base for the whole product, with retryable vs fatal decided in one place.

Details travel as attributes, not only in the message, so callers (and the operator's reply)
can say exactly what went wrong without parsing strings.
"""

from __future__ import annotations


class SwapstationError(Exception):
    """Base of every error swapstation raises on purpose."""

    #: A retry of the same operation may succeed (a timeout, a dropped connection).
    retryable: bool = False


class ConfigError(SwapstationError):
    """A station or scenario file is unusable. Names the file, the field and the reason."""

    def __init__(self, path: str, field: str, reason: str) -> None:
        self.path = path
        self.field = field
        self.reason = reason
        where = f"{path}: {field}" if field else path
        super().__init__(f"{where}: {reason}")


class BusError(SwapstationError):
    """The broker could not be reached or a publish could not be confirmed."""

    retryable = True


class BusDisconnected(BusError):
    """No broker connection right now; the bus is reconnecting with backoff."""


class DeviceError(SwapstationError):
    """A hardware driver did not do what it was asked."""

    def __init__(self, device: str, action: str, code: str, detail: str = "") -> None:
        self.device = device
        self.action = action
        self.code = code
        self.detail = detail
        text = f"{device}.{action}: {code}"
        super().__init__(f"{text}: {detail}" if detail else text)


class DeviceTimeout(DeviceError):
    """A driver did not accept or finish a command within its deadline."""

    retryable = True


class DeviceFailed(DeviceError):
    """A driver reported that an action failed (with the driver's error code)."""


class DeviceOffline(DeviceError):
    """A driver's last will says it is offline."""

    retryable = True


class InterlockOpen(SwapstationError):
    """A motion was refused because an interlock is open. Never retried automatically."""

    def __init__(self, device: str, action: str, reasons: list[str]) -> None:
        self.device = device
        self.action = action
        self.reasons = list(reasons)
        super().__init__(f"{device}.{action} refused: " + "; ".join(self.reasons))


class PackLost(SwapstationError):
    """The sensors do not report a pack where a confirmed action should have put it."""

    code = "pack_lost"

    def __init__(self, pack_id: str, expected: str, seen: str, detail: str = "") -> None:
        self.pack_id = pack_id
        self.expected = expected
        self.seen = seen
        text = f"pack {pack_id}: expected at {expected}, sensors report {seen}"
        super().__init__(f"{text} ({detail})" if detail else text)


class PhaseDeadlineExceeded(SwapstationError):
    """A swap phase ran past its configured deadline."""

    def __init__(self, phase: str, deadline_s: float) -> None:
        self.phase = phase
        self.deadline_s = deadline_s
        super().__init__(f"phase {phase!r} exceeded its {deadline_s:g} s deadline")


class CommandRefused(SwapstationError):
    """An operator command is not valid now. The reason goes into the reply verbatim."""

    def __init__(self, cmd: str, reason: str) -> None:
        self.cmd = cmd
        self.reason = reason
        super().__init__(f"{cmd}: {reason}")


def is_retryable(exc: BaseException) -> bool:
    """The one place that decides whether an error may be retried."""
    return isinstance(exc, SwapstationError) and exc.retryable
