"""Operator tools: pure MQTT clients of the contract (they never import the station)."""

from controller.console.client import OperatorClient

__all__ = ["OperatorClient"]
