"""Breach support: what the gateway held in a time window, per tenant, as counts only.

A controller who must notify a breach needs the kinds of data, how many people and how many
records were affected; this report gives exactly that from the store, never a plaintext
value. Data deleted before the report runs (retention, logout, erasure) is not counted: it
can no longer leak from here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest

if TYPE_CHECKING:
    from ..runtime import Gateway

KINDS = {
    "events": "call records: phone numbers, call times and durations (encrypted)",
    "users_with_contact_data": "telephony users: name, e-mail, extension (encrypted)",
    "telephony_users": "telephony user ids and status",
    "connections": "telephone system credentials (encrypted)",
    "plugin_records": "plugin records: CRM call ids, OAuth tokens (encrypted)",
}


def parse_time(text: str, name: str) -> datetime:
    """An ISO-8601 date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an ISO-8601 date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


async def report(gw: Gateway, since: datetime, until: datetime) -> dict[str, Any]:
    """Per tenant: the kinds of data held, how many people and records, in ``[since, until)``."""
    if until <= since:
        raise BadRequest("until must be later than since")
    tenants = []
    for row in await gw.store.subjects.held_counts(int(since.timestamp() * 1000), int(until.timestamp() * 1000)):
        held = [kind for kind in KINDS if (sum(row[kind].values()) if kind == "plugin_records" else row[kind])]
        tenants.append({
            "tenant": row["tenant"],
            "kinds": {kind: KINDS[kind] for kind in held},
            "people": {"callers": row["callers"], "telephony_users": row["telephony_users"]},
            "records": {"events": row["events"], "restricted_events": row["restricted_events"],
                        "telephony_users": row["telephony_users"],
                        "users_with_contact_data": row["users_with_contact_data"],
                        "connections": row["connections"], "plugin_records": row["plugin_records"]},
        })
    await gw.audit.record("breach.report", tenants=len(tenants))
    return {"since": since.isoformat(), "until": until.isoformat(),
            "generated_at": datetime.now(timezone.utc).isoformat(),
            "retention_days": gw.config.retention_days,
            "note": "counts of what the store still holds from the window; deleted data is not counted",
            "tenants": tenants}


def as_text(doc: dict[str, Any]) -> str:
    """The report for people: one block per tenant."""
    lines = [f"Breach report for {doc['since']} .. {doc['until']} (generated {doc['generated_at']})",
             f"Call records are kept {doc['retention_days']:g} days; {doc['note']}.", ""]
    if not doc["tenants"]:
        lines.append("No tenants.")
    for t in doc["tenants"]:
        people, records = t["people"], t["records"]
        lines.append(f"Tenant {t['tenant']}:")
        lines.append(f"  people: {people['callers']} distinct callers or callees, "
                     f"{people['telephony_users']} telephony users")
        lines.append(f"  records: {records['events']} call events ({records['restricted_events']} restricted), "
                     f"{records['telephony_users']} telephony users "
                     f"({records['users_with_contact_data']} with name or e-mail), "
                     f"{records['connections']} connections, "
                     f"{sum(records['plugin_records'].values())} plugin records")
        if t["kinds"]:
            lines.append("  kinds of data:")
            lines += [f"    - {text}" for text in t["kinds"].values()]
        else:
            lines.append("  kinds of data: none held")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
