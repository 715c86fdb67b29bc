"""Simulated station hardware: MQTT peers of the contract sharing one physical world.

Never imported by runtime controller code (only by the CLI composition root and tests); it
imports only the contract, the bus, the clock, the config and the errors of ``controller``.
"""

from simulator.app import Simulator
from simulator.faults import FAULT_KINDS, FaultBook, FaultSpec, parse_fault
from simulator.scenario import Scenario, load_scenario
from simulator.world import World

__all__ = [
    "FAULT_KINDS",
    "FaultBook",
    "FaultSpec",
    "Scenario",
    "Simulator",
    "World",
    "load_scenario",
    "parse_fault",
]
