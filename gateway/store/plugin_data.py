"""Plugins' own encrypted records, and leases for single-flight work across processes."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import orjson

from .base import StoreBase, _dumps, log, now_ms
from .crypto import TenantKeys

_PUT_RECORD = (
    "INSERT INTO records (tenant, plugin, kind, record_key, data, index_key, call_record, created_at) "
    "VALUES {rows} ON CONFLICT (tenant, plugin, kind, record_key) DO UPDATE SET "
    "data=excluded.data, index_key=excluded.index_key, call_record=excluded.call_record")


class PluginDataPart(StoreBase):
    """Plugins' own encrypted records, and leases for single-flight work across processes."""

    # --- plugin records --------------------------------------------------------------------

    async def put_record(self, tenant: str, plugin: str, kind: str, key: str, data: Any, *,
                         index: str | None = None, call_record: bool = False, wait: bool = True) -> None:
        keys = await self.keys(tenant)
        rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
        blob = keys.encrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", _dumps({"key": key, "data": data}))
        ikey = keys.blind_index(f"index\x1f{plugin}\x1f{kind}", index) if index is not None else None

        fut = self.w.submit_upsert_nowait(_PUT_RECORD, (tenant, plugin, kind, rkey, blob, ikey, int(call_record),
                                                        now_ms()))
        if wait:
            await asyncio.shield(fut)
            return
        slot = (tenant, plugin, kind, key)
        self._unsaved[slot] = (data, fut)

        def saved(done: asyncio.Future[None]) -> None:
            if self._unsaved.get(slot, (None, None))[1] is done:
                del self._unsaved[slot]
            if not done.cancelled() and done.exception() is not None:
                log.error("queued plugin record failed to save", extra={
                    "plugin": plugin, "error": type(done.exception()).__name__})
        fut.add_done_callback(saved)

    def _record_from_blob(self, keys: TenantKeys, plugin: str, kind: str, rkey: str, blob: bytes) -> tuple[str, Any]:
        d = orjson.loads(keys.decrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", blob))
        return d["key"], d["data"]

    async def get_record(self, tenant: str, plugin: str, kind: str, key: str) -> Any:
        unsaved = self._unsaved.get((tenant, plugin, kind, key))
        if unsaved is not None:
            return unsaved[0]
        keys = await self.keys(tenant)
        rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
        row = await self._lookup("SELECT data FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                              (tenant, plugin, kind, rkey))
        return self._record_from_blob(keys, plugin, kind, rkey, row[0])[1] if row else None

    async def find_records(self, tenant: str, plugin: str, kind: str, index: str | None = None) -> list[tuple[str, Any]]:
        keys = await self.keys(tenant)
        sql = "SELECT record_key, data FROM records WHERE tenant=? AND plugin=? AND kind=?"
        args: list[Any] = [tenant, plugin, kind]
        if index is not None:
            sql += " AND index_key=?"
            args.append(keys.blind_index(f"index\x1f{plugin}\x1f{kind}", index))
        rows = await self._all(sql + " ORDER BY created_at", args)
        return [self._record_from_blob(keys, plugin, kind, r[0], r[1]) for r in rows]

    async def delete_record(self, tenant: str, plugin: str, kind: str, key: str | None = None) -> int:
        keys = await self.keys(tenant)
        for slot in [s for s in self._unsaved if s[:3] == (tenant, plugin, kind) and key in (None, s[3])]:
            del self._unsaved[slot]

        def job(conn: sqlite3.Connection) -> int:
            if key is None:
                cur = conn.execute("DELETE FROM records WHERE tenant=? AND plugin=? AND kind=?",
                                         (tenant, plugin, kind))
            else:
                rkey = keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)
                cur = conn.execute(
                    "DELETE FROM records WHERE tenant=? AND plugin=? AND kind=? AND record_key=?",
                    (tenant, plugin, kind, rkey))
            return cur.rowcount
        return await self.w.submit(job)

    # --- leases (single-flight across processes) -------------------------------------------

    async def try_lease(self, name: str, holder: str, ttl: float) -> bool:
        expires = now_ms() + int(ttl * 1000)

        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder=excluded.holder, expires_at=excluded.expires_at "
                "WHERE leases.expires_at < ? OR leases.holder = excluded.holder",
                (name, holder, expires, now_ms()))
            return cur.rowcount
        return bool(await self.w.submit(job))

    async def release_lease(self, name: str, holder: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))
        await self.w.submit(job)

