"""The periodic round: recording lookups and user directory refreshes for every connection.

The work list is ``ctx.connections.list()`` (every tenant's Placetel connections), and all
state (pending lookups, the last refresh) lives in PluginStorage, so nothing depends on
what this process has seen since it started. A per-connection lease keeps two gateway
processes sharing the store from doing the same connection's work at the same time.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from gateway import Connection, Outcome, PluginContext, RetryableError, UpstreamError, utcnow

from . import parse
from .api import KeyRejected, placetel_day
from .recordings import file_format, find_item
from .settings import HELD, OPEN, USERS_REFRESHED, Settings, pending_kind
from .memory import remember
from .source import PlacetelSource

log = logging.getLogger("gateway.placetel")

#: After a failed user refresh, try again this soon (unless ``user_refresh`` is shorter).
FAILED_REFRESH_RETRY = 300.0
#: Longest a connection's share of one round may take before another process may take over.
_ROUND_LEASE_TTL = 600.0


async def run_round(source: PlacetelSource, ctx: PluginContext) -> None:
    """One round over every Placetel connection of every tenant.

    Active connections get their pending recordings looked up; every connection (a broken
    one too, so that a key that works again heals it) gets its user directory refreshed
    when due. One connection's failure is logged and does not stop the others.
    """
    settings: Settings = ctx.settings
    for connection in await ctx.connections.list():
        storage = ctx.storage(connection.tenant)
        try:
            async with storage.lease(f"round:{connection.id}", ttl=_ROUND_LEASE_TTL, wait=0):
                await close_waiting_calls(source, ctx, connection)
                if settings.recordings and connection.status != "broken":
                    await poll_recordings(source, ctx, connection)
                await refresh_users_if_due(source, ctx, connection, settings)
        except TimeoutError:
            continue  # another process is doing this connection right now
        except Exception as exc:  # noqa: BLE001  one connection must not starve the others
            log.warning("placetel background work failed", extra={
                "connection": connection.id, "error": type(exc).__name__})


async def close_waiting_calls(source: PlacetelSource, ctx: PluginContext, connection: Connection,
                              now: datetime | None = None) -> int:
    """End the calls that wait for something that did not come: an answered ``HungUp`` whose
    ``CallAccepted`` stayed away for ``end_grace`` seconds, and calls that only rang for
    ``ring_timeout`` seconds (Contact Center queues send nothing after ``IncomingCall``).
    The ``ended`` event is stored before the memory says so: a crash in between repeats it
    (same event id, deduplicated). Returns how many calls ended."""
    s: Settings = ctx.settings
    when = now or utcnow()
    closed = 0
    for index in (HELD, OPEN):
        for call_id, memory in await ctx.calls.find(connection, index):
            if not isinstance(memory, dict):
                continue
            async with ctx.calls.state(connection, call_id) as call:
                current = call.value if isinstance(call.value, dict) else None
                if current is None:
                    continue
                events, updated = (parse.release_held(current, call_id, when) if index == HELD
                                   else parse.ring_timeout(current, call_id, when, s.ring_timeout))
                if not events:
                    continue
                await ctx.ingest(connection, events)
                remember(call, updated)
            await source.after_end(ctx, connection, call_id, events)
            closed += 1
    return closed


async def refresh_users_if_due(source: PlacetelSource, ctx: PluginContext, connection: Connection,
                               settings: Settings) -> bool:
    """Refresh the connection's users when the last refresh is ``user_refresh`` old (or a
    failed one ``FAILED_REFRESH_RETRY`` old). True when a refresh was attempted."""
    storage = ctx.storage(connection.tenant)
    last = await storage.get(USERS_REFRESHED, connection.id)
    now = utcnow().timestamp()
    if isinstance(last, dict) and isinstance(last.get("at"), (int, float)):
        wait = settings.user_refresh if last.get("ok") else min(settings.user_refresh, FAILED_REFRESH_RETRY)
        if now - last["at"] < wait:
            return False
    try:
        await source.sync_users(ctx, connection)  # records its success itself
    except (RetryableError, UpstreamError) as exc:
        await storage.put(USERS_REFRESHED, connection.id, {"at": now, "ok": False})
        log.info("placetel user refresh failed", extra={
            "connection": connection.id, "error": type(exc).__name__})
    return True


async def poll_recordings(source: PlacetelSource, ctx: PluginContext, connection: Connection) -> int:
    """Look up recordings of recently ended calls; ingest a ``RECORDING`` event per match.

    Each pending call is tried ``recording_tries`` times, no earlier than
    ``recording_delay`` seconds after it ended, then given up. Returns the number found.
    """
    s: Settings = ctx.settings
    storage = ctx.storage(connection.tenant)
    pending = await storage.all(pending_kind(connection.id))
    if not pending:
        return 0
    client = source.client(ctx, connection)
    region = source.region(connection)
    listings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    now = utcnow()
    found = 0
    for call_id, state in pending:
        memory = await ctx.calls.get(connection, call_id)
        ended = parse.parse_time(memory.get("ended_at")) if isinstance(memory, dict) else None
        if ended is None:  # the call's memory was purged or erased meanwhile
            await storage.delete(pending_kind(connection.id), call_id)
            continue
        if now - ended < timedelta(seconds=s.recording_delay):
            continue
        kind = "voicemail" if memory.get("outcome") == Outcome.VOICEMAIL.value else "recording"
        items: list[dict[str, Any]] = []
        for day in lookup_days(ended, memory.get("duration")):
            if (kind, day) not in listings:
                try:
                    listings[(kind, day)] = await (client.voicemails(day) if kind == "voicemail"
                                                   else client.recordings(day))
                except KeyRejected:
                    await source.mark_broken(ctx, connection)
                    return found
                except (RetryableError, UpstreamError) as exc:
                    log.info("placetel recording lookup failed", extra={
                        "connection": connection.id, "error": type(exc).__name__})
                    listings[(kind, day)] = []
            items.extend(listings[(kind, day)])
        match = find_item(memory, items, kind, region)
        if match is not None:
            # Same call and reference -> same event id: a repeated find is deduplicated.
            ref, item = match
            event = parse.recording_event(call_id, ref, memory, now, file_format(item, kind))
            await ctx.ingest(connection, [event])
            await storage.delete(pending_kind(connection.id), call_id)
            found += 1
            continue
        tries = int(state.get("tries", 0)) + 1 if isinstance(state, dict) else 1
        if tries >= s.recording_tries:
            await storage.delete(pending_kind(connection.id), call_id)
            ctx.count("recording_not_found")
        else:
            await storage.put(pending_kind(connection.id), call_id, {"tries": tries}, call_record=True)
    return found


def lookup_days(ended: datetime, duration: Any) -> list[str]:
    """The days to list for a call: Placetel files by day, so a call across midnight may be
    filed under the day it started or the day it ended."""
    seconds = duration if isinstance(duration, int) and duration > 0 else 0
    return sorted({placetel_day(ended - timedelta(seconds=seconds)), placetel_day(ended)})
