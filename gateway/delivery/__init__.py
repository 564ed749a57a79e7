"""The delivery queue: durable rows in the store, scheduled in memory."""

from .deadletters import DeadLetters
from .dispatcher import RESCAN_INTERVAL, Dispatcher
from .shared import SharedDispatcher

__all__ = ["RESCAN_INTERVAL", "DeadLetters", "Dispatcher", "SharedDispatcher"]
