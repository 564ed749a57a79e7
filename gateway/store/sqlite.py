"""The embedded store: SQLite in WAL mode, every commit fsync'd, assembled from its parts.

Each part holds one area (accounts, calls, directory, plugin data, data subjects, audit) on
the shared foundation in :mod:`.base`; a PostgreSQL twin will implement the same methods.
"""

from __future__ import annotations

from .accounts import AccountsPart
from .auditlog import AuditPart
from .base import PRAGMAS, StoreBase, ms_to_dt, now_ms, phone_key
from .calls import CallsPart
from .plugin_data import PluginDataPart
from .subjects import SubjectsPart


class SQLiteStore(AccountsPart, CallsPart, SubjectsPart, PluginDataPart, AuditPart):
    """The store behind one interface."""


__all__ = ["PRAGMAS", "SQLiteStore", "StoreBase", "ms_to_dt", "now_ms", "phone_key"]
