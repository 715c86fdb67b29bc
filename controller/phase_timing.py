"""Nominal seconds of each swap phase: the phase plan's steps at the station file's simulated
action timings (``simulator.actions``, moves over ``simulator.layout``).

One computation for every estimate of a swap's duration: the docs' phase table, the check that a
nominal swap leaves slack in the 180 s budget and that every phase fits its deadline
(``tests/test_config.py``), and where the chaos test aims its kills. A phase takes its slowest
branch; a branch, the sum of its steps; hooks take no time. The arm's moves are followed through
the plan from ``home``; a move to a slot the swap chooses (``stow``, ``fetch``) is taken at its
longest over the candidate slots given (by default every slot of the rack: the worst case).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from controller.config import StationConfig
from controller.contract.phases import PHASE_PLAN, Phase, Place, Step

#: Where the arm may be: every rail position it could be at, in metres.
Positions = frozenset[float]


def nominal_phase_s(
    cfg: StationConfig,
    *,
    slots: Mapping[Place, Collection[int]] | None = None,
    jitter: bool = False,
) -> dict[Phase, float]:
    """Nominal station seconds of each phase of the plan, in order.

    Args:
        slots: the candidate slot numbers of ``Place.stow`` and ``Place.fetch`` (default: every
            slot of the rack for both).
        jitter: every action at its slowest (``nominal * (1 + jitter)``).
    """
    every_slot = [s.slot for s in cfg.rack.slots]
    chosen = {Place.stow: every_slot, Place.fetch: every_slot} | dict(slots or {})
    arm = _Arm(cfg, chosen, jitter=jitter)
    return {p.phase: max(sum(arm.seconds(s) for s in b) for b in p.branches) for p in PHASE_PLAN}


class _Arm:
    """Follows the arm along the plan and prices each step."""

    def __init__(
        self, cfg: StationConfig, slots: Mapping[Place, Collection[int]], *, jitter: bool
    ) -> None:
        self._sim = cfg.simulator
        lay = self._sim.layout
        self._places: dict[str, Positions] = {
            "home": frozenset({lay.home_m}),
            "vehicle": frozenset({lay.vehicle_m}),
        }
        for place, numbers in slots.items():
            metres = {lay.first_slot_m + (n - 1) * lay.slot_pitch_m for n in numbers}
            self._places[place.value] = frozenset(metres)
        self._at = self._places["home"]
        self._jitter = jitter

    def seconds(self, step: Step) -> float:
        timing = self._sim.actions[step.key]
        seconds = timing.nominal_s
        if step.key == "arm.move":
            target = self._target(step)
            seconds += timing.per_m_s * max(abs(a - b) for a in self._at for b in target)
            self._at = target
        return seconds * (1 + timing.jitter) if self._jitter else seconds

    def _target(self, step: Step) -> Positions:
        slot = step.args.get("slot")
        if step.args.get("target") == "slot":
            if not isinstance(slot, Place):
                raise ValueError(f"{step.key}: a slot the plan does not name: {slot!r}")
            return self._places[slot.value]
        return self._places[str(step.args.get("target"))]
