"""The delivery queue: durable rows in the store, scheduled in memory."""

from .deadletters import DeadLetters
from .dispatcher import RESCAN_INTERVAL, Dispatcher

__all__ = ["RESCAN_INTERVAL", "DeadLetters", "Dispatcher"]
