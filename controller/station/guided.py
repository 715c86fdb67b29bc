"""Guided recovery: after a swap was cut short, the ways out, and running one step by step.

The station proposes plans (:mod:`controller.station.recovery_plan`) from where the hardware is
now; an operator in maintenance picks one and runs it with the ``recover`` command, a step or
all of it at a time. Each step goes through the same hands as a ``manual`` action (interlocks,
journaled pack moves that follow the sensors), so a plan can never do what a person at the
console could not. A step that fails stops the plan with an alarm; the next status proposes new
plans from wherever the failure left things. When the truck has been released with the plan's
pack, the cut-short swap's record says how it ended (``recovery``) and which pack the truck
left with, so billing is right.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from controller.config import RackConfig
from controller.contract import PackInfo, SwapRecord, VerifyData
from controller.contract.bay import BaySituation, RecoveryPlan, RecoveryProposal
from controller.devices import Devices
from controller.errors import CommandRefused, SwapstationError
from controller.station.alarms import AlarmBook
from controller.station.recovery_plan import no_plan, propose
from controller.store import Store

log = logging.getLogger(__name__)

#: Runs one driver action by hand (``Station.manual``): interlocks, journaled pack moves.
Hands = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


class GuidedRecovery:
    """The swap that was cut short, the plans out of it, and the running of one."""

    def __init__(
        self,
        *,
        devices: Devices,
        rack: RackConfig,
        store: Store,
        alarms: AlarmBook,
        hands: Hands,
        history_changed: Callable[[], None],
    ) -> None:
        self._devices = devices
        self._rack = rack
        self._store = store
        self._alarms = alarms
        self._hands = hands
        self._history_changed = history_changed
        #: The last swap that ended without a truck leaving normally, until it is recovered.
        self.cut_short: SwapRecord | None = None
        #: The pack the truck's BMS confirmed in the plan's verify step.
        self._verified: PackInfo | None = None

    def load(self) -> None:
        """After a restart: the journal's last swap, if it was cut short and not recovered."""
        last = self._store.swaps(1)
        if last and last[0].result != "completed" and last[0].recovery is None:
            self.cut_short = last[0]

    def swap_ended(self, record: SwapRecord) -> None:
        self.cut_short = None if record.result == "completed" else record
        self._verified = None

    def after_halt(self, situation: BaySituation) -> None:
        """A halt with a truck in the bay and things out of place leaves ``truck_stranded``,
        naming them (the operator's way out: the plans, or by hand)."""
        if situation.truck_in_bay and not situation.normal:
            text = "swap cut short; not in its normal place: " + "; ".join(situation.not_normal)
            self._alarms.raise_("truck_stranded", text[:1000])

    @staticmethod
    def standing(situation: BaySituation) -> frozenset[str]:
        """``truck_stranded`` outlives a reset while a truck is in the bay, not normal."""
        stranded = situation.truck_in_bay and not situation.normal
        return frozenset({"truck_stranded"}) if stranded else frozenset()

    def proposal(self, situation: BaySituation) -> RecoveryProposal | None:
        """The plans out, when the bay is not normal and a truck is in it; None otherwise."""
        if situation.normal:
            return None
        own = self._own_pack()
        swap_id = self.cut_short.swap_id if self.cut_short else None
        d = self._devices
        if d.arm is None or d.bay is None or d.door is None or d.rack is None or d.vehicle is None:
            why = "the state of " + ", ".join(situation.unknown or ["a device"]) + " is unknown"
            return RecoveryProposal(swap_id=swap_id, own_pack=own, unavailable=no_plan(why))
        plans, why_not = propose(
            arm=d.arm, bay=d.bay, door=d.door, rack=d.rack, vehicle=d.vehicle,
            rack_config=self._rack, own_pack=own,
            verified=self._verified.id if self._verified else None,
        )  # fmt: skip
        return RecoveryProposal(swap_id=swap_id, own_pack=own, plans=plans, unavailable=why_not)

    async def run(self, situation: BaySituation, name: str, steps: int | None) -> str:
        """Run ``steps`` steps (all if None) of plan ``name`` as proposed now; say what was done.

        Raises:
            CommandRefused: no such plan now (with why), or a step failed (an alarm says which).
        """
        proposal = self.proposal(situation)
        plan = next((p for p in proposal.plans if p.name == name), None) if proposal else None
        if plan is None:
            why = (proposal.unavailable.get(name) if proposal else None) or "the bay is normal"
            raise CommandRefused("recover", f"no {name} plan now: {why}")
        todo = plan.steps[: steps or len(plan.steps)]
        for n, step in enumerate(todo, 1):
            await self._step(plan, n, step.device, step.action, step.args)
        if todo[-1].action == "release":
            self._recovered(plan)
            return f"{plan.name}: done; the truck left with pack {plan.pack_for_truck}"
        return f"{plan.name}: {len(todo)} of {len(plan.steps)} step(s) done"

    async def _step(
        self, plan: RecoveryPlan, n: int, device: str, action: str, args: dict[str, Any]
    ) -> None:
        try:
            data = await self._hands(device, action, dict(args))
            if action == "verify":
                verified = VerifyData.model_validate(data).pack
                if verified.id != plan.pack_for_truck:
                    raise CommandRefused(
                        "recover",
                        f"the BMS reports pack {verified.id!r}, not {plan.pack_for_truck!r}",
                    )
                self._verified = verified
        except SwapstationError as exc:
            text = f"recovery plan {plan.name}, step {n} {device}.{action} failed: {exc}"
            self._alarms.raise_(
                "recovery_failed", text, {"device": device, "action": action, "plan": plan.name}
            )
            raise CommandRefused("recover", text) from exc

    def _recovered(self, plan: RecoveryPlan) -> None:
        record = self.cut_short
        self.cut_short = None
        if record is None:
            return
        updated = record.model_copy(update={"recovery": plan.name, "pack_in": self._verified})
        self._store.record_swap(updated)
        self._history_changed()
        log.info("swap %s recovered: %s", record.swap_id, plan.summary)

    def _own_pack(self) -> str | None:
        record = self.cut_short
        return record.pack_out.id if record is not None and record.pack_out else None
