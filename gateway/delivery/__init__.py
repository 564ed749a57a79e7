"""The delivery queue: durable rows in the store, scheduled in memory."""

from .dispatcher import RESCAN_INTERVAL, Dispatcher

__all__ = ["RESCAN_INTERVAL", "Dispatcher"]
