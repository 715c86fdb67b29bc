"""Example payloads of every message, built from the models.

They appear in the AsyncAPI document (:mod:`controller.contract.export`) and in
docs/mqtt-api.md, and tests/test_contract.py round-trips each one and checks that the page shows
them, so an example that stops validating fails a test, not a reader's driver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel

from controller.contract.bay import BaySituation
from controller.contract.common import AlarmInfo, PackInfo, Severity
from controller.contract.drivers import (
    ArmState,
    BayState,
    DoorState,
    DriverCommand,
    DriverResult,
    IdentifyData,
    RackSlotState,
    RackState,
    SafetyState,
    SimControl,
    SimWorld,
    VehicleInBay,
    VehicleState,
    VerifyData,
    WorldPack,
)
from controller.contract.operator import (
    AlarmRaised,
    Alarms,
    CommandHandled,
    ErrorEvent,
    History,
    Inventory,
    Mode,
    ModeChanged,
    OperatorCommand,
    PhaseChanged,
    Reply,
    Status,
    SwapFinished,
    SwapRecord,
    VehicleArrived,
)
from controller.contract.phases import Phase
from controller.contract.results import ReconcileChange, ReconcileReport
from controller.contract.topics import OFFLINE, ONLINE, Topics

#: Name of the plain-text liveness message (``online`` / ``offline``), the one non-JSON payload.
LIVENESS: Final = "Liveness"

#: The station id of every example.
STATION: Final = "cq-changshou-01"


def example_payloads(station: str = STATION) -> dict[str, list[BaseModel | str]]:
    """Valid payloads of every message, keyed by AsyncAPI message name.

    One station's morning: swap 42 is in ``stow`` and the arm holds the depleted pack at
    slot 7; before it, swap 40 was aborted and swap 41 completed in budget. Alarm A00007 was
    raised, and the broker user ``operator`` acknowledged it on ``cmd/operator``.
    """
    s, ts = station, datetime(2025, 5, 12, 8, 31, 4, 250000, tzinfo=UTC)
    swap_id, vehicle = "SW-20250512-0042", "CQ-HT-0427"
    # fmt: off
    full = PackInfo(id="P-1002", type="HT-282", soc=0.95, health=0.97, capacity_kwh=282)
    flat = PackInfo(id="P-2291", type="HT-282", soc=0.14, health=0.93, temperature_c=31.5,
                    capacity_kwh=282)
    p1001 = PackInfo(id="P-1001", type="HT-282", soc=0.97, capacity_kwh=282)
    slots = [
        RackSlotState(slot=1, pack=p1001, docked=True, charger_kw=240, charging_kw=48.0),
        RackSlotState(slot=2, pack=full, docked=False, charger_kw=240),
        RackSlotState(slot=7, charger_kw=240),
        RackSlotState(slot=8, charger_kw=240),
    ]
    phases = {"identify": 2.1, "position": 8.3, "prepare": 12.6, "unlock": 6.1, "remove": 10.2,
              "stow": 24.8, "fetch": 20.9, "insert": 20.4, "lock": 6.0, "verify": 12.5,
              "release": 5.1}
    aborted = SwapRecord(
        swap_id="SW-20250512-0040", vehicle_id="CQ-HT-0188", result="aborted",
        duration_s=14.2, budget_s=180, in_budget=False,
        phases={"identify": 2.3, "position": 11.9}, pack_out=None, pack_in=None,
        queued_s=0.0, manoeuvre_s=26.4, reason="aborted by operator",
        started_at=datetime(2025, 5, 12, 8, 21, 2, tzinfo=UTC),
        ended_at=datetime(2025, 5, 12, 8, 21, 16, 200000, tzinfo=UTC))
    record = SwapRecord(
        swap_id="SW-20250512-0041", vehicle_id="CQ-HT-0311", result="completed",
        duration_s=129.0, budget_s=180, in_budget=True, phases=phases, pack_out=flat,
        pack_in=full, queued_s=12.0, manoeuvre_s=23.1,
        started_at=datetime(2025, 5, 12, 8, 26, 10, tzinfo=UTC),
        ended_at=datetime(2025, 5, 12, 8, 28, 19, tzinfo=UTC))
    # What the controller raises for PhaseDeadlineExceeded("stow", 50, ("arm.move",)) (the
    # error table's hint; tests/test_error_table.py keeps the two equal).
    alarm = AlarmInfo(id="A00007", code="phase_deadline", severity=Severity.error, raised_at=ts,
                      text="phase 'stow' exceeded its 50 s deadline waiting for arm.move",
                      hint="Phase stow ran past its deadline waiting for arm.move; the devices "
                      "the swap used were told to stop: find what held it up. Then send ack "
                      "(this alarm) and clear; if the swap was cut short, enter maintenance, "
                      "finish it by hand (manual moves; set_location for a pack whose place is "
                      "unknown) and leave_maintenance; then reset.")
    in_bay = VehicleInBay(plate=vehicle, stopped=True, queued_s=41.0, manoeuvre_s=24.6,
                          position_error_mm=12.0)
    arm_cmd, vehicle_cmd, lift_cmd = "arm-17-5081.204", "vehicle-9-5021.882", "arm-18-5112.730"
    verify_cmd = "vehicle-11-5140.067"
    ack_args = {"alarm_id": alarm.id}
    identified = IdentifyData(vehicle_id=vehicle, pack=flat).model_dump(mode="json")
    verified = VerifyData(pack=full).model_dump(mode="json")
    # The bay at that moment, as the station reads it from the driver states below (a test
    # checks it is exactly what controller.station.bay.read_bay makes of them).
    mid_stow = BaySituation(
        truck_in_bay=True, vehicle_id=vehicle, secured=True, pack_on_truck=None,
        pack_locked=False, hv_on=False, door="open", arm_position="slot:7", gripper=flat.id,
        undocked_slots=[2],
        not_normal=[f"truck {vehicle} is clamped in the bay", f"truck {vehicle} has no pack",
                    f"truck {vehicle}'s HV is off", f"truck {vehicle}'s pack locks are open",
                    "the door is open", f"the gripper holds pack {flat.id}",
                    "the arm is at slot:7, not home",
                    "slot 2 holds a pack that is not docked (not charging)"],
        normal=False,
    )
    # The restart story of reconcile (docs/operations.md): the journal's view, the sensors'.
    preview = ReconcileReport(applied=False, consistent_after=True, changes=[
        ReconcileChange(pack_id="P-2291", ledger="departed:CQ-HT-0288", sensors=["slot:1"],
                        action="adopt", to="slot:1", why="the journal had it gone"),
        ReconcileChange(pack_id="TP-00417", ledger="slot:7", sensors=[], action="gone",
                        to="departed:unknown",
                        why="the sensors see it nowhere and it is not on the truck in the bay")])
    shelved = alarm.model_copy(update={
        "id": "A00009", "code": "driver_offline", "severity": Severity.error,
        "text": "door driver offline",
        "hint": "The door driver is offline: restore it (power, network, its process). The "
                "station moves nothing that needs it meanwhile and holds a swap under way. This "
                "alarm returns to normal by itself when the driver is online again, and leaves "
                "the list once acknowledged: ack it (before or after) to record that you saw "
                "it. Then resume a held swap (resume is refused while a driver is offline).",
        "shelved_until": datetime(2025, 5, 12, 9, 31, 4, 250000, tzinfo=UTC),
        "shelved_by": "operator", "shelve_reason": "door driver being replaced"})
    rtn = shelved.model_copy(update={
        "id": "A00008", "text": "arm driver offline",
        "hint": (shelved.hint or "").replace("The door driver", "The arm driver"),
        "active": False, "cleared_at": datetime(2025, 5, 12, 8, 33, 0, tzinfo=UTC),
        "shelved_until": None, "shelved_by": None, "shelve_reason": None})
    shelve_args = {"alarm_id": "A00009", "minutes": 60, "reason": "door driver being replaced"}
    return {
        "OperatorCommand": [OperatorCommand(id="op-7f3a", cmd="start", ts=ts),
                            OperatorCommand(id="op-7f3b", cmd="hold", ts=ts),
                            OperatorCommand(id="op-7f3d", cmd="ack", args=ack_args, ts=ts),
                            OperatorCommand(id="op-7f3e", cmd="manual", ts=ts,
                                            args={"device": "door", "action": "close",
                                                  "args": {}}),
                            OperatorCommand(id="op-7f3f", cmd="set_location", ts=ts,
                                            args={"pack_id": "P-2291", "location": "slot:7"}),
                            OperatorCommand(id="op-7f40", cmd="reconcile", ts=ts),
                            OperatorCommand(id="op-7f41", cmd="reconcile", ts=ts,
                                            args={"adopt": "P-2291,TP-00417"}),
                            OperatorCommand(id="op-7f42", cmd="shelve", args=shelve_args, ts=ts)],
        "Reply": [Reply(id="op-7f3a", ok=True, cmd="start", mode=Mode.execute, ts=ts),
                  Reply(id="op-7f3c", ok=False, cmd="reset", mode=Mode.execute, ts=ts,
                        error="not valid in mode execute, only in stopped; valid now: hold, "
                              "estop, abort, ack"),
                  Reply(id="op-7f40", ok=True, cmd="reconcile", mode=Mode.idle, ts=ts,
                        result=preview.model_dump(mode="json"))],
        "Status": [Status(station=s, mode=Mode.execute, phase=Phase.stow, swap_id=swap_id,
                          vehicle_id=vehicle, elapsed_s=61.4, budget_s=180, phase_elapsed_s=9.2,
                          phase_deadline_s=50, queue_length=1, active_alarms=0,
                          swaps_completed=41, bay=mid_stow, ts=ts)],
        "Inventory": [Inventory(station=s, slots=list(slots),
                                gripper=flat, vehicle_id=vehicle, swappable_soc=0.9,
                                consistent=True, ts=ts)],
        "Alarms": [Alarms(station=s, alarms=[alarm.model_copy(update={"acknowledged": True})],
                          ts=ts),
                   Alarms(station=s, alarms=[rtn], shelved=[shelved], ts=ts),
                   Alarms(station=s, alarms=[], ts=ts)],
        "History": [History(station=s, swaps=[aborted, record], ts=ts)],
        "PhaseChanged": [PhaseChanged(station=s, swap_id=swap_id, phase=Phase.stow,
                                      previous=Phase.remove, elapsed_s=52.2,
                                      previous_phase_s=10.2, ts=ts)],
        "ModeChanged": [ModeChanged(station=s, mode=Mode.held, previous=Mode.execute,
                                    reason="held by operator", ts=ts)],
        "AlarmRaised": [AlarmRaised(station=s, alarm=alarm, ts=ts)],
        "VehicleArrived": [VehicleArrived(station=s, swap_id=swap_id, plate="YU-D20427",
                                          queued_s=41.0, manoeuvre_s=24.6, ts=ts)],
        "CommandHandled": [CommandHandled(station=s, id="op-7f3d", cmd="ack", args=ack_args,
                                          sender="operator", ok=True, ts=ts),
                           CommandHandled(station=s, id="op-7f3c", cmd="reset", ok=False, ts=ts,
                                          error="not valid in mode execute, only in stopped; "
                                                "valid now: hold, estop, abort, ack")],
        "SwapFinished": [SwapFinished(station=s, record=record, ts=ts)],
        "ErrorEvent": [ErrorEvent(station=s, source="controller", topic=Topics(s).cmd, ts=ts,
                                  error="schema: cmd: Field required",
                                  payload_excerpt='{"id": "op-9"}'),
                       ErrorEvent(station=s, source="arm", topic=Topics(s).driver_cmd("arm"),
                                  error="schema: action: Field required", ts=ts,
                                  payload_excerpt='{"id": "arm-19-5120.001", "args": {}}'),
                       ErrorEvent(station=s, source="simulator", topic=Topics(s).sim_control,
                                  error="schema: op: Field required", ts=ts,
                                  payload_excerpt='{"args": {"count": 3}}')],
        "DriverCommand": [
            DriverCommand(id=arm_cmd, action="move", args={"target": "slot", "slot": 7}, ts=ts),
            DriverCommand(id=vehicle_cmd, action="identify", ts=ts)],
        "DriverResult": [
            DriverResult(id=arm_cmd, device="arm", action="move", status="accepted", ts=ts),
            DriverResult(id=arm_cmd, device="arm", action="move", status="done", ts=ts),
            DriverResult(id=vehicle_cmd, device="vehicle", action="identify", status="done",
                         data=identified, ts=ts),
            DriverResult(id=verify_cmd, device="vehicle", action="verify", status="done",
                         data=verified, ts=ts),
            DriverResult(id=lift_cmd, device="arm", action="lift", status="failed",
                         error_code="busy", error=f"busy with move (command {arm_cmd})", ts=ts)],
        "ArmState": [ArmState(position="slot:7", holding=flat, ts=ts)],
        "BayState": [BayState(vehicle=in_bay, secured=True, pack_locked=False, queue_length=1,
                              ts=ts)],
        "DoorState": [DoorState(position="open", ts=ts)],
        "RackState": [RackState(slots=slots, ts=ts)],
        "VehicleState": [VehicleState(connected=True, vehicle_id=vehicle, hv_on=False, ts=ts)],
        "SafetyState": [SafetyState(estop_pressed=False, ts=ts)],
        LIVENESS: [ONLINE, OFFLINE],
        "SimControl": [SimControl(op="arrive", args={"count": 3}, ts=ts),
                       SimControl(op="estop", args={"pressed": True}, ts=ts)],
        "SimWorld": [SimWorld(packs=[WorldPack(pack=p1001, location="slot:1"),
                                     WorldPack(pack=full, location="slot:2"),
                                     WorldPack(pack=flat, location="gripper")], ts=ts)],
    }
    # fmt: on
