"""Tenants, their telephone connections and their CRM bindings: create, connect, remove.

Removing a tenant (uninstall) is the privacy promise "everything of a customer is deleted":
every plugin hears of it (one failing plugin does not stop the others), then the core
crypto-shreds the tenant's rows and key.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .audit import AuditLog
from . import reconcile
from .errors import BadRequest, Conflict, NotFound
from .events import forget_numbers
from .models import Connection, SinkBinding, Tenant
from .sinks import Sink
from .sources import Source

if TYPE_CHECKING:
    from .context import PluginContext
    from .journal import Interpreter
    from .plugins import PluginHost
    from .store import Store

log = logging.getLogger("gateway")


class Tenancy:
    def __init__(self, store: Store, audit: AuditLog, host: PluginHost,
                 sources: Mapping[str, Source], sinks: Mapping[str, Sink],
                 contexts: Mapping[str, PluginContext]) -> None:
        self._store = store
        self._audit = audit
        self._host = host
        self._sources = sources
        self._sinks = sinks
        self._contexts = contexts
        #: set by the runtime: journaled webhooks are interpreted before a tenant goes
        self.interpreter: Interpreter | None = None

    # --- tenants -------------------------------------------------------------------------

    async def get(self, tenant: str) -> Tenant | None:
        return await self._store.tenants.get(tenant)

    async def require(self, tenant: str) -> Tenant:
        found = await self._store.tenants.get(tenant)
        if found is None:
            raise NotFound("unknown tenant")
        return found

    async def list(self) -> list[Tenant]:
        return await self._store.tenants.list()

    async def create(self, tenant: str) -> Tenant:
        """Create the tenant and its data key; :class:`Conflict` when it exists. Audited."""
        created = await self._store.tenants.create(tenant)
        await self._audit.record("tenant.installed", tenant=tenant)
        return created

    async def ensure(self, tenant: str) -> Tenant:
        """The tenant, created (and audited) unless it exists."""
        try:
            return await self.create(tenant)
        except Conflict:
            return await self.require(tenant)

    async def set_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        """``paused`` while a person must act (reinstall), ``active`` again afterwards."""
        if status not in ("active", "paused"):
            raise BadRequest("a tenant is active or paused")
        await self._store.tenants.set_status(tenant, status, reason)

    async def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every tenant key under the current master key; audited with the key's id."""
        done = await self._store.tenants.rotate_keys(progress)
        await self._audit.record("keys.rotated", rewrapped=done, master_key_id=self._store.keyring.current_id)
        return done

    async def remove(self, tenant: str) -> dict[str, Any]:
        """Uninstall: connections undone at their vendors, every plugin forgets the tenant,
        then the core crypto-shreds it. Returns the counts and the plugins that failed."""
        await self.require(tenant)
        if self.interpreter is not None:
            await self.interpreter.drain()  # nothing of the tenant left half-interpreted
        for conn in await self._store.connections.list(tenant):
            await self._disconnect_at_vendor(conn)
        heard = await self._host.call_each("tenant_removed", tenant=tenant)
        ref = await self._store.audit.ref(tenant)
        counts = await self._store.tenants.remove(tenant)
        # the entry keeps the pseudonym, whose mapping to the tenant went with the tenant
        await self._audit.append_for(ref, "tenant.removed", deleted=counts, failed_plugins=len(heard.failed))
        await self._store.checkpoint()  # the files keep nothing of the tenant, the WAL included
        forget_numbers()  # nor does the number-normalisation cache
        return {"deleted": counts, "incomplete": list(heard.failed)}

    # --- sink bindings -------------------------------------------------------------------

    async def bind(self, tenant: str, plugin: str, settings: Mapping[str, Any]) -> SinkBinding:
        """Route the tenant's events to the sink ``plugin`` (replacing its settings if bound)."""
        if plugin not in self._sinks:
            raise NotFound("no sink plugin of that name is loaded")
        await self.require(tenant)
        return await self._store.sinks.bind(tenant, plugin, dict(settings))

    async def unbind(self, tenant: str, plugin: str) -> None:
        await self._store.sinks.unbind(tenant, plugin)

    async def bindings(self, tenant: str) -> builtins.list[SinkBinding]:
        return await self._store.sinks.bindings(tenant)

    async def binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        return await self._store.sinks.binding(tenant, plugin)

    # --- connections ---------------------------------------------------------------------

    async def find_connection(self, connection_id: str) -> Connection | None:
        """The connection, ``None`` when there is none of that id (a cached point read)."""
        return await self._store.connections.get(connection_id)

    async def connection(self, connection_id: str) -> Connection:
        """The connection; :class:`NotFound` when there is none of that id."""
        found = await self._store.connections.get(connection_id)
        if found is None:
            raise NotFound("unknown connection")
        return found

    async def connections(self, tenant: str | None = None, plugin: str | None = None) -> builtins.list[Connection]:
        """Connections of a tenant, of a plugin, or with neither of every tenant."""
        return await self._store.connections.list(tenant, plugin)

    async def update_connection(self, connection_id: str, *, settings: Mapping[str, Any] | None = None,
                                status: str | None = None, reason: str | None = None) -> Connection:
        """Replace a connection's settings or mark it ``broken`` (reason free of personal data)."""
        if status is not None and status not in ("active", "broken"):
            raise BadRequest("a connection is active or broken")
        return await self._store.connections.update(
            connection_id, settings=dict(settings) if settings is not None else None,
            status=status, reason=reason)

    async def connect(self, tenant: str, plugin: str, settings: Mapping[str, Any]) -> Connection:
        """Create a connection: the source checks the settings, the store seals them."""
        source = self._sources.get(plugin)
        if source is None:
            raise BadRequest("no telephony plugin of that name is loaded")
        await self.require(tenant)
        draft = Connection(self._store.connections.new_id(), tenant, plugin, dict(settings))
        stored = await source.connect(self._contexts[plugin], draft)
        created = await self._store.connections.add(Connection(draft.id, tenant, plugin, dict(stored)))
        if reconcile.can_reconcile(source):
            await reconcile.begin(self._store, created)  # its calls are reconcilable from now on
        await self._audit.record("connection.created", tenant=tenant, connection=created.id, plugin=plugin)
        return created

    async def disconnect(self, connection_id: str) -> None:
        """Undo the connection at its vendor (best effort), then delete it with its users."""
        conn = await self.connection(connection_id)
        await self._disconnect_at_vendor(conn)
        if reconcile.can_reconcile(self._sources.get(conn.plugin)):
            await reconcile.forget(self._store, conn)
        await self._store.connections.delete(connection_id)
        await self._audit.record("connection.removed", tenant=conn.tenant, connection=conn.id,
                                 plugin=conn.plugin)

    async def _disconnect_at_vendor(self, conn: Connection) -> None:
        """Let the source undo its subscriptions; a vendor that fails must not block removal."""
        source = self._sources.get(conn.plugin)
        if source is None:
            return
        try:
            await source.disconnect(self._contexts[conn.plugin], conn)
        except Exception as exc:
            log.warning("plugin failed to disconnect cleanly", extra={
                "plugin": conn.plugin, "error": type(exc).__name__})
