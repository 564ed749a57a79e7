"""How each part's rows are sealed and opened: the same on every backend.

The encryption (associated data naming tenant, table, column and row) and the blind indexes
must agree byte for byte between backends, or ``gateway migrate`` would copy rows that no
longer open; so they are spelled once, here, and the backends only move the bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..events import CallEvent
from ..models import Connection, TelephonyUser
from .common import dumps, phone_key, user_key
from .crypto import TenantKeys
from .protocols import ClickToCallRow
from .records import PendingDelivery

#: An event ready for the ``events`` table: (tenant, connection, dedup key, call key, payload,
#: received_at, remote key, local key, user key), with the event it came from.
EventRow = tuple[tuple[Any, ...], CallEvent]


def seal_events(keys: TenantKeys, connection: Connection, events: Sequence[CallEvent],
                received_at_ms: int) -> list[EventRow]:
    """Each event encrypted, deduplication- and call-keyed, its numbers and user blind-indexed."""
    rows = []
    for ev in events:
        dedup = keys.blind_index("event", f"{connection.id}\x1f{ev.event_id}")
        call_key = keys.blind_index("call", f"{connection.id}\x1f{ev.call_id}")
        payload = keys.encrypt("events", "payload", dedup, ev.to_json())
        rows.append(((connection.tenant, connection.id, dedup, call_key, payload, received_at_ms,
                      phone_key(keys, ev.remote_number), phone_key(keys, ev.local_number),
                      user_key(keys, connection.id, ev.local_user) if ev.local_user else None), ev))
    return rows


def open_event(keys: TenantKeys, dedup_key: str, payload: bytes) -> CallEvent:
    return CallEvent.from_dict(orjson.loads(keys.decrypt("events", "payload", dedup_key, payload)))


def pending_delivery(row: Any, event: CallEvent | None = None) -> PendingDelivery:
    """A delivery row: id, event_seq, tenant, sink, call_key, attempts, next_at, received_at,
    since, and its event's dedup key."""
    return PendingDelivery(id=row[0], event_seq=row[1], tenant=row[2], sink=row[3], call_key=row[4],
                           attempts=row[5], next_at=row[6], received_at=row[7], since=row[8],
                           dedup_key=row[9], event=event)


def seal_settings(keys: TenantKeys, table: str, row: str, settings: dict[str, Any]) -> bytes:
    return keys.encrypt(table, "settings", row, dumps(settings))


def open_settings(keys: TenantKeys, table: str, row: str, blob: bytes) -> Any:
    return orjson.loads(keys.decrypt(table, "settings", row, blob))


# --- the telephony user directory ------------------------------------------------------------

def email_key(keys: TenantKeys, email: str) -> str:
    return keys.blind_index("email", email.strip().lower())


def extension_key(keys: TenantKeys, extension: str) -> str:
    return keys.blind_index("extension", str(extension))


def directory_key(keys: TenantKeys, email: str | None, extension: str | None) -> tuple[str, str] | None:
    """``(column, blind index)`` to find users by e-mail or, without one, by extension."""
    if email:
        return "email_key", email_key(keys, email)
    if extension:
        return "extension_key", extension_key(keys, extension)
    return None


def seal_user(keys: TenantKeys, connection_id: str,
              user: TelephonyUser) -> tuple[str, bytes, str | None, str | None]:
    """``(user id key, sealed data, e-mail key, extension key)`` of a directory entry."""
    uid = user_key(keys, connection_id, user.user_id)
    data = keys.encrypt("telephony_users", "data", f"{connection_id}\x1f{uid}", dumps({
        "user_id": user.user_id, "name": user.name, "email": user.email,
        "extension": user.extension, "numbers": list(user.numbers)}))
    return (uid, data, email_key(keys, user.email) if user.email else None,
            extension_key(keys, user.extension) if user.extension else None)


def open_user(keys: TenantKeys, connection_id: str, uid: str, blob: bytes, status: str) -> TelephonyUser:
    d = orjson.loads(keys.decrypt("telephony_users", "data", f"{connection_id}\x1f{uid}", blob))
    return TelephonyUser(d["user_id"], d.get("name"), d.get("email"), d.get("extension"),
                         tuple(d.get("numbers") or ()), status)


# --- plugins' records -----------------------------------------------------------------------------

def record_key(keys: TenantKeys, plugin: str, kind: str, key: str) -> str:
    return keys.blind_index(f"record\x1f{plugin}\x1f{kind}", key)


def index_key(keys: TenantKeys, plugin: str, kind: str, index: str) -> str:
    return keys.blind_index(f"index\x1f{plugin}\x1f{kind}", index)


def seal_record(keys: TenantKeys, plugin: str, kind: str, rkey: str, key: str, value: Any) -> bytes:
    return keys.encrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", dumps({"key": key, "data": value}))


def open_record(keys: TenantKeys, plugin: str, kind: str, rkey: str, blob: bytes) -> tuple[str, Any]:
    d = orjson.loads(keys.decrypt("records", "data", f"{plugin}\x1f{kind}\x1f{rkey}", blob))
    return d["key"], d["data"]


#: Records opened between two turns of the event loop: a find that returns thousands (a sweep
#: over every pending call) must not hold up webhooks for the whole of its decryption.
OPEN_BATCH = 200


async def open_records(keys: TenantKeys, plugin: str, kind: str,
                       rows: Iterable[Any]) -> list[tuple[str, Any]]:
    """:func:`open_record` for each ``(record_key, blob)`` row, giving way every
    :data:`OPEN_BATCH` rows."""
    opened: list[tuple[str, Any]] = []
    for n, row in enumerate(rows, 1):
        opened.append(open_record(keys, plugin, kind, row[0], row[1]))
        if n % OPEN_BATCH == 0:
            await asyncio.sleep(0)
    return opened


# --- click-to-call --------------------------------------------------------------------------------

def call_key(keys: TenantKeys, crm_call_id: str) -> str:
    return keys.blind_index("clicktocall", crm_call_id)


def provider_key(keys: TenantKeys, connection_id: str, call_id: str) -> str:
    return keys.blind_index("clicktocall-call", f"{connection_id}\x1f{call_id}")


def match_key(keys: TenantKeys, connection_id: str, user_id: str, number: str) -> str:
    return keys.blind_index("clicktocall-match", f"{connection_id}\x1f{user_id}\x1f{number}")


def seal_clicktocall(keys: TenantKeys, ckey: str, crm_call_id: str, connection_id: str, user_id: str,
                     number: str) -> bytes:
    return keys.encrypt("clicktocall", "data", ckey, dumps({
        "crm_call_id": crm_call_id, "connection_id": connection_id, "user_id": user_id, "number": number}))


def seal_provider_call(keys: TenantKeys, ckey: str, call_id: str) -> bytes:
    return keys.encrypt("clicktocall", "provider_call", ckey, call_id.encode())


def seal_call_row(keys: TenantKeys, crm_call_id: str, connection_id: str, user_id: str, number: str,
                  provider_call_id: str | None) -> tuple[str, bytes, bytes | None, str | None, str, str | None]:
    """A new click-to-call row: ``(call key, data, provider call, provider key, match key,
    phone key)``."""
    ckey = call_key(keys, crm_call_id)
    data = seal_clicktocall(keys, ckey, crm_call_id, connection_id, user_id, number)
    provider, pkey = None, None
    if provider_call_id is not None:
        provider = seal_provider_call(keys, ckey, provider_call_id)
        pkey = provider_key(keys, connection_id, provider_call_id)
    return ckey, data, provider, pkey, match_key(keys, connection_id, user_id, number), phone_key(keys, number)


def open_clicktocall(keys: TenantKeys, r: Any) -> ClickToCallRow:
    """A row of (call_key, sink, data, provider_call, state, created_at, updated_at), opened."""
    data = orjson.loads(keys.decrypt("clicktocall", "data", r[0], r[2]))
    provider = keys.decrypt("clicktocall", "provider_call", r[0], r[3]).decode() if r[3] else None
    return ClickToCallRow(crm_call_id=data["crm_call_id"], sink=r[1], connection_id=data["connection_id"],
                          user_id=data["user_id"], number=data["number"], provider_call_id=provider,
                          state=r[4], created_at=r[5], updated_at=r[6])
