"""The one MQTT client wrapper. Only this package imports aiomqtt."""

from controller.bus.client import Bus, Handler, LastWill, PayloadTooLarge, parse_broker_url
from controller.bus.requests import PendingRequests

__all__ = ["Bus", "Handler", "LastWill", "PayloadTooLarge", "PendingRequests", "parse_broker_url"]
