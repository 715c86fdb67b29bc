"""The one MQTT client wrapper. Only this package imports aiomqtt."""

from controller.bus.client import Bus, Handler, LastWill, parse_broker_url
from controller.bus.requests import PendingRequests

__all__ = ["Bus", "Handler", "LastWill", "PendingRequests", "parse_broker_url"]
