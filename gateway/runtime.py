"""The running gateway: the one object plugins get, owning store, HTTP client and registries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pluggy

from . import metrics
from .audit import check_action, clean_details
from .config import Config
from .delivery import RESCAN_INTERVAL, Dispatcher
from .errors import BadRequest, Conflict, GatewayError, NotFound, PluginError
from .events import CallEvent, CallState
from .locks import KeyedLocks
from .models import Connection, SinkBinding, TelephonyUser, Tenant
from .plugins import PluginInfo, Registry, await_all
from .sinks import Sink
from .sources import OriginateResult, Source, WebhookRequest
from .store import MasterKeyring, PluginStorage, Store

log = logging.getLogger("gateway")

RETENTION_INTERVAL = 3600.0
#: how often batched audit entries (admin access) are written at the latest
AUDIT_FLUSH_INTERVAL = 10.0
_EVENTS_BY_STATE = {state: metrics.EVENTS.labels(state.value) for state in CallState}


class Gateway:
    """Everything a plugin may use of the core, and the core's own lifecycle.

    Plugins reach it as the ``gateway`` hook argument or ``request.app[GATEWAY]``. Attributes
    not documented here are the core's business.
    """

    def __init__(self, config: Config, pm: pluggy.PluginManager, registry: Registry,
                 plugins: list[PluginInfo]) -> None:
        self.config = config
        self.pm = pm
        self.registry = registry
        self.plugins = plugins
        self.sources: Mapping[str, Source] = registry.sources
        self.sinks: Mapping[str, Sink] = registry.sinks
        if not config.master_key:
            raise GatewayError("no master key: set GATEWAY_MASTER_KEY or GATEWAY_MASTER_KEY_FILE "
                               "(or run `gateway serve --dev` for a development key)")
        self.store = Store(config.database, MasterKeyring.from_text(config.master_key,
                                                                     config.master_key_previous))
        self._http: aiohttp.ClientSession | None = None
        self.dispatcher = Dispatcher(self, concurrency=config.delivery_concurrency,
                                     horizon=config.delivery_horizon, retry_base=config.retry_base,
                                     retry_cap=config.retry_cap)
        self._background: list[asyncio.Task[None]] = []
        self._locks = KeyedLocks()
        self._purging: asyncio.Task[dict[str, int]] | None = None
        self.started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self, *, deliver: bool = True, background: bool = True) -> None:
        if deliver or background:
            self.store.claim_serving()  # before anything touches the database (migrations)
        try:
            await self.store.open()
        except BaseException:
            await self.store.close()
            raise
        try:
            await self._start(deliver, background)
        except BaseException:
            await self.close()
            raise

    async def _start(self, deliver: bool, background: bool) -> None:
        if deliver:
            self.store.w.after_ingest = self.dispatcher.submit
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await await_all(self.pm.hook.startup(gateway=self))
        if deliver:
            await self.dispatcher.start()
        if background:
            for task in self.registry.tasks:
                self._background.append(asyncio.create_task(
                    self._every(task.name, task.interval, task.func), name=f"task-{task.name}"))
            self._background.append(asyncio.create_task(
                self._every("retention", RETENTION_INTERVAL, lambda gw: gw.purge_now()), name="retention"))
            self._background.append(asyncio.create_task(
                self._every("audit", AUDIT_FLUSH_INTERVAL, lambda gw: gw.store.flush_audit()), name="audit"))
            if deliver:
                self._background.append(asyncio.create_task(self._every(
                    "deliveries", RESCAN_INTERVAL, lambda gw: gw.dispatcher.rescan()), name="rescan"))
        self.started = True

    async def close(self) -> None:
        """Stop background work, park deliveries, let plugins shut down, close the store."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self._purging is not None and not self._purging.done():
            self._purging.cancel()  # each batch is its own transaction: stopping is safe
            await asyncio.gather(self._purging, return_exceptions=True)
        await self.dispatcher.stop()
        try:
            await await_all(self.pm.hook.shutdown(gateway=self))
        finally:
            if self._http is not None:
                await self._http.close()
            await self.store.close()
            self.started = False

    async def _every(self, name: str, interval: float, func: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await func(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("background task failed", extra={"task": name, "error": type(exc).__name__})

    # --- what plugins use ------------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared HTTP client for vendor APIs (30 s total timeout by default)."""
        if self._http is None:
            raise RuntimeError("gateway is not open")
        return self._http

    def plugin_config(self, name: str) -> dict[str, str]:
        """The plugin's settings (``GATEWAY_<NAME>_*`` and ``[plugins.<name>]``)."""
        return self.config.plugin(name)

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialise work on ``key`` inside this process, e.g. the read-modify-write of one
        call's state while parsing its webhooks. Costs no commit; for single-flight work
        across processes (token refresh) use ``storage(...).lease``."""
        return self._locks.hold(key)

    def storage(self, plugin: str, tenant: str) -> PluginStorage:
        """The plugin's own encrypted records for one tenant."""
        return PluginStorage(self.store, plugin, tenant)

    def webhook_url(self, connection: Connection) -> str:
        """The URL the telephone system must post this connection's events to."""
        return f"{self.config.public_url}/hooks/{connection.plugin}/{connection.id}"

    def app_url(self, plugin: str, path: str) -> str:
        """The public URL of a plugin's ``apps`` route (OAuth redirects, install pages)."""
        return f"{self.config.public_url}/apps/{plugin}{path}"

    def hook_url(self, plugin: str, path: str) -> str:
        """The public URL of a plugin's ``hooks`` route (vendor callbacks such as event.bind)."""
        return f"{self.config.public_url}/hooks/{plugin}{path}"

    async def get_tenant(self, tenant: str) -> Tenant | None:
        """The tenant, or ``None`` when there is none of that id."""
        return await self.store.get_tenant(tenant)

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant (for periodic sweeps)."""
        return await self.store.list_tenants()

    async def connection(self, connection_id: str) -> Connection:
        found = await self.store.get_connection(connection_id)
        if found is None:
            raise NotFound("unknown connection")
        return found

    async def connections(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of a tenant, or with ``tenant=None`` of every tenant (for periodic tasks)."""
        return await self.store.list_connections(tenant, plugin)

    async def update_connection(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                                status: str | None = None, reason: str | None = None) -> Connection:
        """Replace a connection's settings or mark it ``broken`` (with a reason free of personal data)."""
        return await self.store.update_connection(connection_id, settings=settings, status=status, reason=reason)

    async def set_tenant_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        """Mark a tenant ``paused`` (a person must act, e.g. reinstall) or ``active`` again."""
        await self.store.set_tenant_status(tenant, status, reason)

    async def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant (and its data key) unless it exists."""
        try:
            await self.create_tenant(tenant)
        except Conflict:
            pass

    async def create_tenant(self, tenant: str) -> Tenant:
        """Create the tenant and its data key; :class:`Conflict` when it exists. Audited."""
        created = await self.store.create_tenant(tenant)
        await self.audit("tenant.installed", tenant=tenant)
        return created

    async def bind_sink(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        """Route the tenant's events to the sink ``plugin`` (replacing its settings if bound)."""
        if plugin not in self.sinks:
            raise NotFound("no sink plugin of that name is loaded")
        return await self.store.bind_sink(tenant, plugin, settings)

    # users ------------------------------------------------------------------------------

    async def put_user(self, connection: Connection, user: TelephonyUser) -> None:
        """Create or replace a telephony user of the connection's directory (encrypted)."""
        await self.store.put_user(connection, user)

    async def get_user(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        return await self.store.get_user(connection, user_id)

    async def list_users(self, connection: Connection) -> list[TelephonyUser]:
        return await self.store.list_users(connection)

    async def find_users(self, tenant: str, *, email: str | None = None,
                         extension: str | None = None) -> list[tuple[Connection, TelephonyUser]]:
        """Users of the tenant's connections by e-mail or extension, for mapping CRM users."""
        found = []
        for cid, user in await self.store.find_users(tenant, email=email, extension=extension):
            conn = await self.store.get_connection(cid)
            if conn is not None:
                found.append((conn, user))
        return found

    async def remove_users(self, connection: Connection, user_id: str | None = None) -> int:
        """Delete one user of the directory, or all of the connection's."""
        return await self.store.delete_users(connection, user_id)

    async def logout_user(self, connection: Connection, user_id: str) -> None:
        """Keep only the user's id with status ``logged_out``: name and e-mail go at once."""
        await self.store.put_user(connection, TelephonyUser(user_id, status="logged_out"))
        await self.store.checkpoint()  # the old ciphertext leaves the WAL too
        await self.audit("user.logout", tenant=connection.tenant, connection=connection.id,
                         plugin=connection.plugin)

    async def audit(self, action: str, *, tenant: str | None = None, batch: bool = False,
                    **ids: Any) -> None:
        """Append to the tamper-evident audit log: ``action`` is a short dotted name
        (``user.login``), ``ids`` are ids, plugin names and counts. Never pass numbers,
        e-mails, names, tokens or links (strings are redacted as a safety net). ``batch``
        writes the entry with the next one or within seconds (for frequent entries)."""
        ref = await self.store.audit_ref(tenant) if tenant is not None else None
        await self.store.append_audit(check_action(action), ref, clean_details(ids), defer=batch)

    async def user_for(self, event: CallEvent) -> TelephonyUser | None:
        """The telephony user an event belongs to, from its source's directory."""
        if not event.local_user or not event.connection_id:
            return None
        conn = await self.store.get_connection(event.connection_id)
        return await self.store.get_user(conn, event.local_user) if conn else None

    async def recording_link(self, event: CallEvent) -> str | None:
        """Resolve the event's recording reference now; never store or log the result."""
        if event.recording is None:
            return None
        source = self.sources.get(event.recording.source)
        conn = await self.store.get_connection(event.connection_id)
        if source is None or conn is None:
            return None
        return await source.resolve_recording(self, conn, event.recording)

    # --- core operations (admin API, CLI, plugins) -----------------------------------------

    async def connect(self, tenant: str, plugin: str, settings: dict[str, Any]) -> Connection:
        """Create a connection: the source checks the settings, the store seals them."""
        source = self.sources.get(plugin)
        if source is None:
            raise BadRequest("no telephony plugin of that name is loaded")
        if await self.store.get_tenant(tenant) is None:
            raise NotFound("unknown tenant")
        draft = Connection(self.store.new_connection_id(), tenant, plugin, dict(settings))
        stored = await source.connect(self, draft)
        created = await self.store.add_connection(
            Connection(draft.id, tenant, plugin, dict(stored)))
        await self.audit("connection.created", tenant=tenant, connection=created.id, plugin=plugin)
        return created

    async def _disconnect_at_vendor(self, conn: Connection) -> None:
        """Let the source undo its subscriptions; a vendor that fails must not block removal."""
        source = self.sources.get(conn.plugin)
        if source is None:
            return
        try:
            await source.disconnect(self, conn)
        except Exception as exc:
            log.warning("plugin failed to disconnect cleanly", extra={
                "plugin": conn.plugin, "error": type(exc).__name__})

    async def disconnect(self, connection_id: str) -> None:
        conn = await self.connection(connection_id)
        await self._disconnect_at_vendor(conn)
        await self.store.delete_connection(connection_id)
        await self.audit("connection.removed", tenant=conn.tenant, connection=conn.id, plugin=conn.plugin)

    async def remove_tenant(self, tenant: str) -> dict[str, int]:
        """Uninstall: plugins forget the tenant, then the core crypto-shreds it."""
        if await self.store.get_tenant(tenant) is None:
            raise NotFound("unknown tenant")
        for conn in await self.store.list_connections(tenant):
            await self._disconnect_at_vendor(conn)
        try:
            await await_all(self.pm.hook.tenant_removed(gateway=self, tenant=tenant))
        except Exception as exc:
            log.warning("a plugin failed while forgetting a tenant", extra={"error": type(exc).__name__})
        ref = await self.store.audit_ref(tenant)
        counts = await self.store.remove_tenant(tenant)
        await self.store.append_audit("tenant.removed", ref, clean_details({"deleted": counts}))
        await self.store.checkpoint()
        return counts

    async def accept(self, connection: Connection, request: WebhookRequest) -> int:
        """The webhook path after HTTP checks: verify and parse, then store durably."""
        source = self.sources[connection.plugin]
        events = await source.receive(self, connection, request)
        if not events:
            metrics.IGNORED.labels(connection.plugin).inc()
            return 0
        return await self.ingest(connection, events, received_at=request.received_at)

    async def ingest(self, connection: Connection, events: Sequence[CallEvent], *,
                     received_at: datetime | None = None) -> int:
        """Store events a source found outside a webhook (a recording that became available)
        exactly as if they had arrived by webhook: deduplicated, durable, then delivered."""
        if not events:
            return 0
        received = received_at or datetime.now(timezone.utc)
        stamped = [ev.stamped(source=connection.plugin, connection_id=connection.id,
                              tenant=connection.tenant) for ev in events]
        await self.store.ingest(connection, stamped, int(received.timestamp() * 1000))
        for ev in stamped:
            _EVENTS_BY_STATE[ev.state].inc()
        return len(stamped)

    async def originate(self, tenant: str, *, number: str, email: str | None = None,
                        extension: str | None = None, crm_call_id: str | None = None) -> OriginateResult:
        """Click-to-call for the telephony user known by ``email`` or ``extension``."""
        candidates: list[tuple[Connection, TelephonyUser]] = []
        if email:
            candidates = await self.find_users(tenant, email=email)
        if not candidates and extension:
            candidates = await self.find_users(tenant, extension=extension)
        candidates = [(c, u) for c, u in candidates if u.status == "active" and c.status == "active"]
        if not candidates:
            raise BadRequest("no telephony user is mapped to this CRM user")
        conn, user = candidates[0]
        result = self.pm.hook.originate_call(gateway=self, connection=conn, user=user,
                                             number=number, crm_call_id=crm_call_id)
        if result is None:
            raise PluginError("no plugin answered click-to-call for this connection")
        (value,) = await await_all([result])
        return value if isinstance(value, OriginateResult) else OriginateResult()

    async def purge(self, *, now: datetime | None = None,
                    progress: Any = None) -> dict[str, int]:
        """Retention: delete call records older than the retention period, in every plugin too."""
        cutoff = self.retention_cutoff(now)
        started = time.monotonic()
        counts = await self.store.purge_before(int(cutoff.timestamp() * 1000), progress=progress)
        for result in await await_all(self.pm.hook.purge_expired(gateway=self, cutoff=cutoff)):
            if isinstance(result, int):
                counts["plugin_records"] = counts.get("plugin_records", 0) + result
        for kind, n in counts.items():
            metrics.PURGED.labels(kind).inc(n)
        log.info("retention purge finished", extra={**counts, "seconds": round(time.monotonic() - started, 3)})
        await self.audit("retention.purge", deleted=counts)
        return counts

    async def purge_now(self) -> dict[str, int]:
        """Run the retention purge, or join the one already running; it finishes even when
        the caller goes away (an admin request cancelled by its client)."""
        if self._purging is None or self._purging.done():
            self._purging = asyncio.create_task(self.purge(), name="retention-purge")
        return await asyncio.shield(self._purging)

    def retention_cutoff(self, now: datetime | None = None) -> datetime:
        """Call records received before this moment are past the retention period."""
        return (now or datetime.now(timezone.utc)) - timedelta(days=self.config.retention_days)

    def count(self, what: str, *, plugin: str, outcome: str = "ok") -> None:
        """Count a plugin happening in the metrics. ``what`` is one of ``token_refresh``
        (with ``outcome`` ``ok``/``failed``), ``webhook_reactivated``, ``insecure_webhook``,
        ``ignored_notification``, or any short fixed name of the plugin's own. Never pass ids,
        numbers or other unbounded values."""
        if what == "token_refresh":
            metrics.TOKEN_REFRESHES.labels(plugin, outcome).inc()
        elif what == "webhook_reactivated":
            metrics.WEBHOOK_REACTIVATIONS.labels(plugin).inc()
        elif what == "insecure_webhook":
            metrics.INSECURE.labels(plugin).inc()
        elif what == "ignored_notification":
            metrics.IGNORED.labels(plugin).inc()
        else:
            metrics.PLUGIN_EVENTS.labels(plugin, what[:64]).inc()
