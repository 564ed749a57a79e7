"""What every PostgreSQL part shares: the pools, the group-commit writer, the key cache, and
the notices that keep the caches of several processes on one database true.

Reads go through a pool. Writes that must keep their order with queued plugin records go
through the writer (one transaction per batch, ``synchronous_commit=on``: a commit is on
disk before anyone is told). Coordination between processes (lane leases, rate budgets)
uses a pool of its own with ``synchronous_commit=off``: a lease lost in a server crash only
costs a repeated delivery, never data, and it needs no flush of its own.

Caches (tenant keys, connections, sink bindings) are per process. A process that changes
what another may have cached notifies every process on the database (``NOTIFY`` inside the
changing transaction, so it arrives only once committed); a process that lost its listening
connection trusts no cache until it has it back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import asyncpg

from ...config import public_dsn
from ...errors import NotFound, StoreError
from ..crypto import MasterKeyring, TenantKeys
from .schema import migrate
from ..batching import AfterCommit
from .writer import IngestFn, PostgresWriter

log = logging.getLogger("gateway.store")

T = TypeVar("T")
#: The channel on which processes tell each other which tenant's cached values went stale.
CHANNEL = "callgate_cache"
#: The database's clock in milliseconds since the epoch: leases of processes on different
#: machines must agree on what "expired" means.
NOW_MS = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
class TenantRows(Protocol):
    """A part that keeps rows or cached values of tenants: tenant removal goes through it."""

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        """In the removal's transaction: delete the tenant's rows; return how many per table."""

    def forget(self, tenant: str) -> None:
        """Drop whatever of the tenant is cached in memory."""


def count(status: str) -> int:
    """The row count of a command status (``DELETE 3`` -> 3)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresDatabase:
    """One PostgreSQL database: pools, writer, listener, tenants' keys."""

    def __init__(self, dsn: str, keyring: MasterKeyring, *, pool_size: int = 8) -> None:
        self.dsn = dsn
        self.keyring = keyring
        self.pool_size = pool_size
        #: names this process in lane leases and job leases
        self.owner = secrets.token_hex(8)
        self.writer: PostgresWriter | None = None
        self._pool: asyncpg.Pool | None = None
        self._coord: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._keys: dict[str, TenantKeys] = {}
        self._forgetters: list[Callable[[str | None], None]] = []
        #: changes with every notice: a value read before a change must not be cached after it
        self.epoch = 0
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------------

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, server_settings={"application_name": "callgate", **settings})

    async def open(self, ingest: IngestFn, after_ingest: AfterCommit | None) -> None:
        """Connect, migrate, start the writer and the listener."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size,
                server_settings={"application_name": "callgate", "synchronous_commit": "on"})
            async with self._pool.acquire() as conn:
                await migrate(conn)
            self._coord = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=4,
                server_settings={"application_name": "callgate", "synchronous_commit": "off"})
            writer = PostgresWriter(lambda: self._connect(synchronous_commit="on"), ingest, after_ingest)
            await writer.start()
            self.writer = writer
            await self._listen()
        except StoreError:  # the database is newer than this gateway: said by migrate
            await self.close()
            raise
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise StoreError(f"cannot open the PostgreSQL database {public_dsn(self.dsn)}: "
                             f"{why(exc)}") from None

    async def close(self) -> None:
        self._closing = True
        try:
            if self.writer is not None:
                await self.writer.stop()
                self.writer = None
        finally:
            if self._listen_task is not None:
                self._listen_task.cancel()
                await asyncio.gather(self._listen_task, return_exceptions=True)
                self._listen_task = None
            for pool in (self._coord, self._pool):
                if pool is not None:
                    await pool.close()
            self._coord = self._pool = None
            if self._listener is not None and not self._listener.is_closed():
                await self._listener.close()
            self._listener = None

    @property
    def w(self) -> PostgresWriter:
        if self.writer is None:
            raise StoreError("store is not open")
        return self.writer

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    @property
    def coord(self) -> asyncpg.Pool:
        """Connections for coordination between processes (no flush per commit)."""
        if self._coord is None:
            raise StoreError("store is not open")
        return self._coord

    async def ping(self) -> bool:
        return bool(await self.pool.fetchval("SELECT 1", timeout=5))

    # --- reads -----------------------------------------------------------------------------

    async def all(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(sql, *args))

    async def one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(sql, *args)

    async def write(self, job: Callable[[asyncpg.Connection], Awaitable[T]], *, background: bool = False) -> T:
        """Run ``job`` in the writer's next transaction; return its result once committed."""
        return await self.w.run(job, background=background)

    async def execute(self, sql: str, *args: Any) -> int:
        """One statement in the writer's next transaction; the number of rows it changed."""
        async def job(conn: asyncpg.Connection) -> int:
            return count(await conn.execute(sql, *args))
        return await self.write(job)

    # --- caches and notices ----------------------------------------------------------------

    def on_forget(self, forget: Callable[[str | None], None]) -> None:
        """Call ``forget(tenant)`` when another process changed the tenant (``None``: all)."""
        self._forgetters.append(forget)

    @property
    def caching(self) -> bool:
        """Whether caches may keep values: only while notices of changes can arrive."""
        return self._listener is not None and not self._listener.is_closed()

    def cache(self, epoch: int) -> bool:
        """Whether a value read since ``epoch`` may be cached (nothing changed meanwhile)."""
        return self.caching and epoch == self.epoch

    @staticmethod
    async def notify(conn: asyncpg.Connection, tenant: str) -> None:
        """Tell every process (once this transaction commits) that ``tenant`` changed."""
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant)

    def _forget(self, tenant: str | None) -> None:
        self.epoch += 1
        if tenant is None:
            self._keys.clear()
        else:
            self._keys.pop(tenant, None)
        for forget in self._forgetters:
            forget(tenant)

    def _on_notice(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._forget(str(payload))

    def _on_lost(self, conn: object) -> None:
        self._forget(None)  # notices may have been missed: trust no cache
        if not self._closing and (self._listen_task is None or self._listen_task.done()):
            self._listen_task = asyncio.get_event_loop().create_task(self._relisten(), name="store-listen")

    async def _listen(self) -> None:
        listener = await self._connect()
        listener.add_termination_listener(self._on_lost)
        await listener.add_listener(CHANNEL, self._on_notice)
        self._listener = listener
        self._forget(None)

    async def _relisten(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                await self._listen()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- tenant keys -----------------------------------------------------------------------

    async def keys(self, tenant: str) -> TenantKeys:
        """The tenant's unwrapped keys, cached while no process says the tenant changed."""
        cached = self._keys.get(tenant)
        if cached is not None:
            return cached
        epoch = self.epoch
        row = await self.pool.fetchrow("SELECT key_id, wrapped_key FROM tenants WHERE id=$1", tenant)
        if row is None:
            raise NotFound("unknown tenant")
        keys = TenantKeys(tenant, self.keyring.unwrap(tenant, row[0], row[1]))
        if self.cache(epoch):
            self._keys[tenant] = keys
        return keys

    def forget_keys(self, tenant: str) -> None:
        self._keys.pop(tenant, None)


def why(exc: BaseException) -> str:
    """Why the database could not be reached, without anything from the DSN."""
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "the database does not exist"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return "authentication failed"
    if isinstance(exc, OSError):
        return exc.strerror or "connection refused"
    return type(exc).__name__
