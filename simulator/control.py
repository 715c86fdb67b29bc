"""``sim/control``: drive the simulated world over MQTT (not part of a real station).

The same things a test does in-process, for a simulator running in another process
(``swapctl sim``). Ops and their args (a :class:`~controller.contract.SimControl` payload):

=================  ==========================  =============================================
op                 args                        effect
=================  ==========================  =============================================
``estop``          ``pressed: bool`` (true)    press / release the e-stop
``light_curtain``  ``broken: bool`` (true)     break / restore the light curtain
``arrive``         ``count: int`` (1)          trucks join the queue
``inject``         ``spec: str``               arm a fault spec (``arm.lift:fail``)
``clear_faults``   (none)                      disarm every fault spec
``disconnect``     ``device: str``             drop the driver's connection (last will fires)
``reconnect``      ``device: str``             bring it back
=================  ==========================  =============================================

Anything else (bad JSON, wrong schema, unknown op, bad args, a bad fault spec) is answered with
an :class:`~controller.contract.ErrorEvent` (source ``simulator``) on the station's ``events``
topic and changes nothing. There is no reply topic: effects show on the state topics.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controller.contract import DEVICES, PayloadError, SimControl, decode
from controller.errors import ConfigError
from simulator.traffic import MAX_ARRIVALS

if TYPE_CHECKING:
    from simulator.app import Simulator

log = logging.getLogger(__name__)

CONTROL_OPS = (
    "estop",
    "light_curtain",
    "arrive",
    "inject",
    "clear_faults",
    "disconnect",
    "reconnect",
)


class ControlError(Exception):
    """A ``sim/control`` payload that cannot be used; ``reason`` goes into the error event."""

    def __init__(self, reason: str, excerpt: str = "") -> None:
        self.reason = reason
        self.excerpt = excerpt
        super().__init__(reason)


def parse_control(payload: bytes) -> SimControl:
    try:
        return decode(SimControl, payload)
    except PayloadError as exc:
        raise ControlError(exc.reason, exc.excerpt) from None


def _only(control: SimControl, *allowed: str) -> dict[str, Any]:
    unknown = sorted(set(control.args) - set(allowed))
    if unknown:
        raise ControlError(f"{control.op}: unexpected argument(s) {unknown}")
    return control.args


def _flag(control: SimControl, name: str) -> bool:
    value = _only(control, name).get(name, True)
    if not isinstance(value, bool):
        raise ControlError(f"{control.op}: {name} must be true or false, got {value!r}")
    return value


def _device(control: SimControl) -> str:
    device = _only(control, "device").get("device")
    if device not in DEVICES:
        raise ControlError(f"{control.op}: device must be one of {list(DEVICES)}, got {device!r}")
    return str(device)


async def apply_control(sim: Simulator, control: SimControl) -> None:
    """Carry out one control op on ``sim``; raise :class:`ControlError` if it is unusable."""
    op = control.op
    log.info("sim/control %s %s", op, control.args)
    if op == "estop":
        await sim.set_estop(_flag(control, "pressed"))
    elif op == "light_curtain":
        await sim.set_light_curtain(_flag(control, "broken"))
    elif op == "arrive":
        count = _only(control, "count").get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_ARRIVALS:
            raise ControlError(f"arrive: count must be an integer 1..{MAX_ARRIVALS}, got {count!r}")
        await sim.arrive(count)
    elif op == "inject":
        spec = _only(control, "spec").get("spec")
        if not isinstance(spec, str):
            raise ControlError(f"inject: spec must be a string like 'arm.lift:fail', got {spec!r}")
        try:
            sim.inject(spec)
        except ConfigError as exc:
            raise ControlError(f"inject: {exc}") from None
    elif op == "clear_faults":
        _only(control)
        sim.faults.clear()
    elif op == "disconnect":
        await sim.disconnect(_device(control))
    elif op == "reconnect":
        # connecting may take a while; do not hold up the control client's dispatch
        sim.spawn(sim.reconnect(_device(control)), f"sim:reconnect:{control.args['device']}")
    else:
        raise ControlError(f"unknown op {op!r}; ops: {', '.join(CONTROL_OPS)}")
