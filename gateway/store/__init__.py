"""The encrypted store and the storage API that plugins get instead of SQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..config import is_postgres
from . import protocols
from .crypto import DecryptError, MasterKeyring, generate_master_key
from .records import DeadLetter, PendingDelivery
from .sqlite import SQLiteStore

#: What the core codes against: any backend implementing the store protocols.
Store = protocols.Store


def open_store(database: str, keyring: MasterKeyring) -> Store:
    """The backend for ``GATEWAY_DATABASE``: a ``postgresql://`` URL is the PostgreSQL store
    (several gateway processes may serve it), a path the embedded SQLite store."""
    if is_postgres(database):
        from .postgres import PostgresStore  # asyncpg is loaded only by those who use it
        return PostgresStore(database, keyring)
    return SQLiteStore(database, keyring)


class PluginStorage:
    """A plugin's own records for one tenant: encrypted, namespaced, blind-indexed.

    Records are JSON-ready values under ``(kind, key)``; both the key and the optional
    ``index`` value are stored only as keyed digests, the value only encrypted, so phone
    numbers and e-mails may be used as keys. ``call_record=True`` marks data about a call
    (CRM call ids, per-call state): the core deletes it with the call records when the
    retention period ends, so the plugin needs no purge code of its own for it. ``phones``
    names the people a record is about (E.164 numbers, stored only as blind indexes): the
    core's data-subject export and erasure then cover the record, so the plugin needs no
    code of its own for that either.
    """

    def __init__(self, store: protocols.Store, plugin: str, tenant: str) -> None:
        self._store = store
        self.plugin = plugin
        self.tenant = tenant

    async def put(self, kind: str, key: str, value: Any, *, index: str | None = None,
                  call_record: bool = False, phones: Iterable[str] = (), wait: bool = True) -> None:
        """Create or replace the record ``(kind, key)``.

        ``wait=False`` queues the write and returns at once: it commits in the same
        transaction as, or an earlier one than, whatever is stored after it, in particular
        the events a ``Source.receive`` returns. So per-call state written while parsing a
        webhook costs no commit of its own and is never behind the events it explains. Until
        it commits, ``get`` returns the queued value; ``find`` and ``all`` see it afterwards.
        ``phones`` replace those stored with an earlier version of the record.
        """
        if isinstance(phones, str):
            raise TypeError("phones is a sequence of numbers, not one number")
        await self._store.records.put(self.tenant, self.plugin, kind, key, value, index=index,
                                      call_record=call_record, phones=phones, wait=wait)

    async def get(self, kind: str, key: str) -> Any:
        """The record's value, or ``None`` when there is none."""
        return await self._store.records.get(self.tenant, self.plugin, kind, key)

    async def find(self, kind: str, index: str) -> list[tuple[str, Any]]:
        """All ``(key, value)`` of ``kind`` stored with this exact ``index`` value."""
        return await self._store.records.find(self.tenant, self.plugin, kind, index)

    async def all(self, kind: str) -> list[tuple[str, Any]]:
        """All ``(key, value)`` of ``kind``, oldest first."""
        return await self._store.records.find(self.tenant, self.plugin, kind)

    async def delete(self, kind: str, key: str | None = None) -> int:
        """Delete one record, or every record of ``kind`` when ``key`` is ``None``."""
        return await self._store.records.delete(self.tenant, self.plugin, kind, key)

    @contextlib.asynccontextmanager
    async def lease(self, name: str, *, ttl: float = 30.0, wait: float = 30.0) -> AsyncIterator[None]:
        """Hold a named lock for this tenant, also against other processes sharing the store.

        Use it for single-flight work such as refreshing a rotating OAuth token. Raises
        :class:`TimeoutError` when the lease cannot be had within ``wait`` seconds; a holder
        that dies loses it after ``ttl``.
        """
        full = f"{self.tenant}\x1f{self.plugin}\x1f{name}"
        holder = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.01
        while not await self._store.leases.acquire(full, holder, ttl):
            if loop.time() >= deadline:
                raise TimeoutError("lease is held by someone else")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            await self._store.leases.release(full, holder)


__all__ = ["open_store", "DeadLetter", "DecryptError", "MasterKeyring", "PendingDelivery", "PluginStorage",
           "Store", "generate_master_key"]
