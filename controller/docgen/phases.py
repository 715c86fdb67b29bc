"""Generated sections drawn from the phase plan (:mod:`controller.contract.phases`): the phase
table, the steps and their policies, the phase order and its diagram; with the shipped station
file's numbers."""

from __future__ import annotations

from controller.config import load_config
from controller.contract.phases import HOOK_PURPOSE, PHASE_PLAN, describe_plan
from controller.phase_timing import nominal_phase_s
from controller.station.machine import phase_diagram


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def phase_table() -> str:
    """docs/architecture.md: each phase's steps, its deadline in the shipped station file, and
    its nominal seconds (every action at its simulated nominal time, moves to the farthest
    slot); then what each hook does."""
    cfg = load_config()
    nominal = nominal_phase_s(cfg)
    lines = [
        _row(
            "phase",
            "steps (`→` in order, `‖` concurrently, `[hook]` the controller's own work)",
            "deadline s",
            "nominal s",
        ),
        "|---|---|---:|---:|",
    ]
    for plan in PHASE_PLAN:
        deadline = cfg.swap.phase_deadlines_s[plan.phase.value]
        nominal_s = f"{nominal[plan.phase]:.1f}"
        lines.append(_row(plan.phase.value, describe_plan(plan), f"{deadline:g}", nominal_s))
    total = f"{sum(nominal.values()):.1f}"
    lines.append(_row("**swap**", f"budget {cfg.swap.budget_s:g} s", "", total))
    hooks = [f"- `{hook.value}`: {purpose}." for hook, purpose in HOOK_PURPOSE.items()]
    return "\n".join([*lines, "", "Hooks:", "", *hooks])


def phase_steps_table() -> str:
    """docs/architecture.md: every step of the plan, the phases that run it, and the policy the
    shipped station file gives it (``swap.steps``)."""
    policies = load_config().swap.steps
    phases: dict[str, list[str]] = {}
    for plan in PHASE_PLAN:
        for step in plan.steps:
            where = phases.setdefault(step.key, [])
            if plan.phase.value not in where:
                where.append(plan.phase.value)
    lines = [_row("step", "in phases", "deadline per attempt s", "retries"), "|---|---|---:|---:|"]
    for key, where in phases.items():
        policy = policies.get(key)
        deadline = f"{policy.deadline_s:g}" if policy and policy.deadline_s else "-"
        retries = str(policy.retries if policy else 0)
        lines.append(_row(f"`{key}`", ", ".join(where), deadline, retries))
    return "\n".join(lines)


def phase_order() -> str:
    """docs/mqtt-api.md: the swap phases in order, as one line of prose."""
    return " → ".join(f"`{plan.phase.value}`" for plan in PHASE_PLAN)


def phase_diagram_block() -> str:
    """docs/safety.md: the swap phases as a mermaid flowchart (the phase machine's drawing)."""
    return f"```mermaid\n{phase_diagram()}\n```"
