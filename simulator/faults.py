"""Fault injection: ``DEVICE.ACTION:KIND[:PARAM][:once|:always]``.

A fault spec names the driver action it strikes and how. Specs come from ``--inject`` on the
command line, from a scenario file (``config/scenarios/*.yaml``) or at run time from the
``sim/control`` op ``inject``; all three parse through :func:`parse_fault`, so the grammar and
the error messages are the same everywhere. Examples: ``arm.lift:fail``, ``bay.unlock:hang``,
``rack.dock:slow`` (3x), ``rack.dock:slow:5:always``, ``arm.*:disconnect``.

``ACTION`` may be ``*`` (any action of the device except ``stop``). ``stop`` itself cannot be
faulted: it is the make-safe command and the controller's last resort.

A spec fires on the next matching command that the driver *accepts* (a command refused as
impossible does not consume it). ``once`` (the default) fires one time and is then spent;
``always`` fires on every matching command until cleared.

Kinds (what the driver does when the spec fires):

``fail``
    Answers ``accepted``, works for half the nominal time, then ``failed`` with error code
    ``injected_fault``. Nothing in the world changes (the drive faulted before moving).
``hang``
    Answers ``accepted`` and never answers again; the driver stays busy (new commands are
    refused ``busy``) until a ``stop``, which answers the hung command ``failed``/``stopped``.
``slow``
    Takes ``PARAM`` (a factor > 1, default 3) times the nominal time, then completes normally.
``disconnect``
    Half-way through the action the driver's connection drops without a DISCONNECT, so the
    broker publishes its last will (``offline``). The hardware finishes the action (the world
    changes), but the result is never delivered; after ``Simulator.reconnect`` the driver is
    online again, republishes its state and answers a repeated command id with the result.
``lie``
    Takes the nominal time and answers ``done``, but the world does not change; the state topic
    keeps telling the truth (e.g. the arm still at its old position, the pack still on the
    truck). For the queries ``identify`` and ``verify`` it skips the checks and answers ``done``
    with whatever it reads (``verify`` passes with the locks open or no pack).
``drop``
    Arm only (``move``, ``lift``, ``lower``). The arm loses the pack: during a ``move`` it falls
    half-way (the arm halts there), during ``lift`` it slips off as it is raised, during
    ``lower`` it falls instead of being set down. The pack's location becomes ``floor``, the arm
    reports ``fault`` and answers ``failed`` with error code ``pack_dropped``. A ``move`` with an
    empty gripper does not consume the spec.
``estop`` / ``light_curtain``
    As the action starts, the e-stop is pressed (the light curtain broken). The safety relay
    halts every running motion on every driver (``failed`` with error code ``estop`` /
    ``light_curtain``), including this one if it is a motion; a non-motion action carries on.
    The input stays tripped until released (``Simulator.set_estop(False)`` or ``sim/control``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from controller.contract import DEVICES, DRIVER_ACTIONS
from controller.errors import ConfigError

log = logging.getLogger(__name__)

FaultKind = Literal["fail", "hang", "slow", "disconnect", "lie", "drop", "estop", "light_curtain"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
Repeat = Literal["once", "always"]
DEFAULT_SLOW_FACTOR = 3.0
MAX_SLOW_FACTOR = 1000.0
DROP_ACTIONS = ("move", "lift", "lower", "*")
#: The error code a ``fail`` fault answers with.
INJECTED_FAULT = "injected_fault"


@dataclass(frozen=True)
class FaultSpec:
    """One parsed fault: which ``device.action`` it strikes, how, and how often."""

    device: str
    action: str
    kind: FaultKind
    factor: float = 1.0
    repeat: Repeat = "once"

    def matches(self, device: str, action: str) -> bool:
        return self.device == device and self.action in (action, "*") and action != "stop"

    def __str__(self) -> str:
        text = f"{self.device}.{self.action}:{self.kind}"
        if self.kind == "slow":
            text += f":{self.factor:g}"
        return text + ("" if self.repeat == "once" else f":{self.repeat}")


def parse_fault(spec: str, *, source: str = "fault spec") -> FaultSpec:
    """Parse ``DEVICE.ACTION:KIND[:PARAM][:once|:always]``.

    Raises:
        ConfigError: naming ``source``, the spec and what is wrong with it.
    """

    def bad(reason: str) -> ConfigError:
        return ConfigError(source, repr(spec), reason)

    if not isinstance(spec, str) or not spec.strip():
        raise bad("a fault spec is DEVICE.ACTION:KIND, e.g. arm.lift:fail")
    parts = spec.strip().split(":")
    if len(parts) < 2:
        raise bad("missing ':KIND'; a fault spec is DEVICE.ACTION:KIND, e.g. arm.lift:fail")
    target, kind, *rest = parts
    device, dot, action = target.partition(".")
    if not dot or not device or not action:
        raise bad(f"{target!r} is not DEVICE.ACTION, e.g. arm.lift")
    if device not in DEVICES:
        raise bad(f"unknown device {device!r}; devices: {', '.join(DEVICES)}")
    actions = sorted(a for a in DRIVER_ACTIONS[device] if a != "stop")
    if action == "stop":
        raise bad("'stop' cannot be faulted: it is the make-safe command")
    if not actions:
        raise bad(f"{device} has no action to fault (to take it offline: sim/control disconnect)")
    if action != "*" and action not in actions:
        raise bad(f"{device} has no action {action!r}; actions: {', '.join(actions) or 'none'}")
    if kind not in FAULT_KINDS:
        raise bad(f"unknown kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
    if kind == "drop" and (device != "arm" or action not in DROP_ACTIONS):
        raise bad("'drop' applies to the arm's move, lift and lower only")
    repeat: Repeat = "once"
    if rest and rest[-1] in ("once", "always"):
        repeat = "always" if rest.pop() == "always" else "once"
    factor = 1.0
    if kind == "slow":
        factor = DEFAULT_SLOW_FACTOR
        if rest:
            try:
                factor = float(rest.pop(0))
            except ValueError:
                raise bad("the slow factor must be a number, e.g. rack.dock:slow:3") from None
            if not 1.0 < factor <= MAX_SLOW_FACTOR:
                raise bad(f"the slow factor must be > 1 and <= {MAX_SLOW_FACTOR:g}")
    if rest:
        raise bad(f"unexpected {':'.join(rest)!r} (only 'slow' takes a parameter)")
    return FaultSpec(device=device, action=action, kind=kind, factor=factor, repeat=repeat)  # type: ignore[arg-type]


class FaultBook:
    """The armed fault specs of one simulator, consumed as drivers accept commands."""

    def __init__(self, specs: Iterable[str | FaultSpec] = ()) -> None:
        self._specs: list[FaultSpec] = []
        self._lock = threading.Lock()  # specs may be added from a CLI thread
        #: The specs that fired (with the command id), oldest first; the last 10,000 only.
        self.fired: deque[tuple[FaultSpec, str]] = deque(maxlen=10_000)
        for spec in specs:
            self.add(spec)

    def add(self, spec: str | FaultSpec, *, source: str = "fault spec") -> FaultSpec:
        parsed = spec if isinstance(spec, FaultSpec) else parse_fault(spec, source=source)
        with self._lock:
            self._specs.append(parsed)
        log.info("fault armed: %s", parsed)
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._specs.clear()

    @property
    def armed(self) -> list[FaultSpec]:
        with self._lock:
            return list(self._specs)

    def take(
        self,
        device: str,
        action: str,
        command_id: str,
        applies: Callable[[FaultSpec], bool] = lambda _: True,
    ) -> FaultSpec | None:
        """The first armed spec for ``device.action`` that ``applies``; spends a ``once`` spec."""
        with self._lock:
            for spec in self._specs:
                if spec.matches(device, action) and applies(spec):
                    if spec.repeat == "once":
                        self._specs.remove(spec)
                    self.fired.append((spec, command_id))
                    log.warning("fault fires: %s on command %s", spec, command_id)
                    return spec
        return None
