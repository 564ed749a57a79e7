"""The embedded store: SQLite in WAL mode, every commit fsync'd, assembled from its parts.

One :class:`~.database.SQLiteDatabase` (connections, group-commit writer, key cache) is
shared by one object per part of :class:`gateway.store.protocols.Store`; parts that need
each other get what they need when they are made, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ...errors import Conflict
from ...models import Tenant
from ..common import ms_to_dt, now_ms, phone_key
from ..crypto import MasterKeyring
from .accounts import SQLiteConnections, SQLiteSinks
from .audit import SQLiteAudit
from .clicktocall import SQLiteClickToCall
from .database import PRAGMAS, SQLiteDatabase
from .events import SQLiteEvents
from .leases import SQLiteLeases
from .records import SQLiteRecords
from .subjects import SQLiteSubjects
from .tenants import SQLiteTenants
from .users import SQLiteUsers
from .writer import GroupCommitWriter

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _via(part: str, method: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[Any, P], R]:
    """For the compatibility section: the part's ``method`` under its old flat name."""
    def delegate(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(getattr(self, part), *args, **kwargs)
    return delegate


class SQLiteStore:
    """The store on one SQLite database (a file, or ``:memory:`` for nothing durable)."""

    def __init__(self, path: str, keyring: MasterKeyring) -> None:
        self.path = path
        self.keyring = keyring
        self.db = SQLiteDatabase(path, keyring)
        self.connections = SQLiteConnections(self.db)
        self.sinks = SQLiteSinks(self.db)
        self.users = SQLiteUsers(self.db)
        self.records = SQLiteRecords(self.db)
        self.leases = SQLiteLeases(self.db)
        self.subjects = SQLiteSubjects(self.db)
        self.audit = SQLiteAudit(self.db)
        self.clicktocall = SQLiteClickToCall(self.db)
        self.events = SQLiteEvents(self.db, restricted=self.subjects.restricted_keys,
                                   expiring=(("records", self.records.purge_batch),
                                             ("clicktocall", self.clicktocall.purge_batch)))
        self.tenants = SQLiteTenants(self.db, parts=(
            self.events, self.users, self.records, self.clicktocall, self.sinks, self.connections,
            self.subjects, self.leases, self.audit))

    async def open(self) -> None:
        await self.db.open(self.events.insert_batch, self.events.after_ingest)

    async def close(self) -> None:
        try:
            if self.db.writer is not None:
                await self.audit.flush()
        finally:
            await self.db.close()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def checkpoint(self) -> None:
        await self.db.checkpoint()

    def claim_serving(self) -> None:
        self.db.claim_serving()

    def file_paths(self) -> list[str]:
        return self.db.file_paths()

    # --- compatibility: removed once the core calls the parts ---

    @property
    def w(self) -> GroupCommitWriter:
        return self.db.w

    async def _all(self, sql: str, args: Any = ()) -> list[Any]:
        return await self.db.all(sql, args)

    async def _one(self, sql: str, args: Any = ()) -> Any:
        return await self.db.one(sql, args)

    async def ensure_tenant(self, tenant: str) -> Tenant:
        try:
            return await self.tenants.create(tenant)
        except Conflict:
            found = await self.tenants.get(tenant)
            assert found is not None
            return found

    @staticmethod
    def new_connection_id() -> str:
        return SQLiteConnections.new_id()

    create_tenant = _via("tenants", SQLiteTenants.create)
    get_tenant = _via("tenants", SQLiteTenants.get)
    list_tenants = _via("tenants", SQLiteTenants.list)
    set_tenant_status = _via("tenants", SQLiteTenants.set_status)
    keys = _via("tenants", SQLiteTenants.keys)
    rotate_keys = _via("tenants", SQLiteTenants.rotate_keys)
    remove_tenant = _via("tenants", SQLiteTenants.remove)
    add_connection = _via("connections", SQLiteConnections.add)
    get_connection = _via("connections", SQLiteConnections.get)
    list_connections = _via("connections", SQLiteConnections.list)
    update_connection = _via("connections", SQLiteConnections.update)
    delete_connection = _via("connections", SQLiteConnections.delete)
    bind_sink = _via("sinks", SQLiteSinks.bind)
    unbind_sink = _via("sinks", SQLiteSinks.unbind)
    sink_bindings = _via("sinks", SQLiteSinks.bindings)
    sink_binding = _via("sinks", SQLiteSinks.binding)
    ingest = _via("events", SQLiteEvents.ingest)
    load_event = _via("events", SQLiteEvents.load)
    pending_deliveries = _via("events", SQLiteEvents.pending)
    pending_after = _via("events", SQLiteEvents.pending_after)
    count_deliveries = _via("events", SQLiteEvents.count)
    finish_delivery = _via("events", SQLiteEvents.finish)
    retry_delivery = _via("events", SQLiteEvents.retry)
    dead_letter = _via("events", SQLiteEvents.dead)
    dead_letters = _via("events", SQLiteEvents.dead_letters)
    replay_dead_letter = _via("events", SQLiteEvents.replay)
    purge_before = _via("events", SQLiteEvents.purge_before)
    count_expired = _via("events", SQLiteEvents.count_expired)
    put_user = _via("users", SQLiteUsers.put)
    get_user = _via("users", SQLiteUsers.get)
    list_users = _via("users", SQLiteUsers.list)
    find_users = _via("users", SQLiteUsers.find)
    delete_users = _via("users", SQLiteUsers.delete)
    tenant_users = _via("users", SQLiteUsers.of_tenant)
    delete_user_keys = _via("users", SQLiteUsers.delete_keys)
    put_record = _via("records", SQLiteRecords.put)
    get_record = _via("records", SQLiteRecords.get)
    find_records = _via("records", SQLiteRecords.find)
    delete_record = _via("records", SQLiteRecords.delete)
    try_lease = _via("leases", SQLiteLeases.acquire)
    release_lease = _via("leases", SQLiteLeases.release)
    subject_events = _via("subjects", SQLiteSubjects.events)
    delete_subject_events = _via("subjects", SQLiteSubjects.delete_events)
    subject_key = _via("subjects", SQLiteSubjects.subject_key)
    restrict = _via("subjects", SQLiteSubjects.restrict)
    unrestrict = _via("subjects", SQLiteSubjects.unrestrict)
    restriction = _via("subjects", SQLiteSubjects.restriction)
    held_counts = _via("subjects", SQLiteSubjects.held_counts)
    audit_ref = _via("audit", SQLiteAudit.ref)
    append_audit = _via("audit", SQLiteAudit.append)
    flush_audit = _via("audit", SQLiteAudit.flush)
    audit_entries = _via("audit", SQLiteAudit.entries)
    # --- end of compatibility ---


if TYPE_CHECKING:
    from ..protocols import Store

    _implements: type[Store] = SQLiteStore

__all__ = ["PRAGMAS", "SQLiteDatabase", "SQLiteStore", "ms_to_dt", "now_ms", "phone_key"]
