"""All six driver proxies, with typed access to their states and a way to wait for a state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from controller.aio import Changes
from controller.bus import Bus
from controller.clock import Clock
from controller.contract import (
    DEVICES,
    ArmState,
    BayState,
    DoorState,
    RackState,
    SafetyState,
    Topics,
    VehicleState,
)
from controller.devices.proxy import BadInput, CommandSent, DeviceProxy

S = TypeVar("S")


class Devices:
    """The controller's proxies for every driver of the station."""

    def __init__(
        self,
        *,
        bus: Bus,
        topics: Topics,
        clock: Clock,
        ack_timeout_s: float,
        on_bad_input: BadInput,
        on_command: CommandSent | None = None,
        patient: Callable[[], bool] | None = None,
    ) -> None:
        self._changed = Changes()
        self._listeners: list[Callable[[str], None]] = []
        self.proxies: dict[str, DeviceProxy] = {
            d: DeviceProxy(
                d,
                bus=bus,
                topics=topics,
                clock=clock,
                ack_timeout_s=ack_timeout_s,
                on_bad_input=on_bad_input,
                on_command=on_command,
                on_change=self._notify,
                patient=patient,
            )
            for d in DEVICES
        }

    async def attach(self) -> None:
        for proxy in self.proxies.values():
            await proxy.attach()

    def __getitem__(self, device: str) -> DeviceProxy:
        return self.proxies[device]

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(device)`` after any driver's state or liveness changed."""
        self._listeners.append(listener)

    def _notify(self, device: str) -> None:
        for listener in self._listeners:
            listener(device)
        self._changed.notify()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait (real seconds) until ``predicate()`` holds; re-checked on every state change."""
        return await self._changed.wait_until(predicate, timeout_s)

    async def resend_inflight(self) -> int:
        """Re-send every unfinished command (same ids; drivers execute an id once)."""
        sent = 0
        for proxy in self.proxies.values():
            sent += await proxy.resend_inflight()
        return sent

    def forget_liveness(self) -> None:
        """After losing the broker, nobody's liveness is known until they announce it again
        (the broker may have restarted without the retained flags or firing any will)."""
        for proxy in self.proxies.values():
            proxy.online = None

    def offline(self) -> list[str]:
        """Drivers not known to be online (offline or never heard of)."""
        return [d for d, p in self.proxies.items() if p.online is not True]

    def _typed(self, device: str, kind: type[S]) -> S | None:
        state: Any = self.proxies[device].state
        return state if isinstance(state, kind) else None

    @property
    def arm(self) -> ArmState | None:
        return self._typed("arm", ArmState)

    @property
    def bay(self) -> BayState | None:
        return self._typed("bay", BayState)

    @property
    def door(self) -> DoorState | None:
        return self._typed("door", DoorState)

    @property
    def rack(self) -> RackState | None:
        return self._typed("rack", RackState)

    @property
    def vehicle(self) -> VehicleState | None:
        return self._typed("vehicle", VehicleState)

    @property
    def safety(self) -> SafetyState | None:
        return self._typed("safety", SafetyState)
