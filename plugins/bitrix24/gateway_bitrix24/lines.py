"""The tenant's numbers as Bitrix24 external lines (``telephony.externalLine.*``).

Bitrix24 lists an app's lines as outgoing lines users can choose, and ``register`` passes
``LINE_NUMBER`` (a Market requirement). Lines are added in one form, E.164 (``register``
auto-creates an unknown line by its exact ``NUMBER``, so two forms would make two lines):

- before a call's ``register``, its own number (the event's ``local_number``), once per
  tenant and number (a ``line`` record remembers it);
- by the periodic task, every number of the tenant's telephony users
  (``ctx.tenants.numbers``: caller ids, direct numbers), so lines exist before the first call.

"Line already exists" is success. A line that cannot be added is logged (code only) and
tried again later; it never holds a call back. Click-to-call: ``ONEXTERNALCALLSTART`` names
the line the user chose (its number, or the id ``externalLine.add`` returned); :func:`chosen`
turns it into the number the core uses to pick who dials.
"""

from __future__ import annotations

import asyncio
import logging
import re

from gateway import NotFound, PluginContext, RetryableError, normalize_number

from .api import Bitrix24Client
from .parse import positive_id
from .responses import AuthRevoked, Bitrix24Error

log = logging.getLogger("gateway_bitrix24.lines")

LINE = "line"
SYNC_INTERVAL = 900.0
_E164 = re.compile(r"^\+[1-9][0-9]{5,15}$")


async def ensure_line(client: Bitrix24Client, number: str) -> bool:
    """Add ``number`` (E.164) as a line unless this tenant has it; True when it exists now."""
    if not _E164.match(number):
        return False
    st = client.st
    if await st.get(LINE, number) is not None:
        return True
    try:
        result = await client.call("telephony.externalLine.add", {"NUMBER": number, "NAME": number})
    except Bitrix24Error as exc:
        if "already exist" not in exc.description.lower():
            log.warning("externalLine.add refused", extra={"tenant": client.tenant, "code": exc.code})
            client.ctx.count("line_add_failed")
            return False
        result = None
    await st.put(LINE, number, {"id": positive_id(result.get("ID") if isinstance(result, dict) else result)})
    client.ctx.count("line_added")
    return True


async def chosen(client: Bitrix24Client, line: str) -> str | None:
    """The number of the line an ``ONEXTERNALCALLSTART`` names (a number or a line id)."""
    line = line.strip()
    if not line:
        return None
    number = normalize_number(line)
    if number and _E164.match(number) and await client.st.get(LINE, number) is not None:
        return number
    if line.isdigit():
        for known, rec in await client.st.all(LINE):
            if isinstance(rec, dict) and str(rec.get("id")) == line:
                return known
    return number if number and _E164.match(number) else None


async def sync_lines(ctx: PluginContext) -> int:
    """The registered task: every active tenant's numbers as lines. Returns how many were added."""
    added = 0
    for tenant in await ctx.tenants.list():
        if tenant.status != "active" or await ctx.tenants.binding(tenant.id) is None:
            continue
        try:
            client = Bitrix24Client(ctx, tenant.id)
            for number in await ctx.tenants.numbers(tenant.id):
                if await client.st.get(LINE, number) is None and await ensure_line(client, number):
                    added += 1
        except asyncio.CancelledError:
            raise
        except (NotFound, AuthRevoked):
            continue  # removed meanwhile, or paused (the call to Bitrix24 paused it)
        except (RetryableError, TimeoutError) as exc:
            log.info("line sync failed; next run tries again", extra={"tenant": tenant.id,
                                                                       "error": type(exc).__name__})
    return added
