"""The backends the store contract runs against, and what its tests share.

A backend is a way to open a store at a place (the same place opens the same database
again, so tests can close and reopen it) and a way to read everything it keeps at rest
(for plaintext scans): the files of SQLite, a ``pg_dump`` of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from gateway.events import CallEvent, CallState, Direction
from gateway.models import Connection, TelephonyUser
from gateway.store.common import now_ms
from gateway.store.crypto import MasterKeyring
from gateway.store.protocols import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SQLiteStore

import pgdb

REMOTE, OTHER, LOCAL = "+4922112345678", "+4930987654321", "+4940111222333"
NAME, EMAIL = "Anna Agentin", "anna.agentin@example.com"
TENANT_USER = TelephonyUser("u1", NAME, EMAIL, "23", (LOCAL,))


@dataclass(frozen=True)
class Backend:
    name: str
    #: an open store at ``place`` (a directory of the test's own), closed on exit
    open: Callable[[Path, MasterKeyring], AbstractAsyncContextManager[Store]]
    #: every byte the backend keeps at rest for this store
    at_rest: Callable[[Store], bytes]


@contextlib.asynccontextmanager
async def _sqlite(place: Path, keyring: MasterKeyring) -> AsyncIterator[Store]:
    store = SQLiteStore(str(place / "store.db"), keyring)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _sqlite_files(store: Store) -> bytes:
    return b"".join(Path(p).read_bytes() for p in store.file_paths())


#: databases the PostgreSQL backend made for the running test (dropped after it)
CREATED: set[str] = set()


def _database_at(place: Path) -> str:
    return "callgate_test_" + hashlib.sha256(str(place).encode()).hexdigest()[:16]


@contextlib.asynccontextmanager
async def _postgres(place: Path, keyring: MasterKeyring) -> AsyncIterator[Store]:
    pgdb.require()
    name = await pgdb.create(_database_at(place))
    CREATED.add(name)
    store = PostgresStore(pgdb.dsn_of(name), keyring)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _postgres_dump(store: Store) -> bytes:
    assert isinstance(store, PostgresStore)
    return pgdb.dump(urlsplit(store.path).path.lstrip("/"))  # a server URL may carry a query


BACKENDS = {"sqlite": Backend("sqlite", _sqlite, _sqlite_files),
            "postgres": Backend("postgres", _postgres, _postgres_dump)}


def call_event(event_id: str, call_id: str = "c1", *, remote: str | None = REMOTE, local: str | None = None,
               user: str | None = None) -> CallEvent:
    """An inbound ringing event of ``call_id`` from ``remote``."""
    return CallEvent(event_id, call_id, Direction.INBOUND, CallState.RINGING, datetime.now(timezone.utc),
                     remote_number=remote, local_number=local, local_user=user)


async def tenant_with_connection(store: Store, tenant: str, *, sinks: tuple[str, ...] = ("crm",),
                                 plugin: str = "phone") -> Connection:
    """A new tenant with one connection of ``plugin`` and the given sinks bound."""
    await store.tenants.create(tenant)
    connection = await store.connections.add(Connection(store.connections.new_id(), tenant, plugin,
                                                        {"token": f"secret-of-{tenant}"}))
    for sink in sinks:
        await store.sinks.bind(tenant, sink, {"url": f"https://{tenant}.crm.example"})
    return connection


async def ingest(store: Store, connection: Connection, *events: CallEvent, at: int | None = None) -> None:
    await store.events.ingest(connection, list(events), now_ms() if at is None else at)
