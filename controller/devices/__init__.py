"""Typed proxies for the hardware drivers, and the hub that holds them."""

from controller.devices.hub import Devices
from controller.devices.proxy import DeviceProxy

__all__ = ["DeviceProxy", "Devices"]
