"""``swapctl recover``: after a swap was cut short, see the bay and the plans, and run one.

Without ``--run`` it prints what the status says: the bay's situation and each plan with its
steps (or why there is no such plan). With ``--plan finish|give-back --run`` it sends ``recover``
commands (the station must be in maintenance): the whole plan after one confirmation, or with
``--step`` one step per confirmation, re-reading the proposal after each (a plan is computed from
where things are now). Exit 0 when the bay is normal again; 1 when a plan is refused, a step
fails or the bay is still not normal; 2 no status / no broker.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime

from controller.cli.commands import connect
from controller.console.client import OperatorClient
from controller.contract import Status
from controller.contract.bay import RecoveryPlan, RecoveryProposal

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2
#: Real seconds a driver action may take before swapctl stops waiting for the reply.
STEP_WAIT_S = 120.0

Confirm = Callable[[str], bool]


def plan_text(plan: RecoveryPlan) -> str:
    lines = [f"plan {plan.name}: {plan.summary}"]
    for n, step in enumerate(plan.steps, 1):
        args = " ".join(f"{k}={v}" for k, v in step.args.items())
        lines.append(f"  {n:2d}. {step.device}.{step.action} {args}".rstrip() + f"  ({step.why})")
    return "\n".join(lines)


def situation_text(status: Status) -> str:
    bay, proposal = status.bay, status.recovery
    if bay is None:
        return "bay: not reported (an older controller?)"
    if bay.normal:
        return "bay: normal (nothing to recover)"
    lines = ["bay: NOT NORMAL", *(f"  - {what}" for what in bay.not_normal)]
    if proposal is None:
        lines.append("no plans while a swap is under way")
        return "\n".join(lines)
    if proposal.swap_id:
        lines.append(f"cut-short swap {proposal.swap_id}, the truck's own pack {proposal.own_pack}")
    lines += [plan_text(p) for p in proposal.plans]
    lines += [f"no {name} plan: {why}" for name, why in proposal.unavailable.items()]
    return "\n".join(lines)


async def recover(
    op: OperatorClient,
    *,
    plan: str | None,
    run: bool,
    step: bool,
    as_json: bool,
    timeout_s: float,
    confirm: Confirm,
) -> int:
    if not await connect(op, timeout_s):
        return EXIT_UNAVAILABLE
    try:
        await op.wait_for(lambda: op.status is not None, timeout_s)
        if op.status is None:
            print("swapctl: no status from the station", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if not run:
            _show(op.status, as_json=as_json)
            return EXIT_OK
        assert plan is not None
        return await _run(op, plan.replace("-", "_"), step=step, confirm=confirm)
    finally:
        await op.stop()


def _show(status: Status, *, as_json: bool) -> None:
    if as_json:
        data = {
            "bay": status.bay.model_dump(mode="json") if status.bay else None,
            "recovery": status.recovery.model_dump(mode="json") if status.recovery else None,
        }
        print(json.dumps(data, indent=2))
    else:
        print(situation_text(status))


async def _run(op: OperatorClient, name: str, *, step: bool, confirm: Confirm) -> int:
    """Send the plan (or its next step, until the bay is normal); the exit code."""
    while True:
        status = op.status
        assert status is not None
        if status.bay is not None and status.bay.normal:
            print("bay: normal")
            return EXIT_OK
        failed = await _send(op, status, name, step=step, confirm=confirm)
        if failed is not None:
            print(failed)
            return EXIT_FAILED
        if not step:
            bay = op.status.bay if op.status else None
            if bay is not None and bay.normal:
                print("bay: normal")
                return EXIT_OK
            print("bay still not normal: " + "; ".join(bay.not_normal if bay else ["?"]))
            return EXIT_FAILED


async def _send(
    op: OperatorClient, status: Status, name: str, *, step: bool, confirm: Confirm
) -> str | None:
    """One ``recover`` command after confirmation; what went wrong, or None."""
    chosen = _plan(status.recovery, name)
    if isinstance(chosen, str):
        return f"refused: {chosen}"
    todo = chosen.steps[:1] if step else chosen.steps
    print(plan_text(chosen))
    what = f"step 1: {todo[0].device}.{todo[0].action}" if step else f"all {len(todo)} steps"
    if not confirm(f"run {what} of plan {name}?"):
        return "not confirmed: nothing sent"
    args: dict[str, object] = {"plan": name} | ({"steps": 1} if step else {})
    reply = await op.command("recover", args, timeout_s=STEP_WAIT_S * len(todo))
    if reply is None or not reply.ok:
        return f"refused: recover: {reply.error if reply else 'no reply'}"
    await op.wait_for(_newer_than(op, status.ts), 10.0)
    return None


def _newer_than(op: OperatorClient, ts: datetime) -> Callable[[], bool]:
    """A status published after ``ts`` has arrived (it shows the step's effect)."""
    return lambda: op.status is not None and op.status.ts > ts


def _plan(proposal: RecoveryProposal | None, name: str) -> RecoveryPlan | str:
    if proposal is None:
        return "no plans now (a swap is under way, or the bay is normal)"
    for plan in proposal.plans:
        if plan.name == name:
            return plan
    return f"no {name} plan: {proposal.unavailable.get(name, 'unknown plan')}"
