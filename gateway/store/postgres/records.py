"""Plugins' own encrypted records, with the blind-indexed phone numbers they are about."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from ..common import phone_key
from ..queued import QueuedRecords
from ..sealed import index_key, open_record, open_records, record_key
from .database import PostgresDatabase, count

#: (tenant, plugin, kind, record key): a record's identity in SQL
RecordId = tuple[str, str, str, str]
_IDS = "unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r(tenant, plugin, kind, record_key)"
_SAME = "p.tenant = r.tenant AND p.plugin = r.plugin AND p.kind = r.kind AND p.record_key = r.record_key"


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (the arrays a multi-row ``unnest`` statement takes)."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i in range(width):
            cols[i].append(row[i])
    return cols


async def replace_phones(conn: asyncpg.Connection, latest: dict[RecordId, frozenset[str]]) -> None:
    """Make these records' phones the given ones (none: forget them); write only what changed."""
    if not latest:
        return
    keep = [(*record, p) for record, pkeys in latest.items() for p in sorted(pkeys)]
    await conn.execute(
        f"DELETE FROM record_phones p USING {_IDS} WHERE {_SAME} AND NOT EXISTS (SELECT 1 FROM "
        "unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) AS k(tenant, plugin, kind, "
        "record_key, phone_key) WHERE k.tenant = p.tenant AND k.plugin = p.plugin AND k.kind = p.kind "
        "AND k.record_key = p.record_key AND k.phone_key = p.phone_key)",
        *_columns(latest, 4), *_columns(keep, 5))
    if keep:
        await conn.execute(
            "INSERT INTO record_phones (tenant, plugin, kind, record_key, phone_key) SELECT * FROM "
            "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
            *_columns(keep, 5))


class PostgresRecords:
    """Plugins' own records. Writes queued with ``wait=False`` are readable before they commit."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._queued = QueuedRecords()

    async def put(self, tenant: str, plugin: str, kind: str, key: str, value: Any, *,
                  index: str | None = None, call_record: bool = False,
                  phones: Iterable[str] = (), wait: bool = True) -> None:
        await self._queued.put(self._db.w, self._write, await self._db.keys(tenant), (tenant, plugin, kind, key),
                               value, index=index, call_record=call_record, phones=phones, wait=wait)

    @staticmethod
    async def _write(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Upsert queued records in one statement (the last put of a record wins), replace
        their phones."""
        latest: dict[RecordId, tuple[Any, ...]] = {}
        for row in rows:
            first = latest.get(row[:4])
            latest[row[:4]] = row if first is None else (*row[:7], first[7], row[8])
        await conn.execute(
            "INSERT INTO records (tenant, plugin, kind, record_key, data, index_key, call_record, created_at) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], "
            "$7::int[], $8::bigint[]) ON CONFLICT (tenant, plugin, kind, record_key) DO UPDATE SET "
            "data=excluded.data, index_key=excluded.index_key, call_record=excluded.call_record",
            *_columns(latest.values(), 8))
        await replace_phones(conn, {record: row[8] for record, row in latest.items()})

    async def get(self, tenant: str, plugin: str, kind: str, key: str) -> Any:
        queued, value = self._queued.get((tenant, plugin, kind, key))
        if queued:
            return value
        keys = await self._db.keys(tenant)
        rkey = record_key(keys, plugin, kind, key)
        row = await self._db.one(
            "SELECT data FROM records WHERE tenant=$1 AND plugin=$2 AND kind=$3 AND record_key=$4",
            tenant, plugin, kind, rkey)
        return open_record(keys, plugin, kind, rkey, row[0])[1] if row else None

    async def find(self, tenant: str, plugin: str, kind: str, index: str | None = None) -> list[tuple[str, Any]]:
        keys = await self._db.keys(tenant)
        ikey = index_key(keys, plugin, kind, index) if index is not None else None
        rows = await self._db.all(
            "SELECT record_key, data FROM records WHERE tenant=$1 AND plugin=$2 AND kind=$3 "
            "AND ($4::text IS NULL OR index_key=$4) ORDER BY created_at", tenant, plugin, kind, ikey)
        return await open_records(keys, plugin, kind, rows)

    async def delete(self, tenant: str, plugin: str, kind: str, key: str | None = None) -> int:
        keys = await self._db.keys(tenant)
        self._queued.drop(tenant, plugin, kind, key)
        rkey = record_key(keys, plugin, kind, key) if key is not None else None
        where = "tenant=$1 AND plugin=$2 AND kind=$3 AND ($4::text IS NULL OR record_key=$4)"

        async def job(conn: asyncpg.Connection) -> int:
            await conn.execute(f"DELETE FROM record_phones WHERE {where}", tenant, plugin, kind, rkey)
            return count(await conn.execute(f"DELETE FROM records WHERE {where}", tenant, plugin, kind, rkey))
        return await self._db.write(job)

    async def by_phone(self, tenant: str, phone: str) -> list[tuple[str, str, str, Any]]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return []
        await self._db.write(nothing)  # records queued before this call land first
        rows = await self._db.all(
            "SELECT r.plugin, r.kind, r.record_key, r.data FROM record_phones p JOIN records r ON "
            "r.tenant = p.tenant AND r.plugin = p.plugin AND r.kind = p.kind AND r.record_key = p.record_key "
            "WHERE p.tenant=$1 AND p.phone_key=$2 ORDER BY r.plugin, r.kind, r.created_at", tenant, pkey)
        return [(r[0], r[1], *open_record(keys, r[0], r[1], r[2], r[3])) for r in rows]

    async def delete_by_phone(self, tenant: str, phone: str) -> dict[str, int]:
        keys = await self._db.keys(tenant)
        pkey = phone_key(keys, phone)
        if pkey is None:
            return {}
        self._queued.drop(tenant, phone_key=pkey)  # it commits before the job below, which deletes it

        async def job(conn: asyncpg.Connection) -> dict[str, int]:
            found: list[RecordId] = [(r[0], r[1], r[2], r[3]) for r in await conn.fetch(
                "SELECT tenant, plugin, kind, record_key FROM record_phones WHERE tenant=$1 AND phone_key=$2",
                tenant, pkey)]
            await replace_phones(conn, dict.fromkeys(found, frozenset()))
            counts: dict[str, int] = {}
            for (plugin,) in await conn.fetch(
                    f"DELETE FROM records p USING {_IDS} WHERE {_SAME} RETURNING p.plugin", *_columns(found, 4)):
                counts[plugin] = counts.get(plugin, 0) + 1
            return counts
        return await self._db.write(job)

    @staticmethod
    async def purge_batch(cutoff_ms: int, limit: int, conn: asyncpg.Connection) -> int:
        """Delete up to ``limit`` call records created before the cutoff, with their phones."""
        rows = await conn.fetch("SELECT tenant, plugin, kind, record_key FROM records "
                                "WHERE call_record=1 AND created_at < $1 LIMIT $2", cutoff_ms, limit)
        found: list[RecordId] = [(r[0], r[1], r[2], r[3]) for r in rows]
        await replace_phones(conn, dict.fromkeys(found, frozenset()))
        return count(await conn.execute(f"DELETE FROM records p USING {_IDS} WHERE {_SAME}", *_columns(found, 4)))

    async def delete_tenant_rows(self, conn: asyncpg.Connection, tenant: str) -> dict[str, int]:
        await conn.execute("DELETE FROM record_phones WHERE tenant=$1", tenant)
        return {"records": count(await conn.execute("DELETE FROM records WHERE tenant=$1", tenant))}

    def forget(self, tenant: str | None) -> None:
        self._queued.drop(tenant)


async def nothing(conn: asyncpg.Connection) -> None:
    """A job that writes nothing: awaiting it waits for what was queued before."""
