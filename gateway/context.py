"""The plugin context: everything a plugin may use of the core, bound to the plugin's name.

Each plugin gets its own :class:`PluginContext` (hooks receive it as ``context``, source and
sink methods as ``ctx``, route handlers as ``request[gateway.CONTEXT]``, tasks as their
argument). Because it is bound to the plugin, the plugin never passes its own name, its storage
is its own (another plugin's records are out of reach), it changes only its own connections and
sink bindings, and it sees other plugins' connections without their settings.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from . import metrics
from .errors import BadRequest, NotFound
from .events import CallEvent, CallState
from .models import Connection, SinkBinding, Tenant, TelephonyUser
from .privacy import Subject, rights
from .reconcile import ReconcileStatus, ReconcileView
from .sources import ConnectionHealth, OriginateResult
from .store import PluginStorage
from .store.common import ms_to_dt

if TYPE_CHECKING:
    from .runtime import Gateway

log = logging.getLogger("gateway")

#: How long a source may take to report a connection's health before it counts as unknown.
HEALTH_TIMEOUT = 5.0


def _digest(text: str) -> str:
    """A lease name for a call: lease names are stored as they are, call keys may hold ids."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _foreign(conn: Connection, plugin: str) -> Connection:
    """Another plugin's connection as this plugin may see it: without its settings."""
    return conn if conn.plugin == plugin else replace(conn, settings={})


async def _require_bound(gw: Gateway, plugin: str, tenant: str) -> None:
    """A CRM plugin acts for its own tenants only: those bound to its sink (else 404)."""
    if await gw.tenancy.binding(tenant, plugin) is None:
        raise NotFound("unknown tenant")


class Tenants:
    """Tenants as a plugin sees them; ``bind`` binds the plugin's own sink."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    async def get(self, tenant: str) -> Tenant | None:
        return await self._gw.tenancy.get(tenant)

    async def list(self) -> list[Tenant]:
        """Every tenant (for periodic sweeps)."""
        return await self._gw.tenancy.list()

    async def ensure(self, tenant: str) -> Tenant:
        """The tenant, created with its data key unless it exists (a CRM install)."""
        return await self._gw.tenancy.ensure(tenant)

    async def set_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        """``paused`` while a person must act (reinstall the CRM app), ``active`` again after."""
        await self._gw.tenancy.set_status(tenant, status, reason)

    async def remove(self, tenant: str) -> dict[str, Any]:
        """Uninstall: every plugin forgets the tenant, then the core crypto-shreds it."""
        return await self._gw.tenancy.remove(tenant)

    async def bind(self, tenant: str, settings: Mapping[str, Any] | None = None) -> SinkBinding:
        """Route the tenant's events to this plugin's sink."""
        return await self._gw.tenancy.bind(tenant, self._plugin, settings or {})

    async def binding(self, tenant: str) -> SinkBinding | None:
        """This plugin's sink binding of the tenant, if bound."""
        return await self._gw.tenancy.binding(tenant, self._plugin)

    async def numbers(self, tenant: str) -> builtins.list[str]:
        """The tenant's own phone numbers (E.164, sorted, no duplicates): those of the active
        telephony users of every connection of the tenant, whatever its plugin (caller ids,
        direct numbers). For a CRM that lists the tenant's lines; no names, no e-mails."""
        found: set[str] = set()
        for conn in await self._gw.tenancy.connections(tenant):
            for user in await self._gw.directory.list(conn):
                if user.status == "active":
                    found.update(n for n in user.numbers if n.startswith("+") and n[1:].isdigit())
        return sorted(found)


class Connections:
    """Telephone connections: the plugin's own with settings, other plugins' without."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    async def get(self, connection_id: str) -> Connection:
        """The connection; :class:`NotFound` when there is none of that id."""
        return _foreign(await self._gw.tenancy.connection(connection_id), self._plugin)

    async def own(self, connection_id: str) -> Connection:
        """One of this plugin's connections; :class:`NotFound` for any other id."""
        conn = await self._gw.tenancy.connection(connection_id)
        if conn.plugin != self._plugin:
            raise NotFound("unknown connection")
        return conn

    async def list(self, tenant: str | None = None) -> list[Connection]:
        """This plugin's connections of one tenant, or with ``tenant=None`` of every tenant."""
        return await self._gw.tenancy.connections(tenant, self._plugin)

    async def update(self, connection_id: str, *, settings: Mapping[str, Any] | None = None,
                     status: str | None = None, reason: str | None = None) -> Connection:
        """Replace one of this plugin's connections' settings, or mark it ``broken`` with a
        reason free of personal data (``active`` again once it works)."""
        await self.own(connection_id)
        return await self._gw.tenancy.update_connection(connection_id, settings=settings,
                                                        status=status, reason=reason)

    async def of_tenant(self, tenant: str) -> builtins.list[Connection]:
        """Every connection of the tenant, of any plugin (others' without settings): what a
        CRM app shows its customer."""
        return [_foreign(c, self._plugin) for c in await self._gw.tenancy.connections(tenant)]

    async def create(self, tenant: str, plugin: str, settings: Mapping[str, Any]) -> Connection:
        """Connect a telephone system for a tenant bound to this plugin's sink (a CRM app's
        set-up page): the source ``plugin`` checks ``settings`` in its ``connect`` (raising
        :class:`BadRequest` or :class:`UpstreamError`), the core stores them sealed and audits.
        Returns the connection, without its settings unless ``plugin`` is this plugin."""
        await _require_bound(self._gw, self._plugin, tenant)
        return _foreign(await self._gw.tenancy.connect(tenant, plugin, settings), self._plugin)

    async def remove(self, connection_id: str) -> None:
        """Disconnect a connection of a tenant bound to this plugin's sink (its source undoes
        it at the vendor, best effort); :class:`NotFound` for any other."""
        conn = await self._gw.tenancy.connection(connection_id)
        await _require_bound(self._gw, self._plugin, conn.tenant)
        await self._gw.tenancy.disconnect(connection_id)

    async def last_webhooks(self, tenant: str) -> dict[str, datetime]:
        """When each of the tenant's connections last had a webhook accepted (UTC), by
        connection id; those that never did are left out. At most a minute stale."""
        ids = [c.id for c in await self._gw.tenancy.connections(tenant)]
        return {cid: ms_to_dt(at) for cid, at in (await self._gw.activity.last(tenant, ids)).items()}

    async def reconciliations(self, tenant: str) -> dict[str, ReconcileStatus]:
        """How each of the tenant's connections last compared with its telephone system's call
        list (last success, failing), by connection id; those whose system has none are left out."""
        out = {}
        for conn in await self._gw.tenancy.connections(tenant):
            status = await self._gw.reconciliation.status(conn)
            if status is not None:
                out[conn.id] = status
        return out

    async def health(self, connection_id: str) -> ConnectionHealth:
        """The connection's health as its source reports it (``Source.health``); ``unknown``
        when its plugin is not loaded, or the report fails or takes too long."""
        conn = await self._gw.tenancy.connection(connection_id)
        source = self._gw.sources.get(conn.plugin)
        if source is None:
            return ConnectionHealth("unknown", "plugin_not_loaded")
        try:
            found = await asyncio.wait_for(source.health(self._gw.contexts[conn.plugin], conn), HEALTH_TIMEOUT)
        except Exception as exc:
            log.warning("connection health check failed", extra={"plugin": conn.plugin,
                                                                 "error": type(exc).__name__})
            return ConnectionHealth("unknown", "check_failed")
        return found if isinstance(found, ConnectionHealth) else ConnectionHealth("unknown", "check_failed")


class Users:
    """The core's telephony user directory (encrypted; name and e-mail deleted on logout)."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    def _mine(self, connection: Connection) -> Connection:
        if connection.plugin != self._plugin:
            raise NotFound("unknown connection")
        return connection

    async def put(self, connection: Connection, user: TelephonyUser) -> None:
        """Create or replace a user of one of this plugin's connections."""
        await self._gw.directory.put(self._mine(connection), user)

    async def get(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        return await self._gw.directory.get(connection, user_id)

    async def list(self, connection: Connection) -> list[TelephonyUser]:
        return await self._gw.directory.list(connection)

    async def find(self, tenant: str, *, email: str | None = None,
                   extension: str | None = None) -> builtins.list[tuple[Connection, TelephonyUser]]:
        """Users of any of the tenant's connections by e-mail or extension (mapping CRM users)."""
        return [(_foreign(c, self._plugin), u)
                for c, u in await self._gw.directory.find(tenant, email=email, extension=extension)]

    async def remove(self, connection: Connection, user_id: str | None = None) -> int:
        """Delete one user of this plugin's connection, or all of them."""
        return await self._gw.directory.remove(self._mine(connection), user_id)

    async def logout(self, connection: Connection, user_id: str) -> None:
        """The user logged out: keep only their id; every plugin hears of it. Audited."""
        await self._gw.directory.logout(self._mine(connection), user_id)

    async def for_event(self, event: CallEvent) -> TelephonyUser | None:
        """The telephony user an event belongs to."""
        return await self._gw.directory.for_event(event)


@dataclass
class CallMemory:
    """One call's state kept by a source between its webhooks (see :meth:`Calls.state`)."""

    value: Any
    #: the E.164 numbers the state is about: blind-indexed, so the core's data-subject export
    #: and erasure find it; anonymous or missing numbers are left out.
    phones: Sequence[str] = ()
    #: an optional lookup value (``find``): a second key such as a call session id
    index: str | None = None
    _loaded: Any = field(default=None, repr=False)


class Calls:
    """Per-call state of a source: read-modify-write, one webhook of a call at a time, written
    with the events it explains (it costs no commit of its own)."""

    KIND = "call"

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    def _storage(self, tenant: str) -> PluginStorage:
        return PluginStorage(self._gw.store, self._plugin, tenant)

    @contextlib.asynccontextmanager
    async def state(self, connection: Connection, key: str) -> AsyncIterator[CallMemory]:
        """Hold the call ``key`` of ``connection`` (other webhooks of it wait), load its state
        (``None`` the first time), and on leaving queue the changed state: it commits in the
        same transaction as, or an earlier one than, the events stored after it, so a crash
        never keeps events without the state that explains them. A ``None`` value deletes it.
        The state is a call record: purged with the call records after the retention period.

        When several gateway processes serve one store (replicas), two webhooks of one call may
        reach two of them: the call is then also held across processes (a lease in the store),
        and the changed state is committed before it is let go.
        """
        full = f"{connection.id}|{key}"
        storage = self._storage(connection.tenant)
        shared = self._gw.store.fleet is not None
        async with self._gw.locks.hold(f"{self._plugin}\x1fcall\x1f{full}"), contextlib.AsyncExitStack() as held:
            if shared:
                await held.enter_async_context(storage.lease(f"call:{_digest(full)}", ttl=30.0, wait=30.0))
            loaded = await storage.get(self.KIND, full)
            memory = CallMemory(loaded, _loaded=loaded)
            yield memory
            if memory.value == memory._loaded:
                return
            if memory.value is None:
                await storage.delete(self.KIND, full)
                return
            await storage.put(self.KIND, full, memory.value, index=memory.index, call_record=True,
                              phones=tuple(memory.phones), wait=shared)

    async def get(self, connection: Connection, key: str) -> Any:
        """A call's state without holding the call (for background work), ``None`` if none."""
        return await self._storage(connection.tenant).get(self.KIND, f"{connection.id}|{key}")

    async def find(self, connection: Connection, index: str) -> list[tuple[str, Any]]:
        """Call states of ``connection`` stored with this ``index``: ``(key, value)``."""
        prefix = f"{connection.id}|"
        return [(k[len(prefix):], v) for k, v in await self._storage(connection.tenant).find(self.KIND, index)
                if k.startswith(prefix)]

    async def forget(self, connection: Connection) -> int:
        """Delete every call state of ``connection`` (on disconnect)."""
        storage = self._storage(connection.tenant)
        prefix = f"{connection.id}|"
        removed = 0
        for key, _ in await storage.all(self.KIND):
            if key.startswith(prefix):
                removed += await storage.delete(self.KIND, key)
        return removed


class ClickToCallView:
    """Click-to-call for CRM plugins: start a call, recognise its events later."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    async def start(self, tenant: str, crm_call_id: str, *, number: str, email: str | None = None,
                    extension: str | None = None, line: str | None = None) -> OriginateResult:
        """Make the telephony user known by ``email`` (else ``extension``) ring, then dial
        ``number``, as this CRM's call ``crm_call_id``; ``line``, the tenant's number chosen
        in the CRM, picks which of the person's telephony users places the call."""
        return await self._gw.clicktocall.start(self._plugin, tenant, crm_call_id, number=number,
                                                email=email, extension=extension, line=line)

    async def find(self, event: CallEvent) -> str | None:
        """This CRM's call id if ``event``'s call was started with :meth:`start`, else ``None``."""
        return await self._gw.clicktocall.find(self._plugin, event)


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    """Calls of one period (an hour or a day, UTC) at a sink: ``written`` delivered, ``failed``
    with a dead letter (see ``Events.call_counts``)."""

    start: datetime
    written: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A dead letter of a sink: ``reason`` is the last error's code, ``state`` the state of
    the call event it carries (``None`` when the event is gone or restricted)."""

    id: int
    received_at: datetime
    failed_at: datetime
    attempts: int
    reason: str
    state: CallState | None


_PERIODS = {"hour": 3_600_000, "day": 86_400_000}


class Deliveries:
    """How the plugin's own sink is doing for one of its tenants: calls written and failed,
    dead letters, and retrying them (what the operator does with ``gateway deadletters``)."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    async def counts(self, tenant: str, *, since: datetime,
                     period: Literal["hour", "day"] = "day") -> builtins.list[DeliveryCount]:
        """Calls per ``period`` (counted from the epoch, so UTC hours and days) whose first
        event arrived at or after ``since``, oldest first; periods without calls are left out."""
        if period not in _PERIODS:
            raise BadRequest("period is hour or day")
        await _require_bound(self._gw, self._plugin, tenant)
        rows = await self._gw.store.events.call_counts(tenant, self._plugin, int(since.timestamp() * 1000),
                                                       _PERIODS[period])
        return [DeliveryCount(ms_to_dt(start), written, failed) for start, written, failed in rows]

    async def failed(self, tenant: str, *, limit: int = 100) -> builtins.list[FailedDelivery]:
        """The tenant's dead letters at this sink, newest first, at most ``limit``."""
        await _require_bound(self._gw, self._plugin, tenant)
        letters = [d for d in await self._gw.deadletters.list(tenant) if d.sink == self._plugin]
        out = []
        for d in sorted(letters, key=lambda d: d.id, reverse=True)[:limit]:
            event = await self._gw.store.events.load(tenant, d.event_seq) if d.event_seq else None
            out.append(FailedDelivery(d.id, ms_to_dt(d.received_at), ms_to_dt(d.updated_at), d.attempts,
                                      d.reason, event.state if event is not None else None))
        return out

    async def retry(self, tenant: str, delivery_id: int) -> None:
        """Queue one of the tenant's dead letters at this sink again; :class:`NotFound` for
        any other id."""
        await _require_bound(self._gw, self._plugin, tenant)
        if not any(d.id == delivery_id and d.sink == self._plugin for d in await self._gw.deadletters.list(tenant)):
            raise NotFound("no such dead letter")
        await self._gw.deadletters.replay(delivery_id, tenant)
        await self._gw.audit.record("deadletter.replayed", tenant=tenant, plugin=self._plugin,
                                    delivery=delivery_id)


class SubjectRights:
    """Data-subject rights for a CRM app's own users: the same code path as the operator's
    ``/admin/v1/tenants/{t}/subjects/...`` (every plugin's ``subject_*`` hooks, audited)."""

    def __init__(self, plugin: str, gw: Gateway) -> None:
        self._plugin = plugin
        self._gw = gw

    async def export(self, tenant: str, subject: Subject) -> dict[str, Any]:
        """Everything kept about the person in the tenant (a tenant bound to this plugin's sink)."""
        await _require_bound(self._gw, self._plugin, tenant)
        return await rights.export(self._gw, tenant, subject)

    async def erase(self, tenant: str, subject: Subject) -> dict[str, Any]:
        """Delete it: call events, telephony user entries and every plugin's records about
        the person. ``incomplete`` names plugins that failed."""
        await _require_bound(self._gw, self._plugin, tenant)
        return await rights.erase(self._gw, tenant, subject)


class PluginContext:
    """What the core offers one plugin. Attributes not documented here are the core's."""

    def __init__(self, name: str, gw: Gateway) -> None:
        self.name = name
        self._gw = gw
        self.tenants = Tenants(name, gw)
        self.connections = Connections(name, gw)
        self.users = Users(name, gw)
        self.calls = Calls(name, gw)
        self.clicktocall = ClickToCallView(name, gw)
        self.deliveries = Deliveries(name, gw)
        self.subjects = SubjectRights(name, gw)
        self.reconcile = ReconcileView(name, gw)

    @property
    def settings(self) -> Any:
        """The plugin's declared settings (see ``declare_settings``), ``None`` if it has none."""
        return self._gw.plugin_settings.get(self.name)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared HTTP client for vendor APIs (30 s total timeout by default)."""
        return self._gw.http

    @property
    def public_url(self) -> str:
        """The URL telephone systems and CRMs reach the gateway at."""
        return self._gw.config.public_url

    @property
    def retention_days(self) -> float:
        """How many days call records are kept (the operator's ``GATEWAY_RETENTION_DAYS``),
        for privacy pages."""
        return float(self._gw.config.retention_days)

    @property
    def max_body(self) -> int:
        """The largest request body the operator accepts on a webhook (bytes); a plugin's own
        vendor callbacks (``hooks`` routes) should refuse larger ones with 413."""
        return self._gw.config.max_body

    def app_url(self, path: str) -> str:
        """The public URL of one of the plugin's ``apps`` routes (OAuth redirects, pages)."""
        return f"{self.public_url}/apps/{self.name}{path}"

    def hook_url(self, path: str) -> str:
        """The public URL of one of the plugin's ``hooks`` routes (vendor callbacks)."""
        return f"{self.public_url}/hooks/{self.name}{path}"

    def webhook_url(self, connection: Connection) -> str:
        """The URL the telephone system must post this connection's events to."""
        return self._gw.webhook_url(connection)

    def storage(self, tenant: str) -> PluginStorage:
        """The plugin's own encrypted records for one tenant."""
        return PluginStorage(self._gw.store, self.name, tenant)

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialise work on ``key`` inside this process (keys are the plugin's own); for
        single-flight work across processes use ``storage(tenant).lease``."""
        return self._gw.locks.hold(f"{self.name}\x1f{key}")

    def count(self, what: str, outcome: str = "ok") -> None:
        """Count a happening in the metrics: ``token_refresh`` (``outcome`` ``ok``/``failed``),
        ``webhook_reactivated``, ``insecure_webhook``, ``ignored_notification``, or a short fixed
        name of the plugin's own. Never pass ids, numbers or other unbounded values."""
        metrics.count_plugin(self.name, what, outcome)

    async def audit(self, action: str, *, tenant: str | None = None, **ids: Any) -> None:
        """Append to the tamper-evident audit log: ``action`` a short dotted name
        (``user.login``), ``ids`` ids and counts only, never personal data."""
        await self._gw.audit.record(action, tenant=tenant, plugin=self.name, **ids)

    async def ingest(self, connection: Connection, events: Sequence[CallEvent]) -> int:
        """Store events found outside a webhook (a recording that became available, a call
        found by reconciliation) exactly as if they had arrived by webhook."""
        if connection.plugin != self.name:
            raise NotFound("unknown connection")
        return await self._gw.ingest.store(connection, events)

    async def recording_link(self, event: CallEvent) -> str | None:
        """Resolve the event's recording reference now (at delivery); never store or log it."""
        return await self._gw.recording_link(event)

    def run_detached(self, name: str, work: Callable[[], Any]) -> Any:
        """Run ``work()`` (a coroutine function) independently of the caller (an HTTP request
        that may be cancelled); the gateway lets it finish, within a grace period, at shutdown."""
        return self._gw.detached.spawn(f"{self.name}-{name}", work())
