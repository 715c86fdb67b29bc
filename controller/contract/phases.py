"""The swap's phase plan, as data: the phases in order, the driver actions of each, what runs
concurrently, and the controller's own work a phase needs (named hooks).

Everything about the order of a swap reads this one table: the sequencer interprets it
(``controller/station/swap.py``), the station file's deadlines are checked against it
(``swap.phase_deadlines_s`` names its phases, ``swap.steps`` its steps), the console draws its
timeline from it, and the docs' phase table is generated from it (``python -m controller.docgen``).
Adding a phase is, in this module, a :class:`Phase` member and a :class:`PhasePlan` entry (and
for a new hook a :class:`Hook` member with its :data:`HOOK_PURPOSE`); the hook's behaviour in the
sequencer's ``HOOKS``; the phase's deadline in the station file; then ``make docs``.

It lives in the contract because consoles and integrators read it too: a phase name is what
``Status.phase`` and ``PhaseChanged`` carry on the wire. Which actions are motions and which
interlocks they need is not here (see ``MOTION_ACTIONS`` and ``controller/station/interlocks.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from controller.contract.drivers import DRIVER_ACTIONS


class Phase(StrEnum):
    """Swap phases in order (the order of :data:`PHASE_PLAN`, checked on import). ``waiting`` is
    execute mode with no truck stopped in the bay."""

    waiting = "waiting"
    identify = "identify"
    position = "position"
    prepare = "prepare"
    unlock = "unlock"
    remove = "remove"
    stow = "stow"
    fetch = "fetch"
    insert = "insert"
    lock = "lock"
    verify = "verify"
    release = "release"


class Place(StrEnum):
    """Where a pack is during a swap, named by its role; the sequencer resolves the slots and
    the vehicle it chose (``stow``: the free slot the truck's pack goes to; ``fetch``: the slot
    of the charged pack the truck gets)."""

    vehicle = "vehicle"
    gripper = "gripper"
    stow = "stow"
    fetch = "fetch"


class Pack(StrEnum):
    """The two packs of a swap: the truck's depleted pack and the charged one it leaves with."""

    outgoing = "outgoing"
    incoming = "incoming"


class Hook(StrEnum):
    """Work of the controller's own that a phase needs besides driver commands. The sequencer
    implements each (a test checks none is missing); :data:`HOOK_PURPOSE` says what each does."""

    record_vehicle = "record_vehicle"
    choose_slots = "choose_slots"
    take_charged_pack = "take_charged_pack"
    check_inserted_pack = "check_inserted_pack"


#: What each hook does, for the docs' phase table (one line each).
HOOK_PURPOSE: dict[Hook, str] = {
    Hook.record_vehicle: "reads the vehicle id and its pack from the identify result; the pack "
    "enters the ledger on the vehicle (no pack: the swap fails)",
    Hook.choose_slots: "chooses the best charged pack of the truck's type (none: the station is "
    "suspended, waiting for chargers) and a free slot to stow the truck's pack (none: fails)",
    Hook.take_charged_pack: "the pack in the fetch slot becomes the incoming pack (slot empty: "
    "the swap fails)",
    Hook.check_inserted_pack: "the pack the vehicle's BMS reports must be the one inserted "
    "(otherwise the swap fails)",
}

#: An argument of a step: a literal, or a :class:`Place` standing for that slot's number.
ArgValue = str | int | Place


@dataclass(frozen=True)
class PackMove:
    """A lift or lower moves ``pack`` from ``src`` to ``dst``: the sequencer journals the intent,
    acts, checks the sensors agree, and journals the outcome."""

    pack: Pack
    src: Place
    dst: Place


@dataclass(frozen=True)
class Step:
    """One driver action of a phase.

    ``moves``: the action moves a pack (journaled, sensors checked). ``carries``: an arm move
    with that pack in the gripper (the gripper must still report it after the move). ``then``:
    a hook that runs on the action's result data.
    """

    device: str
    action: str
    args: Mapping[str, ArgValue] = field(default_factory=dict)
    moves: PackMove | None = None
    carries: Pack | None = None
    then: Hook | None = None

    @property
    def key(self) -> str:
        """``device.action``: the key of this step's policy in the station file's ``swap.steps``."""
        return f"{self.device}.{self.action}"


@dataclass(frozen=True)
class PhasePlan:
    """One phase: its branches run concurrently, the steps of each in order. ``before`` runs
    inside the phase (under its deadline, after the gate let the phase begin), before the steps.
    The phase's deadline is ``swap.phase_deadlines_s[<phase>]`` in the station file."""

    phase: Phase
    branches: tuple[tuple[Step, ...], ...]
    before: Hook | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step, branch after branch."""
        return tuple(s for branch in self.branches for s in branch)


def do(device_action: str, *, then: Hook | None = None, **args: ArgValue) -> Step:
    """A step that is a plain driver action, e.g. ``do("rack.undock", slot=Place.fetch)``."""
    device, _, action = device_action.partition(".")
    return Step(device, action, args, then=then)


def lift(pack: Pack, src: Place) -> Step:
    """The arm lifts ``pack`` from ``src`` into the gripper."""
    return Step("arm", "lift", moves=PackMove(pack, src, Place.gripper))


def lower(pack: Pack, dst: Place) -> Step:
    """The arm lowers ``pack`` from the gripper onto ``dst``."""
    return Step("arm", "lower", moves=PackMove(pack, Place.gripper, dst))


def carry(pack: Pack, target: str, slot: Place | None = None) -> Step:
    """The arm moves to ``target`` (``slot``: that place's slot) with ``pack`` in the gripper."""
    args: dict[str, ArgValue] = {"target": target}
    if slot is not None:
        args["slot"] = slot
    return Step("arm", "move", args, carries=pack)


def alone(phase: Phase, *steps: Step, before: Hook | None = None) -> PhasePlan:
    """A phase whose steps run one after another."""
    return PhasePlan(phase, (steps,), before)


OUT, IN = Pack.outgoing, Pack.incoming

#: The swap, phase by phase. A tuple of branches runs them concurrently.
PHASE_PLAN: tuple[PhasePlan, ...] = (
    alone(Phase.identify, do("vehicle.identify", then=Hook.record_vehicle)),
    alone(Phase.position, do("bay.secure")),
    PhasePlan(
        Phase.prepare,
        (
            (do("door.open"), do("arm.move", target="vehicle")),
            (do("vehicle.hv_off"),),
            (do("rack.undock", slot=Place.fetch),),
        ),
        before=Hook.choose_slots,
    ),
    alone(Phase.unlock, do("bay.unlock")),
    alone(Phase.remove, lift(OUT, Place.vehicle)),
    alone(
        Phase.stow,
        carry(OUT, "slot", Place.stow),
        lower(OUT, Place.stow),
        do("rack.dock", slot=Place.stow),
    ),
    alone(
        Phase.fetch,
        do("arm.move", target="slot", slot=Place.fetch),
        lift(IN, Place.fetch),
        before=Hook.take_charged_pack,
    ),
    alone(Phase.insert, carry(IN, "vehicle"), lower(IN, Place.vehicle)),
    alone(Phase.lock, do("bay.lock")),
    PhasePlan(
        Phase.verify,
        (
            (do("vehicle.hv_on"), do("vehicle.verify", then=Hook.check_inserted_pack)),
            (do("arm.move", target="home"), do("door.close")),
        ),
    ),
    alone(Phase.release, do("bay.release")),
)

#: The swap phases in order (every :class:`Phase` but ``waiting``).
SWAP_PHASES: tuple[Phase, ...] = tuple(p.phase for p in PHASE_PLAN)
#: Each phase's plan, by phase.
PLAN_OF: dict[Phase, PhasePlan] = {p.phase: p for p in PHASE_PLAN}
#: Every ``device.action`` the plan uses: what ``swap.steps`` in the station file may name.
PLAN_STEP_KEYS: frozenset[str] = frozenset(s.key for p in PHASE_PLAN for s in p.steps)


def plan_problems(plan: tuple[PhasePlan, ...]) -> list[str]:
    """What is wrong with ``plan``: phases not in :class:`Phase` order, or unknown actions."""
    problems = []
    order = [p.phase for p in plan]
    if [Phase.waiting, *order] != list(Phase):
        problems.append(f"phases {[p.value for p in order]} are not the Phase enum after waiting")
    for p in plan:
        if not p.steps and p.before is None:
            problems.append(f"{p.phase.value}: no step and no hook")
        for s in p.steps:
            if s.action not in DRIVER_ACTIONS.get(s.device, {}):
                problems.append(f"{p.phase.value}: {s.key} is no driver action")
    return problems


if _problems := plan_problems(PHASE_PLAN):  # a broken plan must not load at all
    raise ValueError("PHASE_PLAN: " + "; ".join(_problems))


# ---- the plan as text (docs, console) -------------------------------------------------------


def _place_name(place: Place) -> str:
    return f"{place.value} slot" if place in (Place.stow, Place.fetch) else place.value


def _move_words(move: PackMove) -> str:
    pack = f"{move.pack.value} pack"
    if move.dst is Place.gripper:
        return f"{pack} from {_place_name(move.src)}"
    if move.src is Place.gripper:
        return f"{pack} onto {_place_name(move.dst)}"
    return f"{pack} from {_place_name(move.src)} to {_place_name(move.dst)}"


def describe_step(step: Step) -> str:
    """A step in words: ``door.open``, ``arm.move vehicle``, ``rack.undock fetch slot``,
    ``arm.lift outgoing pack from vehicle``, ``arm.move stow slot with the outgoing pack``, and
    ``→ [hook]`` for a hook on its result."""
    words = [step.key]
    for name, value in step.args.items():
        if isinstance(value, Place):
            words.append(_place_name(value))
        elif name == "target":
            if not (value == "slot" and "slot" in step.args):  # the slot's name says it
                words.append(str(value))
        else:
            words.append(f"{name}={value}")
    if step.moves is not None:
        words.append(_move_words(step.moves))
    if step.carries is not None:
        words.append(f"with the {step.carries.value} pack")
    if step.then is not None:
        words.append(f"→ [{step.then.value}]")
    return " ".join(words)


def describe_plan(plan: PhasePlan) -> str:
    """A phase's work in words: ``→`` in order, ``‖`` concurrently (a sequence among concurrent
    branches in parentheses), ``[hook]`` the controller's own work."""
    branches = [" → ".join(describe_step(s) for s in b) for b in plan.branches]
    if len(branches) > 1:
        branches = [f"({b})" if " → " in b else b for b in branches]
    work = " ‖ ".join(branches)
    if plan.before is not None:
        return f"[{plan.before.value}], then {work}" if work else f"[{plan.before.value}]"
    return work
