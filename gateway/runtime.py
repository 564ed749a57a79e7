"""The running gateway: assembles the store, the services and the plugin contexts, and runs
them (open, background work, close). It does no work of its own: ingest, tenancy, the user
directory, click-to-call and retention live in the modules named for them."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pluggy

from . import settings as plugin_settings
from .activity import FLUSH_INTERVAL as ACTIVITY_FLUSH_INTERVAL
from .activity import WebhookActivity
from .audit import AuditLog
from .clicktocall import ClickToCall
from .config import Config
from .context import PluginContext
from .delivery import RESCAN_INTERVAL, DeadLetters, Dispatcher, SharedDispatcher
from .detached import Detached
from .directory import Directory
from .errors import GatewayError, PluginError
from .events import CallEvent
from .ingest import Ingest
from .journal import Interpreter
from .locks import KeyedLocks
from .models import Connection
from .plugins import PluginHost, PluginInfo, Registry
from .reconcile import Reconciliation
from .retention import RETENTION_INTERVAL, Retention
from .sinks import Delivery, Sink
from .sources import Source
from .store import MasterKeyring, Store, open_store
from .tenancy import Tenancy

log = logging.getLogger("gateway")

#: how often batched audit entries (aggregated refusals) are written at the latest
AUDIT_FLUSH_INTERVAL = 10.0
#: how often the audit chain's head is logged, so the log store holds a copy (and at start, stop)
AUDIT_HEAD_INTERVAL = 3600.0


def load_plugin_settings(config: Config, schemas: Mapping[str, type[Any]]) -> dict[str, Any]:
    """Every plugin's declared settings, read and checked (a bad one stops start-up)."""
    return {name: plugin_settings.parse(name, schema, config.plugin(name)) for name, schema in schemas.items()}


class Gateway:
    """The core at run time. Plugins never see it: they get their :class:`PluginContext`."""

    def __init__(self, config: Config, pm: pluggy.PluginManager, registry: Registry,
                 plugins: list[PluginInfo]) -> None:
        if not config.master_key:
            raise GatewayError("no master key: set GATEWAY_MASTER_KEY or GATEWAY_MASTER_KEY_FILE "
                               "(or run `gateway serve --dev` for a development key)")
        self.config = config
        self.pm = pm
        self.registry = registry
        self.plugins = plugins
        self.sources: Mapping[str, Source] = registry.sources
        self.sinks: Mapping[str, Sink] = registry.sinks
        self.plugin_settings = load_plugin_settings(config, registry.settings)
        self.store: Store = open_store(config.database, MasterKeyring.from_text(
            config.master_key, config.master_key_previous))
        self.locks = KeyedLocks()
        self.detached = Detached()
        self.contexts: dict[str, PluginContext] = {}
        self.host = PluginHost(pm, self.contexts)
        self.audit = AuditLog(self.store)
        self.tenancy = Tenancy(self.store, self.audit, self.host, self.sources, self.sinks, self.contexts)
        self.directory = Directory(self.store, self.audit, self.host)
        self.ingest = Ingest(self.store, self.sources, self.contexts)
        self.interpreter = Interpreter(self.store, self.ingest, self.sources, self.contexts)
        self.ingest.interpreter = self.tenancy.interpreter = self.interpreter
        self.clicktocall = ClickToCall(self.store, self.directory, self.sources, self.contexts)
        self.retention = Retention(self.store, self.audit, self.host, config.retention_days)
        self.reconciliation = Reconciliation(self)
        self.contexts.update({info.name: PluginContext(info.name, self) for info in plugins})
        fleet = self.store.fleet
        # one process (SQLite) delivers everything; processes sharing a store, the lanes they hold
        self.dispatcher = (Dispatcher if fleet is None else functools.partial(SharedDispatcher, fleet=fleet))(
            self.store.events, self.sinks, self.store.sinks.binding, self._deliver,
            concurrency=config.delivery_concurrency, horizon=config.delivery_horizon,
            retry_base=config.retry_base, retry_cap=config.retry_cap)
        #: names this process in the leases of fleet-wide jobs
        self.process_id = secrets.token_hex(8)
        self.deadletters = DeadLetters(self.store.events, self.dispatcher)
        self.activity = WebhookActivity(self.store.connections)
        self._http: aiohttp.ClientSession | None = None
        self._background: list[asyncio.Task[None]] = []
        self.started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self, *, deliver: bool = True, background: bool = True) -> None:
        """Open the store and start serving: deliveries (``deliver``) and periodic work
        (``background``) only in the one process that serves the database."""
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
            self.store.events.on_ingest(self.dispatcher.submit)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        started = await self.host.call_each("startup")
        if started.failed:
            raise PluginError(f"plugin {started.failed[0]!r} failed to start")
        if deliver:
            await self.dispatcher.start()
            # Journaling (acknowledge first, interpret right after) needs one interpreter taking
            # webhooks in arrival order: a store that several replicas serve interprets each
            # webhook before acknowledging it instead, in the replica that received it.
            if self.store.fleet is None:
                await self.interpreter.start()  # after the dispatcher: it hands it the deliveries
        # every process that takes webhooks writes when it last took one per connection
        self._every("webhook-activity", ACTIVITY_FLUSH_INTERVAL, self.activity.flush, fleet_once=False)
        if background:
            for task in self.registry.tasks:
                self._every(task.name, task.interval, functools.partial(task.func, self.contexts[task.plugin]))
            self._every("retention", RETENTION_INTERVAL, self.retention.purge_now)
            self._every("audit", AUDIT_FLUSH_INTERVAL, self.store.audit.flush, fleet_once=False)
            self._every("audit-head", AUDIT_HEAD_INTERVAL, self.audit.log_head)
            await self.audit.log_head()
            if deliver:
                self._every("deliveries", RESCAN_INTERVAL, self.dispatcher.rescan)
        self.started = True

    async def close(self) -> None:
        """Stop background work, park deliveries, let plugins shut down, close the store."""
        background = bool(self._background)  # the audit head is logged where it was at start
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.retention.stop()
        await self.interpreter.stop()
        await self.dispatcher.stop()
        await self.detached.drain()
        try:
            await self.activity.flush()
        except Exception as exc:
            log.error("could not write the last webhook times", extra={"error": type(exc).__name__})
        try:
            await self.host.call_each("shutdown")
            if background:
                await self.audit.log_head()
        finally:
            if self._http is not None:
                await self._http.close()
            await self.store.close()
            self.started = False

    def _every(self, name: str, interval: float, func: Callable[[], Awaitable[Any]], *,
                fleet_once: bool = True) -> None:
        """Run ``func`` every ``interval`` seconds. On a store several processes serve, a
        ``fleet_once`` job runs once per interval across all of them: each process wakes at
        the same wall-clock ticks and only the one that takes the job's lease for the tick
        runs it (a process that died simply does not take the next one)."""
        shared = fleet_once and self.store.fleet is not None

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval - time.time() % interval if shared else interval)
                try:
                    if shared and not await self.store.leases.acquire(
                            f"\x1fjob\x1f{name}", self.process_id, interval * 0.8):
                        continue
                    await func()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("background task failed", extra={"task": name, "error": type(exc).__name__})
        self._background.append(asyncio.create_task(loop(), name=f"task-{name}"))

    def reconfigure(self, env: Mapping[str, str]) -> None:
        """Change settings of a running gateway (tests): plugin settings are read and checked
        again; a bad value raises and changes nothing."""
        config = self.config
        previous = config.env
        config.env = {**previous, **env}
        try:
            self.plugin_settings = load_plugin_settings(config, self.registry.settings)
        except BaseException:
            config.env = previous
            raise

    # --- what the services share ---------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("gateway is not open")
        return self._http

    def webhook_url(self, connection: Connection) -> str:
        """The URL the telephone system posts this connection's events to."""
        return f"{self.config.public_url}/hooks/{connection.plugin}/{connection.id}"

    async def _deliver(self, sink: Sink, delivery: Delivery) -> None:
        await sink.deliver(self.contexts[sink.name], delivery)

    async def recording_link(self, event: CallEvent) -> str | None:
        """Resolve the event's recording reference through its source; never stored."""
        if event.recording is None:
            return None
        source = self.sources.get(event.recording.source)
        conn = await self.store.connections.get(event.connection_id)
        if source is None or conn is None:
            return None
        return await source.resolve_recording(self.contexts[source.name], conn, event.recording)
