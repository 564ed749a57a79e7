"""The embedded store: SQLite in WAL mode, every commit fsync'd, assembled from its parts.

One :class:`~.database.SQLiteDatabase` (connections, group-commit writer, key cache) is
shared by one object per part of :class:`gateway.store.protocols.Store`; parts that need
each other get what they need when they are made, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..common import ms_to_dt, now_ms, phone_key
from ..crypto import MasterKeyring
from .accounts import SQLiteConnections, SQLiteSinks
from .audit import SQLiteAudit
from .clicktocall import SQLiteClickToCall
from .database import PRAGMAS, SQLiteDatabase
from .events import SQLiteEvents
from .journal import SQLiteJournal
from .leases import SQLiteLeases
from .records import SQLiteRecords
from .subjects import SQLiteSubjects
from .tenants import SQLiteTenants
from .users import SQLiteUsers

class SQLiteStore:
    """The store on one SQLite database (a file, or ``:memory:`` for nothing durable)."""

    #: one process serves a SQLite store (see :meth:`claim_serving`): nothing to share
    fleet = None

    def __init__(self, path: str, keyring: MasterKeyring) -> None:
        self.path = path
        self.keyring = keyring
        self.db = SQLiteDatabase(path, keyring)
        self.connections = SQLiteConnections(self.db)
        self.sinks = SQLiteSinks(self.db)
        self.users = SQLiteUsers(self.db)
        self.records = SQLiteRecords(self.db)
        self.leases = SQLiteLeases(self.db)
        self.subjects = SQLiteSubjects(self.db)
        self.audit = SQLiteAudit(self.db)
        self.clicktocall = SQLiteClickToCall(self.db)
        self.journal = SQLiteJournal(self.db)
        self.events = SQLiteEvents(self.db, restricted=self.subjects.restricted_keys,
                                   expiring=(("records", self.records.purge_batch),
                                             ("clicktocall", self.clicktocall.purge_batch),
                                             ("journal", self.journal.purge_batch)))
        self.tenants = SQLiteTenants(self.db, parts=(
            self.events, self.users, self.records, self.clicktocall, self.journal, self.sinks,
            self.connections, self.subjects, self.leases, self.audit))

    async def open(self) -> None:
        await self.db.open(self.events.insert_batch, self.events.after_ingest)

    async def close(self) -> None:
        try:
            if self.db.writer is not None:
                await self.audit.flush()
        finally:
            await self.db.close()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def checkpoint(self) -> None:
        await self.db.checkpoint()

    def claim_serving(self) -> None:
        self.db.claim_serving()

    def file_paths(self) -> list[str]:
        return self.db.file_paths()


if TYPE_CHECKING:
    from ..protocols import Store

    _implements: type[Store] = SQLiteStore

__all__ = ["PRAGMAS", "SQLiteDatabase", "SQLiteStore", "ms_to_dt", "now_ms", "phone_key"]
