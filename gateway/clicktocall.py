"""Click-to-call: a CRM asks the tenant's telephone system to dial, and later recognises the
call's events as the call it started.

The correlation lives in the core (a table keyed by the CRM's call id), not in the event and
not in each CRM plugin. How a call's events are recognised, in this order:

1. exactly, when the source told the provider's id of the call it placed
   (:attr:`gateway.OriginateResult.call_id`, e.g. Webex's call session): the first event
   with that ``call_id`` on that connection belongs to the CRM's call;
2. otherwise (Placetel's click-to-dial answers with nothing), the first *outbound* call of the
   same telephony user to the same number on the same connection within
   :data:`ADOPT_WINDOW` seconds of the request is taken to be it; from then on its ``call_id``
   is recorded, so every later event of that call is recognised exactly.

A correlation is a call record: it is purged with the call records, exported and erased with
the person's number, and deleted with the tenant.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .directory import Directory
from .errors import BadRequest, NotFound
from .events import CallEvent, Direction, normalize_number
from .models import Connection, TelephonyUser
from .sources import OriginateResult, Source

if TYPE_CHECKING:
    from .context import PluginContext
    from .store import Store

#: How long after a click-to-call request its call's first outbound event is expected (s).
ADOPT_WINDOW = 300.0


class ClickToCall:
    def __init__(self, store: Store, directory: Directory, sources: Mapping[str, Source],
                 contexts: Mapping[str, PluginContext]) -> None:
        self._store = store
        self._directory = directory
        self._sources = sources
        self._contexts = contexts

    async def start(self, sink: str, tenant: str, crm_call_id: str, *, number: str,
                    email: str | None = None, extension: str | None = None,
                    line: str | None = None) -> OriginateResult:
        """Dial ``number`` for the telephony user known by ``email`` or ``extension``, as the
        CRM call ``crm_call_id`` of ``sink``. ``line``: the tenant's number the CRM user chose
        to call from; among the person's telephony users (a person may have several, on one
        or more connections) the one whose numbers include it places the call. Raises
        :class:`BadRequest` when no usable telephony user is mapped, and what the source
        raises when it cannot place the call."""
        if not crm_call_id or len(crm_call_id) > 128:
            raise BadRequest("a CRM call id is required")
        candidates = await self._directory.active(tenant, email=email, extension=extension)
        if not candidates:
            raise BadRequest("no telephony user is mapped to this CRM user")
        conn, user = pick_line(candidates, line)
        source = self._sources.get(conn.plugin)
        if source is None:
            raise NotFound("the connection's telephony plugin is not loaded")
        dialled = normalize_number(number) or number
        # recorded before dialling: the call's first event may arrive before the answer does
        await self._store.clicktocall.add(tenant, crm_call_id, sink=sink, connection_id=conn.id,
                                          user_id=user.user_id, number=dialled)
        result = await source.originate(self._contexts[conn.plugin], conn, user, dialled)
        if result.call_id:
            await self._store.clicktocall.adopt(tenant, crm_call_id, connection_id=conn.id,
                                                call_id=result.call_id)
        return result

    async def find(self, sink: str, event: CallEvent) -> str | None:
        """The CRM call id of ``sink`` that ``event``'s call was started as, or ``None``."""
        if not event.tenant or not event.connection_id:
            return None
        known = await self._store.clicktocall.by_call(event.tenant, event.connection_id, event.call_id)
        if known is not None:
            return str(known["crm_call_id"]) if known.get("sink") == sink else None
        if event.direction is not Direction.OUTBOUND or not event.local_user or not event.remote_number:
            return None
        since = int((time.time() - ADOPT_WINDOW) * 1000)
        for candidate in await self._store.clicktocall.candidates(
                event.tenant, connection_id=event.connection_id, user_id=event.local_user,
                number=event.remote_number, since_ms=since):
            if candidate.get("sink") == sink:
                crm_call_id = str(candidate["crm_call_id"])
                await self._store.clicktocall.adopt(event.tenant, crm_call_id,
                                                    connection_id=event.connection_id, call_id=event.call_id)
                return crm_call_id
        return None


def pick_line(candidates: list[tuple[Connection, TelephonyUser]],
              line: str | None) -> tuple[Connection, TelephonyUser]:
    """The candidate whose numbers include ``line`` (compared as E.164), else the first."""
    wanted = normalize_number(line) if line else None
    if wanted:
        for conn, user in candidates:
            if wanted in {normalize_number(n) or n for n in user.numbers}:
                return conn, user
    return candidates[0]
