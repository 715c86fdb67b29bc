"""The sequencer: station modes, swap phases, interlocks, deadlines and the budget."""

from controller.station.commands import CommandHandler
from controller.station.station import Station

__all__ = ["CommandHandler", "Station"]
