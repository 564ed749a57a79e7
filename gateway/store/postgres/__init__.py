"""The store on PostgreSQL (asyncpg): any number of gateway processes on one database.

The same parts, encryption and blind indexes as the SQLite store (the sealing is shared, so
``gateway migrate`` copies ciphertexts as they are); what several processes need on top
(lane leases, rate budgets) is the :class:`~.fleet.PostgresFleet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..crypto import MasterKeyring
from .accounts import PostgresConnections, PostgresSinks
from .audit import PostgresAudit
from .clicktocall import PostgresClickToCall
from ...config import public_dsn
from .database import PostgresDatabase
from .events import PostgresEvents
from .fleet import PostgresFleet
from .journal import PostgresJournal
from .leases import PostgresLeases
from .records import PostgresRecords, nothing
from .subjects import PostgresSubjects
from .tenants import PostgresTenants
from .users import PostgresUsers


class PostgresStore:
    """The store on one PostgreSQL database, shared by every gateway process that opens it."""

    def __init__(self, dsn: str, keyring: MasterKeyring) -> None:
        self.path = public_dsn(dsn)
        self.keyring = keyring
        self.db = PostgresDatabase(dsn, keyring)
        self.connections = PostgresConnections(self.db)
        self.sinks = PostgresSinks(self.db)
        self.users = PostgresUsers(self.db)
        self.records = PostgresRecords(self.db)
        self.leases = PostgresLeases(self.db)
        self.subjects = PostgresSubjects(self.db)
        self.audit = PostgresAudit(self.db)
        self.clicktocall = PostgresClickToCall(self.db)
        self.journal = PostgresJournal(self.db)
        self.events = PostgresEvents(self.db, restricted=self.subjects.restricted_keys,
                                     expiring=(("records", self.records.purge_batch),
                                               ("clicktocall", self.clicktocall.purge_batch),
                                               ("journal", self.journal.purge_batch)))
        self.tenants = PostgresTenants(self.db, parts=(
            self.events, self.users, self.records, self.clicktocall, self.journal, self.sinks,
            self.connections, self.subjects, self.leases, self.audit))
        self.fleet = PostgresFleet(self.db)

    async def open(self) -> None:
        await self.db.open(self.events.insert_batch, self.events.after_ingest)
        await self.fleet.repair()

    async def close(self) -> None:
        try:
            if self.db.writer is not None:
                await self.audit.flush()
        finally:
            await self.db.close()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def checkpoint(self) -> None:
        """Let queued writes land. Nothing else to do: no file of the server ever held a
        person's data in plaintext (it is encrypted before it is sent), and what a removed
        tenant left in dead rows is ciphertext under a destroyed key, reclaimed by vacuum."""
        await self.db.write(nothing)

    def claim_serving(self) -> None:
        """Any number of processes may serve a PostgreSQL store: they share it through the fleet."""

    def file_paths(self) -> list[str]:
        return []


if TYPE_CHECKING:
    from ..protocols import Store

    _implements: type[Store] = PostgresStore

__all__ = ["PostgresStore"]
