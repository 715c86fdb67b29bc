"""swapstation: a controller for battery-swap stations for electric heavy trucks."""

__version__ = "0.1.0"
