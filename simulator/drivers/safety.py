"""The safety relay: reports the e-stop and the light curtain; its only command is ``stop``.

The relay's inputs are physical (a button, a beam), so they are set on the simulator
(``Simulator.set_estop``, ``sim/control``), never by a command: a controller cannot release
an e-stop.
"""

from __future__ import annotations

from controller.contract import Message, SafetyState
from simulator.drivers.base import Driver


class SafetyDriver(Driver):
    device = "safety"

    def state(self) -> Message:
        return SafetyState(
            ts=self.clock.now(),
            estop_pressed=self.world.estop_pressed,
            light_curtain_broken=self.world.light_curtain_broken,
        )
