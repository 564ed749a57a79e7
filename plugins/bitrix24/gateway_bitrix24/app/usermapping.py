"""The user mapping on the administrator's page: telephone users beside portal users.

The match shown is the one the sink makes (:func:`..users.crm_user_for`): an administrator's
override (by the telephone user's e-mail, then extension) first, then a portal user with the
same extension (``UF_PHONE_INNER``), then one with the same e-mail. Changing a row by hand
writes an override keyed the way the sink looks it up; "automatic" removes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway import Connection, PluginContext, TelephonyUser

from ..users import Override, list_overrides, override_key, replace_overrides
from .people import Person
from .views import MappingRow, MatchedBy

#: How telephone systems are named on the pages (any other plugin by its name).
SYSTEMS = {"placetel": "Placetel", "webex": "Webex Calling"}


def system_name(plugin: str) -> str:
    return SYSTEMS.get(plugin, plugin.replace("_", " ").title())


def row_key(connection: Connection, user: TelephonyUser) -> str:
    """The row's name in the form: stable, and free of the user's id (it may be an address)."""
    return hashlib.sha256(f"{connection.id}\x1f{user.user_id}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class TelephoneUser:
    key: str
    connection: Connection
    user: TelephonyUser


async def telephone_users(ctx: PluginContext, tenant: str) -> list[TelephoneUser]:
    """The tenant's telephone users that can be matched: known by e-mail or extension (a
    logged-out user keeps neither)."""
    out = []
    for conn in await ctx.connections.of_tenant(tenant):
        for user in await ctx.users.list(conn):
            if user.status != "logged_out" and (user.email or user.extension):
                out.append(TelephoneUser(row_key(conn, user), conn, user))
    return sorted(out, key=lambda t: ((t.user.name or t.user.extension or "").casefold(), t.key))


def _keys(user: TelephonyUser) -> list[str]:
    return ([override_key(email=user.email)] if user.email else []) + \
           ([override_key(extension=user.extension)] if user.extension else [])


def match(user: TelephonyUser, overrides: Mapping[str, int],
          people: Sequence[Person]) -> tuple[int | None, MatchedBy | None]:
    """The portal user the sink would write the telephone user's calls for, and how it was found."""
    for key in _keys(user):
        if key in overrides:
            return overrides[key], "manual"
    ext = (user.extension or "").strip()
    if ext:
        for p in people:
            if p.extension == ext:
                return p.id, "extension"
    email = (user.email or "").strip().lower()
    if email:
        for p in people:
            if p.email == email:
                return p.id, "email"
    return None, None


def _by_key(overrides: Sequence[Override]) -> dict[str, int]:
    return {override_key(email=o.email, extension=o.extension): o.bitrix24_user_id for o in overrides}


async def mapping_rows(ctx: PluginContext, tenant: str, users: Sequence[TelephoneUser],
                       people: Sequence[Person]) -> list[MappingRow]:
    overrides = _by_key(await list_overrides(ctx.storage(tenant)))
    rows = []
    for t in users:
        portal_user, how = match(t.user, overrides, people)
        rows.append(MappingRow(t.key, system_name(t.connection.plugin), t.user.name or t.user.extension or "–",
                               t.user.email, t.user.extension, portal_user, how))
    return rows


async def save_mapping(ctx: PluginContext, tenant: str, users: Sequence[TelephoneUser],
                       chosen: Mapping[str, int | None]) -> int:
    """Apply the form: a chosen portal user becomes an override (by e-mail where the telephone
    user has one, else by extension); "automatic" removes the row's overrides. Rows not in
    the form keep theirs. Returns how many overrides there are now."""
    current = _by_key(await list_overrides(ctx.storage(tenant)))
    for t in users:
        if t.key not in chosen:
            continue
        for key in _keys(t.user):
            current.pop(key, None)
        portal_user = chosen[t.key]
        if portal_user is not None:
            current[_keys(t.user)[0]] = portal_user
    entries = [Override(uid, email=key[6:] if key.startswith("email:") else None,
                        extension=key[4:] if key.startswith("ext:") else None)
               for key, uid in sorted(current.items())]
    await replace_overrides(ctx.storage(tenant), entries)
    return len(entries)
