"""The delivery queue: durable rows in the store, scheduled in memory."""

from .dispatcher import Dispatcher

__all__ = ["Dispatcher"]
