"""The pluggy hooks of the Bitrix24 plugin (entry point ``bitrix24``)."""

from __future__ import annotations

from typing import Any

from gateway import Gateway, Subject, hookimpl

from . import clicktocall, routes
from .api import forget_tenant
from .records import storage
from .sink import Bitrix24Sink
from .users import USERCACHE, USERMAP, override_key

SINK = Bitrix24Sink()


@hookimpl
def register_sinks(register: Any) -> None:
    register(SINK)


@hookimpl
def register_routes(register: Any) -> None:
    routes.register_all(register)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    await clicktocall.drain(gateway)


@hookimpl
def tenant_removed(gateway: Gateway, tenant: str) -> None:
    """The core deletes our records with the tenant; only in-memory state is ours to drop.
    (The app's API access is revoked by Bitrix24 on uninstall already.)"""
    forget_tenant(gateway, tenant)


@hookimpl
async def subject_export(gateway: Gateway, tenant: str, subject: Subject) -> dict[str, Any] | None:
    """The only personal data kept outside call records: an override naming the e-mail."""
    if subject.kind != "email":
        return None
    try:
        entry = await storage(gateway, tenant).get(USERMAP, override_key(email=subject.value))
    except Exception:
        return None
    return {"user_map": entry} if entry else None


@hookimpl
async def subject_erase(gateway: Gateway, tenant: str, subject: Subject) -> int | None:
    if subject.kind != "email":
        return None
    try:
        st = storage(gateway, tenant)
        removed = await st.delete(USERMAP, override_key(email=subject.value))
        if removed:
            await st.delete(USERCACHE)
    except Exception:
        return None
    return removed or None
