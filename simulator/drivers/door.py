"""The door between the bay and the rack: open, closed, or somewhere in between.

It refuses to close on the arm (the arm standing in, or moving through, the door plane). A door
halted part-way is neither open nor closed: it is reported as ``stopped``.
"""

from __future__ import annotations

from typing import Any, Literal

from controller.contract import DoorState, Message
from simulator.drivers.action import Action, Prepare, Refusal
from simulator.drivers.base import Driver


class DoorDriver(Driver):
    device = "door"

    def state(self) -> Message:
        position = self.world.door
        return DoorState(
            ts=self.clock.now(),
            position="stopped" if position == "halted" else position,
            busy=self.busy,
            fault=self.fault,
        )

    def plan_open(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)
        return lambda: self._travel("open")

    def plan_close(self, args: dict[str, Any]) -> Prepare:
        self.check_args(args)

        def prepare() -> Action:
            if self.world.arm_in_doorway():
                raise Refusal("impossible", "the arm is in the doorway")
            return self._travel("closed")

        return prepare

    def _travel(self, to: Literal["open", "closed"]) -> Action:
        w = self.world
        before = w.door

        def begin() -> None:
            w.door = "moving"

        def halt(progress: float) -> None:
            w.door = before if progress <= 0.0 or before == to else "halted"

        def finish() -> dict[str, Any] | None:
            w.door = to
            return None

        return Action(finish=finish, begin=begin, halt=halt)
