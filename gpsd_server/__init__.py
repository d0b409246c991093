"""gpsd-server: real-time GPS monitoring for an urban-management control room."""

__version__ = "0.1.0"
