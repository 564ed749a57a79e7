"""Plugin records put with ``wait=False``: queued with the next batch, readable at once.

Per-call state a source writes while parsing a webhook must not cost a commit of its own, and
must never land after the events it explains; so it is queued to the writer (it commits in
the same transaction as, or one before, whatever is stored after it) and kept here until then,
so that reads see it. The same on every backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .batching import BatchWriter
from .common import now_ms, phone_key
from .crypto import TenantKeys
from .sealed import index_key, record_key, seal_record

log = logging.getLogger("gateway.store")

#: (tenant, plugin, kind, plain key)
Slot = tuple[str, str, str, str]


class QueuedRecords:
    """The records queued but not committed yet: value, future and phone keys per slot."""

    def __init__(self) -> None:
        self._unsaved: dict[Slot, tuple[Any, asyncio.Future[None], frozenset[str]]] = {}

    async def put(self, writer: BatchWriter, write: Callable[..., Any], keys: TenantKeys, slot: Slot, value: Any,
                  *, index: str | None, call_record: bool, phones: Iterable[str], wait: bool) -> None:
        """Seal the record and queue ``(tenant, plugin, kind, record key, blob, index key,
        call_record, created_at, phone keys)`` for ``write``; wait for its commit if ``wait``."""
        tenant, plugin, kind, key = slot
        rkey = record_key(keys, plugin, kind, key)
        blob = seal_record(keys, plugin, kind, rkey, key, value)
        ikey = index_key(keys, plugin, kind, index) if index is not None else None
        pkeys = frozenset(k for k in (phone_key(keys, p) for p in phones) if k)
        fut = writer.submit_grouped_nowait(write, (tenant, plugin, kind, rkey, blob, ikey, int(call_record),
                                                   now_ms(), pkeys))
        if wait:
            await asyncio.shield(fut)
            return
        self._unsaved[slot] = (value, fut, pkeys)

        def saved(done: asyncio.Future[None]) -> None:
            if slot in self._unsaved and self._unsaved[slot][1] is done:
                del self._unsaved[slot]
            if not done.cancelled() and done.exception() is not None:
                log.error("queued plugin record failed to save", extra={
                    "plugin": plugin, "error": type(done.exception()).__name__})
        fut.add_done_callback(saved)

    def get(self, slot: Slot) -> tuple[bool, Any]:
        """``(True, value)`` for a record still queued, else ``(False, None)``."""
        unsaved = self._unsaved.get(slot)
        return (False, None) if unsaved is None else (True, unsaved[0])

    def drop(self, tenant: str | None, plugin: str | None = None, kind: str | None = None,
             key: str | None = None, phone_key: str | None = None) -> None:
        """Forget queued values (deleted meanwhile; they still commit first, then the delete
        that follows them): of a tenant, of a plugin's kind, of one key, or about one phone."""
        for slot, (_, _, pkeys) in list(self._unsaved.items()):
            if (tenant in (None, slot[0]) and plugin in (None, slot[1]) and kind in (None, slot[2])
                    and key in (None, slot[3]) and phone_key in (None, *pkeys)):
                del self._unsaved[slot]
