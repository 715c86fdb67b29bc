"""Station modes and swap phases as transitions AsyncMachines.

The machines *validate and record*: which command is valid in which mode, which phase follows
which. Their callbacks are quick and synchronous in effect (they only notify the station); the
awaited I/O of a swap lives in the sequencer task, because transitions swallows cancellation of a
running trigger (upstream issues #704/#713).

Even quick callbacks leave transitions' own awaits, where a cancellation can land; transitions
then returns False as if nothing happened and the task runs on (a swap that would not stop hung a
shutdown in CI). Every trigger therefore goes through :func:`_trigger`, which re-raises such a
swallowed cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from transitions.extensions.asyncio import AsyncMachine

from controller.contract import COMMANDS, Mode, Phase

for _name in ("transitions", "transitions.core", "transitions.extensions.asyncio"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: (trigger, sources, destination), built from the command table: every mode change a command
#: makes (a command valid in its own destination mode is accepted there and changes nothing).
MODE_TRANSITIONS: list[tuple[str, list[str], str]] = [
    (spec.name, [source.value for source, _ in moves], moves[0][1].value)
    for spec in COMMANDS
    if (moves := spec.transitions())
]

#: Triggers only the station fires; operators cannot send them.
INTERNAL_TRIGGERS = frozenset(spec.name for spec in COMMANDS if not spec.operator)


async def _trigger(machine: AsyncMachine, trigger: str, model: object) -> bool:
    """Fire ``trigger`` on ``model``; a cancellation that transitions swallowed is raised again.

    A cancelled task counts its pending cancellations (``Task.cancelling``) until someone calls
    ``uncancel``; transitions catches the ``CancelledError`` without doing so, so a count higher
    after the trigger than before it is a cancellation that must still stop the task.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result: Any = await machine.events[trigger].trigger(model)
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError(f"cancelled during the {trigger!r} trigger")
    return bool(result)


class _Model:
    """The object transitions decorates with triggers; kept apart from our own methods."""

    state: str


class ModeMachine:
    """PackML-style station modes.

    Args:
        on_change: called with (new, previous) after every mode change.
    """

    def __init__(self, on_change: Callable[[Mode, Mode], None]) -> None:
        self._model = _Model()
        self._on_change = on_change
        self._previous = Mode.idle
        self._machine = AsyncMachine(
            model=self._model,
            states=[m.value for m in Mode],
            transitions=[{"trigger": t, "source": s, "dest": d} for t, s, d in MODE_TRANSITIONS],
            initial=Mode.idle.value,
            auto_transitions=False,
            queued="model",
            after_state_change=self._after,
        )

    @property
    def mode(self) -> Mode:
        return Mode(self._model.state)

    def can(self, trigger: str) -> bool:
        return trigger in self._machine.get_triggers(self._model.state)

    def transitions(self) -> set[tuple[str, str, str]]:
        """Every (trigger, source, destination) the machine knows, read back from it."""
        return {
            (name, t.source, str(t.dest))
            for name, event in self._machine.events.items()
            for ts in event.transitions.values()
            for t in ts
        }

    async def fire(self, trigger: str) -> bool:
        """Fire ``trigger``; False (and nothing changes) if it is not valid now."""
        if not self.can(trigger):
            return False
        return await _trigger(self._machine, trigger, self._model)

    async def _after(self, *_: Any) -> None:
        new = self.mode
        previous, self._previous = self._previous, new
        if new is not previous:
            self._on_change(new, previous)


class PhaseMachine:
    """The swap phases in their fixed order; ``waiting`` between swaps."""

    def __init__(self, on_change: Callable[[Phase, Phase], None]) -> None:
        self._model = _Model()
        self._on_change = on_change
        self._previous = Phase.waiting
        order: list[Any] = [p.value for p in Phase]
        self._machine = AsyncMachine(
            model=self._model,
            states=order,
            initial=Phase.waiting.value,
            auto_transitions=False,
            queued="model",
            after_state_change=self._after,
        )
        self._machine.add_ordered_transitions(order, trigger="next_phase", loop=True)
        self._machine.add_transition("end_swap", order, Phase.waiting.value)

    @property
    def phase(self) -> Phase:
        return Phase(self._model.state)

    async def advance(self, expected: Phase) -> None:
        """Move to ``expected``, which must be the next phase (guards the phase order)."""
        order = list(Phase)
        following = order[(order.index(self.phase) + 1) % len(order)]
        if following is not expected:
            raise RuntimeError(f"phase {expected.value} cannot follow {self.phase.value}")
        await _trigger(self._machine, "next_phase", self._model)

    async def end_swap(self) -> None:
        if self.phase is not Phase.waiting:
            await _trigger(self._machine, "end_swap", self._model)

    async def _after(self, *_: Any) -> None:
        new = self.phase
        previous, self._previous = self._previous, new
        if new is not previous:
            self._on_change(new, previous)


def mode_diagram() -> str:
    """The station modes as a mermaid state diagram, generated from :data:`MODE_TRANSITIONS`
    (``make docs`` writes it into docs/safety.md; a test fails when that copy is stale)."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for trigger, sources, dest in MODE_TRANSITIONS:
        lines += [f"    {source} --> {dest}: {trigger}" for source in sources]
    return "\n".join(lines)


def phase_diagram() -> str:
    """The swap phases in order, as a mermaid flowchart."""
    order = [p.value for p in Phase]
    steps = " --> ".join(order[1:])
    return f"flowchart LR\n    waiting --> {steps} --> waiting"
