"""The pluggy hooks of the Bitrix24 plugin (entry point ``bitrix24``)."""

from __future__ import annotations

from typing import Any

from gateway import Gateway, NotFound, Subject, hookimpl

from . import clicktocall, routes
from .api import forget_tenant
from .clicktocall import CALLBACKS
from .records import storage
from .sink import C2C, CALL, PENDING, Bitrix24Sink
from .sweep import SWEEP_INTERVAL, sweep_lost_click_to_calls
from .users import USERCACHE, USERMAP, override_key

SINK = Bitrix24Sink()


@hookimpl
def register_sinks(register: Any) -> None:
    register(SINK)


@hookimpl
def register_routes(register: Any) -> None:
    routes.register_all(register)


@hookimpl
def register_tasks(register: Any) -> None:
    register(name="bitrix24-click-to-call-sweep", interval=SWEEP_INTERVAL, func=sweep_lost_click_to_calls)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    await clicktocall.drain(gateway)


@hookimpl
def tenant_removed(gateway: Gateway, tenant: str) -> None:
    """The core deletes our records with the tenant; only in-memory state is ours to drop.
    (The app's API access is revoked by Bitrix24 on uninstall already.)"""
    forget_tenant(gateway, tenant)


#: Per-call records, each stored with the remote number (E.164) as its blind index.
CALL_KINDS = {"calls": CALL, "click_to_call": C2C, "pending": PENDING, "callbacks": CALLBACKS}


@hookimpl
async def subject_export(gateway: Gateway, tenant: str, subject: Subject) -> dict[str, Any] | None:
    """What we hold about a person: per-call records found by their number (CRM call ids,
    CRM user ids, states), or the user-map override naming their e-mail."""
    if await gateway.get_tenant(tenant) is None:
        return None
    try:
        st = storage(gateway, tenant)
        if subject.kind == "phone":
            found = {name: [value for _, value in await st.find(kind, subject.value)]
                     for name, kind in CALL_KINDS.items()}
            out = {name: values for name, values in found.items() if values}
            return out or None
        entry = await st.get(USERMAP, override_key(email=subject.value))
    except NotFound:  # removed meanwhile
        return None
    return {"user_map": entry} if entry else None


@hookimpl
async def subject_erase(gateway: Gateway, tenant: str, subject: Subject) -> int | None:
    """Delete what :func:`subject_export` finds. Errors other than an unknown tenant propagate:
    an erasure must not fail silently."""
    if await gateway.get_tenant(tenant) is None:
        return None
    try:
        st = storage(gateway, tenant)
        removed = 0
        if subject.kind == "phone":
            for kind in CALL_KINDS.values():
                for key, _ in await st.find(kind, subject.value):
                    removed += await st.delete(kind, key)
        else:
            removed = await st.delete(USERMAP, override_key(email=subject.value))
            if removed:
                await st.delete(USERCACHE)
    except NotFound:
        return None
    return removed or None
