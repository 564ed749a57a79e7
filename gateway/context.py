"""The plugin context: everything a plugin may use of the core, bound to the plugin's name.

Each plugin gets its own :class:`PluginContext` (hooks receive it as ``context``, source and
sink methods as ``ctx``, route handlers as ``request[gateway.CONTEXT]``, tasks as their
argument). Because it is bound to the plugin, the plugin never passes its own name, its storage
is its own (another plugin's records are out of reach), it changes only its own connections and
sink bindings, and it sees other plugins' connections without their settings.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import aiohttp

from . import metrics
from .errors import NotFound
from .events import CallEvent
from .models import Connection, SinkBinding, Tenant, TelephonyUser
from .sources import OriginateResult
from .store import PluginStorage

if TYPE_CHECKING:
    from .runtime import Gateway


def _foreign(conn: Connection, plugin: str) -> Connection:
    """Another plugin's connection as this plugin may see it: without its settings."""
    return conn if conn.plugin == plugin else replace(conn, settings={})


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
        """
        full = f"{connection.id}|{key}"
        storage = self._storage(connection.tenant)
        async with self._gw.locks.hold(f"{self._plugin}\x1fcall\x1f{full}"):
            loaded = await storage.get(self.KIND, full)
            memory = CallMemory(loaded, _loaded=loaded)
            yield memory
            if memory.value == memory._loaded:
                return
            if memory.value is None:
                await storage.delete(self.KIND, full)
                return
            await storage.put(self.KIND, full, memory.value, index=memory.index, call_record=True,
                              phones=tuple(memory.phones), wait=False)

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
