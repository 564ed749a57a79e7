"""The pluggy entry point ``webex``: hook implementations wiring the plugin into callgate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway import (
    BadRequest,
    Connection,
    Gateway,
    NotFound,
    OriginateResult,
    Source,
    Subject,
    TelephonyUser,
    UpstreamError,
    hookimpl,
)

from . import accounts, routes, tasks
from .accounts import PLUGIN, NeedsLogin
from .ids import session_key
from .source import WebexSource

SOURCE = WebexSource()


@hookimpl
def register_sources(register: Callable[[Source], None]) -> None:
    register(SOURCE)


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    routes.register_all(register)


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    tasks.register_all(register)


async def _originate(gateway: Gateway, connection: Connection, user: TelephonyUser, number: str,
                     crm_call_id: str | None) -> OriginateResult:
    if user.status != "active":
        raise BadRequest("the Webex user has to log in first")
    if not number or len(number) > 128:
        raise BadRequest("a destination number is required")
    try:
        data = await accounts.call_as(gateway, connection, user.user_id, "POST", "/telephony/calls/dial",
                                      json={"destination": number})
    except NeedsLogin:
        raise BadRequest("the Webex user has to log in again") from None
    except NotFound:
        raise UpstreamError("Webex refused the call") from None
    leg = data.get("callId") if isinstance(data, dict) else None
    session = data.get("callSessionId") if isinstance(data, dict) else None
    if not isinstance(leg, str) or not leg:
        return OriginateResult()
    if not isinstance(session, str) or not session:
        return OriginateResult(call_id=leg)
    if crm_call_id:
        await accounts.storage(gateway, connection.tenant).put(
            "dial", f"{connection.id}|{user.user_id}|{session_key(session)}",
            {"crm_call_id": crm_call_id, "at": time.time()}, call_record=True)
    return OriginateResult(call_id=f"{session}:{leg}")


@hookimpl
def originate_call(gateway: Gateway, connection: Connection, user: TelephonyUser, number: str,
                   crm_call_id: str | None) -> Any:
    if connection.plugin != PLUGIN:
        return None
    return _originate(gateway, connection, user, number, crm_call_id)


async def _calls_about(gateway: Gateway, tenant: str, subject: Subject) -> list[tuple[str, Any]]:
    if subject.kind != "phone":
        return []  # e-mails live only in the core's user directory
    number = subject.value
    return [(k, v) for k, v in await accounts.storage(gateway, tenant).all("call")
            if isinstance(v, dict) and v.get("remote") == number]


@hookimpl
async def subject_export(gateway: Gateway, tenant: str, subject: Subject) -> Any:
    """Per-call state naming the person's number (call records, kept at most the retention period)."""
    found = await _calls_about(gateway, tenant, subject)
    if not found:
        return None
    return {"calls": [{"call_id": v["call_id"], "direction": v.get("direction"), "started_at": v.get("started_at"),
                       "answered_at": v.get("answered_at"), "ended_at": v.get("ended_at")} for _, v in found]}


@hookimpl
async def subject_erase(gateway: Gateway, tenant: str, subject: Subject) -> Any:
    found = await _calls_about(gateway, tenant, subject)
    st = accounts.storage(gateway, tenant)
    for key, _ in found:
        await st.delete("call", key)
    return len(found) if found else None
