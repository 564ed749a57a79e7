"""Data-subject rights, exercised by the controller (a tenant's admin) for one person.

Access/export, rectification, erasure, restriction and objection reach the core's data (call
events, the telephony user directory) and every plugin through the ``subject_export`` and
``subject_erase`` hooks. Each operation is audited by kind and counts, never by the person.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, NotFound
from ..events import forget_numbers, normalize_number
from ..models import TelephonyUser
from . import Subject

if TYPE_CHECKING:
    from ..runtime import Gateway

log = logging.getLogger("gateway.privacy")

RECTIFIABLE = ("name", "email", "extension")
RESTRICTION_KINDS = ("restrict", "object")


async def _tenant(gw: Gateway, tenant: str) -> None:
    await gw.tenancy.require(tenant)


def _is_about(user: TelephonyUser, subject: Subject) -> bool:
    if subject.kind == "email":
        return (user.email or "").strip().lower() == subject.value
    return any(normalize_number(n) == subject.value for n in user.numbers)


async def _users(gw: Gateway, tenant: str, subject: Subject) -> list[tuple[str, str, TelephonyUser]]:
    """The tenant's telephony users who are this person: (connection id, user key, user)."""
    return [row for row in await gw.store.users.of_tenant(tenant) if _is_about(row[2], subject)]


async def _plugin_records(gw: Gateway, tenant: str, phone: str | None) -> dict[str, Any]:
    """What plugins stored about the number (records stored with ``phones=``), per plugin."""
    out: dict[str, Any] = {}
    for plugin, kind, _key, value in await gw.store.records.by_phone(tenant, phone) if phone else []:
        out.setdefault(plugin, {}).setdefault("records", []).append({"kind": kind, "value": value})
    return out


def _user_json(connection_id: str, user: TelephonyUser) -> dict[str, Any]:
    return {"connection": connection_id, "user_id": user.user_id, "name": user.name,
            "email": user.email, "extension": user.extension, "numbers": list(user.numbers),
            "status": user.status}


def _ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


async def export(gw: Gateway, tenant: str, subject: Subject) -> dict[str, Any]:
    """Everything the gateway and its plugins hold about the person, as one JSON document."""
    await _tenant(gw, tenant)
    users = await _users(gw, tenant, subject)
    phone = subject.value if subject.kind == "phone" else None
    events = await gw.store.subjects.events(tenant, phone, [u[1] for u in users])
    restriction = await gw.store.subjects.restriction(
        tenant, await gw.store.subjects.subject_key(tenant, subject.kind, subject.value))
    plugins = await _plugin_records(gw, tenant, phone)
    heard = await gw.host.call_each("subject_export", tenant=tenant, subject=subject)
    for name, answer in heard.answers.items():
        plugins.setdefault(name, {}).update(answer if isinstance(answer, dict) else {"data": answer})
    failed = list(heard.failed)
    document = {
        "tenant": tenant,
        "subject": {subject.kind: subject.value},
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "restriction": restriction,
        "gateway": {
            "call_events": [{"received_at": _ms_iso(at), **ev.to_dict()}
                            for _seq, at, ev in events if ev is not None],
            "restricted_call_events": [{"received_at": _ms_iso(at)} for _seq, at, ev in events if ev is None],
            "telephony_users": [_user_json(cid, u) for cid, _key, u in users],
        },
        "plugins": plugins,
        "incomplete": failed,
    }
    await gw.audit.record("subject.export", tenant=tenant, subject_kind=subject.kind,
                   events=len(events), users=len(users), plugins=len(plugins), failed_plugins=len(failed))
    return document


async def erase(gw: Gateway, tenant: str, subject: Subject) -> dict[str, Any]:
    """Delete the person's call events (with their deliveries), user entries, restriction,
    and whatever each plugin holds about them."""
    await _tenant(gw, tenant)
    await gw.interpreter.drain()  # a webhook about the person acknowledged a moment ago goes too
    # first: a reconciliation would see the erased calls as missing and write them again
    await gw.reconciliation.erased(tenant)
    users = await _users(gw, tenant, subject)
    phone = subject.value if subject.kind == "phone" else None
    counts: dict[str, Any] = await gw.store.subjects.delete_events(tenant, phone, [u[1] for u in users])
    counts["telephony_users"] = await gw.store.users.delete_keys(tenant, [(c, k) for c, k, _u in users])
    counts["restrictions"] = await gw.store.subjects.unrestrict(
        tenant, await gw.store.subjects.subject_key(tenant, subject.kind, subject.value))
    plugin_counts: dict[str, int] = dict(await gw.store.records.delete_by_phone(tenant, phone)) if phone else {}
    heard = await gw.host.call_each("subject_erase", tenant=tenant, subject=subject)
    for name, n in heard.answers.items():
        if isinstance(n, int):
            plugin_counts[name] = plugin_counts.get(name, 0) + n
    counts["plugins"] = plugin_counts
    failed = list(heard.failed)
    forget_numbers()  # the number-normalisation cache may hold the person's number
    await gw.audit.record("subject.erase", tenant=tenant, subject_kind=subject.kind,
                   events=counts["events"], deliveries=counts["deliveries"],
                   users=counts["telephony_users"], plugin_records=sum(counts["plugins"].values()),
                   failed_plugins=len(failed))
    return {"erased": counts, "incomplete": failed}


def _changes(raw: Any) -> dict[str, str | None]:
    if not isinstance(raw, Mapping) or not raw:
        raise BadRequest(f"changes must be an object with some of {', '.join(RECTIFIABLE)}")
    out: dict[str, str | None] = {}
    for name, value in raw.items():
        if name not in RECTIFIABLE:
            raise BadRequest(f"only {', '.join(RECTIFIABLE)} of a telephony user can be rectified")
        if value is not None and (not isinstance(value, str) or len(value) > 320):
            raise BadRequest(f"{name} must be a string of at most 320 characters, or null")
        if name == "email" and value is not None:
            value = Subject.parse(email=value).value
        out[name] = value
    return out


async def rectify(gw: Gateway, tenant: str, subject: Subject, changes: Any) -> dict[str, Any]:
    """Correct the stored name, e-mail or extension of the telephony users who are this person."""
    fields = _changes(changes)
    await _tenant(gw, tenant)
    users = await _users(gw, tenant, subject)
    if not users:
        raise NotFound("no telephony user of this tenant matches the person")
    for cid, _key, user in users:
        conn = await gw.store.connections.get(cid)
        if conn is not None:
            await gw.directory.put(conn, TelephonyUser(
                user.user_id, fields.get("name", user.name), fields.get("email", user.email),
                fields.get("extension", user.extension), user.numbers, user.status))
    await gw.audit.record("subject.rectify", tenant=tenant, subject_kind=subject.kind, users=len(users),
                   fields=",".join(sorted(fields)))
    return {"rectified": len(users), "fields": sorted(fields)}


async def restrict(gw: Gateway, tenant: str, subject: Subject, kind: str = "restrict") -> dict[str, Any]:
    """From now on, events involving the person are kept only to acknowledge them and are not
    forwarded to the CRM, until lifted (``unrestrict``) or erased. An objection is recorded as
    ``object`` and treated the same way."""
    if kind not in RESTRICTION_KINDS:
        raise BadRequest("kind is restrict or object")
    await _tenant(gw, tenant)
    await gw.interpreter.drain()  # what was acknowledged before the restriction is withdrawn too
    users = await _users(gw, tenant, subject)
    subject_key = await gw.store.subjects.subject_key(tenant, subject.kind, subject.value)
    await gw.store.subjects.restrict(tenant, subject_key, [k for _c, k, _u in users], kind)
    await gw.audit.record(f"subject.{kind}", tenant=tenant, subject_kind=subject.kind, users=len(users))
    return {"restricted": True, "kind": kind}


async def unrestrict(gw: Gateway, tenant: str, subject: Subject) -> dict[str, Any]:
    """Lift a restriction or objection; events from now on are forwarded again."""
    await _tenant(gw, tenant)
    removed = await gw.store.subjects.unrestrict(
        tenant, await gw.store.subjects.subject_key(tenant, subject.kind, subject.value))
    await gw.audit.record("subject.unrestrict", tenant=tenant, subject_kind=subject.kind, lifted=bool(removed))
    return {"restricted": False, "lifted": bool(removed)}


OPERATIONS = ("export", "erase", "rectify", "restrict", "unrestrict", "object")


async def run(gw: Gateway, operation: str, tenant: str, subject: Subject,
              changes: Any = None) -> dict[str, Any]:
    """Dispatch one of :data:`OPERATIONS` (the admin API and the CLI share this)."""
    if operation == "export":
        return await export(gw, tenant, subject)
    if operation == "erase":
        return await erase(gw, tenant, subject)
    if operation == "rectify":
        return await rectify(gw, tenant, subject, changes)
    if operation in RESTRICTION_KINDS:
        return await restrict(gw, tenant, subject, operation)
    if operation == "unrestrict":
        return await unrestrict(gw, tenant, subject)
    raise NotFound("unknown data-subject operation")
