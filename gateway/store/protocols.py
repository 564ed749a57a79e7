"""What a store backend implements: one protocol per area, and the :class:`Store` that holds them.

The core codes against these protocols only; SQLite (embedded) and PostgreSQL (replicas)
implement them, and ``tests/store/contract`` checks every backend against them.

Rules every backend keeps:

- Everything personal (phone numbers, names, e-mails, settings, tokens, event payloads) is
  encrypted with the tenant's data key before it reaches the database, with associated data
  naming tenant, table, column and row; lookups go through blind indexes (keyed digests).
- A write method returns once its change is durable (committed), unless it says otherwise.
- Errors never carry personal data: :class:`~gateway.errors.NotFound` and
  :class:`~gateway.errors.Conflict` name the kind of thing, not the value.
- Times are milliseconds since the epoch (``int``) unless typed as :class:`datetime`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypedDict

from ..audit import AuditEntry
from ..events import CallEvent
from ..models import Connection, SinkBinding, TelephonyUser, Tenant
from .common import JournalEntry
from .crypto import MasterKeyring, TenantKeys
from .records import DeadLetter, PendingDelivery

#: A ``(connection id, user id key, user)`` triple of the telephony directory.
UserRow = tuple[str, str, TelephonyUser]
#: A ``(seq, received_at, event)`` of a data subject; ``event`` is ``None`` when restricted.
SubjectEvent = tuple[int, int, CallEvent | None]


class ClickToCallRow(TypedDict):
    """A call started from a CRM, as :class:`ClickToCall` hands it out (decrypted)."""

    crm_call_id: str
    sink: str
    connection_id: str
    user_id: str
    number: str
    provider_call_id: str | None
    #: ``open`` when added, ``adopted`` once a provider call took it over; others are the core's
    state: str
    created_at: int
    updated_at: int


class Tenants(Protocol):
    """Customers and their data keys (envelope encryption under the master keyring)."""

    async def create(self, tenant: str) -> Tenant:
        """Create ``tenant`` with a fresh data key wrapped by the current master key.

        Raises :class:`~gateway.errors.Conflict` when it exists already."""

    async def get(self, tenant: str) -> Tenant | None:
        """The tenant, or ``None`` when there is none."""

    async def list(self) -> list[Tenant]:
        """Every tenant, ordered by id."""

    async def set_status(self, tenant: str, status: str, reason: str | None = None) -> None:
        """Set ``status`` (``active``, ``paused``) and its ``reason`` (no personal data).

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    async def keys(self, tenant: str) -> TenantKeys:
        """The tenant's unwrapped keys (cached).

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant and
        :class:`~gateway.store.DecryptError` when no configured master key unwraps it."""

    async def rotate_keys(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every tenant key not wrapped by the current master key; call
        ``progress(done, total)`` after each; return how many were re-wrapped."""

    async def remove(self, tenant: str) -> dict[str, int]:
        """Crypto-shred the tenant: its wrapped key and every row of it in every table
        (events, deliveries, users, records and their phones, click-to-call rows, sinks,
        connections, restrictions, its leases, those named ``tenant + "\\x1f" + ...``), then
        :meth:`Store.checkpoint` so no file keeps its plaintext. Returns deleted rows per table.

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""


class Connections(Protocol):
    """Tenants' accounts at telephone systems; settings (secrets included) sealed."""

    def new_id(self) -> str:
        """A fresh, unguessable connection id (it appears in webhook URLs)."""

    async def add(self, connection: Connection) -> Connection:
        """Store a new ``active`` connection; return it with its creation time.

        Raises :class:`~gateway.errors.NotFound` when its tenant does not exist."""

    async def get(self, connection_id: str) -> Connection | None:
        """The connection with decrypted settings, or ``None``."""

    async def list(self, tenant: str | None = None, plugin: str | None = None) -> list[Connection]:
        """Connections of one tenant, one plugin, both, or all, oldest first (ties within a
        millisecond in no promised order)."""

    async def update(self, connection_id: str, *, settings: dict[str, Any] | None = None,
                     status: str | None = None, reason: str | None = None) -> Connection:
        """Replace settings and/or status (``reason`` goes with a new status); return the result.

        Raises :class:`~gateway.errors.NotFound` for an unknown connection."""

    async def delete(self, connection_id: str) -> None:
        """Delete the connection and its telephony users (no error when it is gone)."""

    async def mark_seen(self, seen: Mapping[str, int]) -> None:
        """Record when each connection (by id) last received a webhook (ms), in one write.
        A time no later than the stored one changes nothing, so of several processes
        flushing their times the latest wins; ids of deleted connections are ignored."""

    async def last_seen(self, tenant: str) -> dict[str, int]:
        """When each of the tenant's connections last received a webhook (ms), for those
        that ever recorded one (:meth:`mark_seen`)."""


class Sinks(Protocol):
    """Which CRM (sink plugin) each tenant's events go to, with sealed settings."""

    async def bind(self, tenant: str, plugin: str, settings: dict[str, Any]) -> SinkBinding:
        """Bind (or re-bind with new settings) the sink ``plugin`` for ``tenant``.

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    async def unbind(self, tenant: str, plugin: str) -> None:
        """Unbind it and drop its pending deliveries.

        Raises :class:`~gateway.errors.NotFound` when it was not bound."""

    async def bindings(self, tenant: str) -> list[SinkBinding]:
        """The tenant's bindings, ordered by plugin name (cached).

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    async def binding(self, tenant: str, plugin: str) -> SinkBinding | None:
        """One binding, or ``None`` when ``plugin`` is not bound for ``tenant``."""


class Events(Protocol):
    """Call events and their deliveries: the durable queue the dispatcher schedules.

    Event seqs and delivery ids are never used twice, not even after their rows were deleted:
    the dispatcher holds them in memory, and a reused id would let a withdrawn delivery pass
    :meth:`is_pending` or :meth:`load` another event.
    """

    async def ingest(self, connection: Connection, events: Sequence[CallEvent], received_at_ms: int) -> None:
        """Store ``events`` durably, deduplicated per (connection, event id), with one
        ``pending`` delivery per sink bound to the tenant, in one commit that also holds
        every record queued before (``Records.put(wait=False)``). An event about a restricted
        person keeps only what deduplication needs and gets no delivery. Returns once durable.

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    def on_ingest(self, callback: Callable[[list[PendingDelivery]], None]) -> None:
        """Call ``callback`` with the fresh deliveries (events attached) after every
        committed ingest batch, on the event loop; one callback, the last one set wins.
        A failing callback is logged and does not fail the ingest."""

    async def load(self, tenant: str, seq: int) -> CallEvent | None:
        """The event ``seq`` of ``tenant``; ``None`` when it is gone or restricted."""

    async def pending(self, *, per_group: int) -> list[PendingDelivery]:
        """Pending deliveries in id order, at most the first ``per_group`` of each
        (tenant, sink), so a backlog never has to fit in memory. Events are not attached."""

    async def pending_after(self, tenant: str, sink: str, after: int, limit: int) -> list[PendingDelivery]:
        """The next ``limit`` pending deliveries of one (tenant, sink) with ids above
        ``after``, in id order. Events are not attached."""

    async def count(self, state: str) -> int:
        """How many deliveries are in ``state`` (``pending``, ``done``, ``dead``)."""

    async def is_pending(self, delivery_id: int) -> bool:
        """Whether the delivery still waits to be sent: ``False`` once it was finished,
        dead-lettered, erased, purged, withdrawn by a restriction or its sink unbound."""

    async def finish(self, delivery_id: int) -> None:
        """Mark the delivery done (no error when it is gone)."""

    async def retry(self, delivery_id: int, attempts: int, next_at: int, reason: str) -> None:
        """Record a failed attempt; it stays pending until ``next_at``. ``reason`` is a short
        code, never personal data."""

    async def dead(self, delivery_id: int, attempts: int, reason: str) -> None:
        """Give the delivery up: it becomes a dead letter with ``reason`` (a short code)."""

    async def dead_letters(self, tenant: str | None = None) -> list[DeadLetter]:
        """Dead letters of one tenant or all, in id order."""

    async def call_counts(self, tenant: str, sink: str, since_ms: int, bucket_ms: int) -> list[tuple[int, int, int]]:
        """How the tenant's calls fared at ``sink``, per period: ``(period start, written,
        failed)`` in time order, periods of ``bucket_ms`` counted from the epoch (UTC hours,
        days), periods without calls left out. A call (its deliveries to ``sink`` sharing a
        ``call_key``) counts in the period of its first delivery received at or after
        ``since_ms``; it *failed* when one of them is a dead letter, else it was *written*
        when one was delivered; calls still pending count as neither."""

    async def replay(self, delivery_id: int, tenant: str | None = None) -> PendingDelivery:
        """Make a dead letter pending again with a fresh retry horizon; return it.

        Raises :class:`~gateway.errors.NotFound` when there is no such dead letter (of
        ``tenant``, when given)."""

    async def purge_before(self, cutoff_ms: int, *, batch: int = 30,
                           progress: Callable[[int], None] | None = None) -> dict[str, int]:
        """Retention: delete every call record received or created before ``cutoff_ms``:
        events with their deliveries, plugin records marked ``call_record`` with their
        phones, click-to-call rows. Works in short transactions of ``batch`` rows that let
        other writes through; calls ``progress(events deleted)`` per batch, then checkpoints.
        Returns the counts (``events``, ``deliveries``, ``records``, ``clicktocall``)."""

    async def count_expired(self, cutoff_ms: int) -> int:
        """How many events :meth:`purge_before` with this cutoff would delete."""


class Users(Protocol):
    """The telephony user directory: encrypted users, found by blind-indexed e-mail or extension."""

    async def put(self, connection: Connection, user: TelephonyUser) -> None:
        """Create or replace ``user`` of ``connection``."""

    async def get(self, connection: Connection, user_id: str) -> TelephonyUser | None:
        """The user, or ``None``."""

    async def list(self, connection: Connection) -> list[TelephonyUser]:
        """Every user of the connection."""

    async def find(self, tenant: str, *, email: str | None = None,
                   extension: str | None = None) -> builtins.list[tuple[str, TelephonyUser]]:
        """Users of any of the tenant's connections with this e-mail (case-insensitive) or,
        without one, this extension: ``(connection id, user)``; ``[]`` when neither is given."""

    async def delete(self, connection: Connection, user_id: str | None = None) -> int:
        """Delete one user, or every user of the connection; return how many."""

    async def of_tenant(self, tenant: str) -> builtins.list[UserRow]:
        """Every user of the tenant: ``(connection id, user id key, user)``; the key names the
        user in events (``CallEvent.local_user``) and in :meth:`delete_keys`."""

    async def delete_keys(self, tenant: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Delete users by ``(connection id, user id key)``; return how many."""


class Records(Protocol):
    """Plugins' own records: JSON values under ``(tenant, plugin, kind, key)``, sealed."""

    async def put(self, tenant: str, plugin: str, kind: str, key: str, value: Any, *,
                  index: str | None = None, call_record: bool = False,
                  phones: Iterable[str] = (), wait: bool = True) -> None:
        """Create or replace a record. ``key`` and ``index`` are stored only as blind
        indexes; ``call_record`` makes retention purge it with the call records; ``phones``
        (E.164 numbers the record is about) are stored only as the phone blind index, and
        replace those of an earlier version, so :meth:`by_phone` finds it.

        ``wait=False`` queues the write and returns at once: :meth:`get` sees the value at
        once, and it commits in the same transaction as, or one before, anything stored
        after it (in particular the next ingested events). A failure is logged.

        Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    async def get(self, tenant: str, plugin: str, kind: str, key: str) -> Any:
        """The value (also a queued one), or ``None``."""

    async def find(self, tenant: str, plugin: str, kind: str, index: str | None = None) -> list[tuple[str, Any]]:
        """``(key, value)`` of ``kind`` with exactly this ``index`` (all when ``None``), oldest
        first (ties within a millisecond in no promised order)."""

    async def delete(self, tenant: str, plugin: str, kind: str, key: str | None = None) -> int:
        """Delete one record, or every record of ``kind`` when ``key`` is ``None`` (and
        their phones); return how many."""

    async def by_phone(self, tenant: str, phone: str) -> list[tuple[str, str, str, Any]]:
        """Every record of the tenant, of any plugin, stored with ``phone`` among its
        ``phones``: ``(plugin, kind, key, value)`` (includes records put before the call)."""

    async def delete_by_phone(self, tenant: str, phone: str) -> dict[str, int]:
        """Delete the records :meth:`by_phone` finds; return how many per plugin."""


class Leases(Protocol):
    """Named locks with a time to live, shared by every process on the store.

    A tenant's leases are named ``tenant + "\\x1f" + ...``: removing the tenant removes them.
    """

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``holder`` for ``ttl`` seconds: ``True`` when it was
        free, expired or already this holder's (then renewed), else ``False``."""

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""


class Subjects(Protocol):
    """Data-subject rights over the call events: find, erase, restrict one person's data."""

    async def events(self, tenant: str, phone: str | None,
                     user_keys: Iterable[str] = ()) -> list[SubjectEvent]:
        """Events of the tenant where ``phone`` is the remote or local number, or the local
        user is one of ``user_keys`` (see :meth:`Users.of_tenant`), in order:
        ``(seq, received_at, event)``; ``event`` is ``None`` for a restricted one."""

    async def delete_events(self, tenant: str, phone: str | None,
                            user_keys: Iterable[str] = ()) -> dict[str, int]:
        """Erase what :meth:`events` finds with their deliveries, then checkpoint; return
        the counts (``events``, ``deliveries``)."""

    async def subject_key(self, tenant: str, kind: str, value: str) -> str:
        """The blind index naming a person (``kind`` ``phone`` or ``email``, ``value``
        normalised). Raises :class:`~gateway.errors.NotFound` for an unknown tenant."""

    async def restrict(self, tenant: str, subject_key: str, match_keys: Iterable[str], kind: str) -> int:
        """Restrict (``kind`` ``restrict``) or object (``object``): events matching the subject
        key or any of ``match_keys`` (user id keys) are from now on kept without content and
        not forwarded, and pending deliveries of such events already stored are withdrawn.
        Returns how many deliveries were withdrawn."""

    async def unrestrict(self, tenant: str, subject_key: str) -> int:
        """Lift the restriction; return how many match keys it had (0: there was none)."""

    async def restriction(self, tenant: str, subject_key: str) -> str | None:
        """``restrict`` or ``object`` while the person is restricted, else ``None``."""

    async def held_counts(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per tenant (by id): counts of what the store holds from ``[since_ms, until_ms)``
        for a breach report: ``tenant``, ``events``, ``callers``, ``restricted_events``,
        ``telephony_users``, ``users_with_contact_data``, ``plugin_records`` (per plugin),
        ``connections``, ``clicktocall``, ``restricted_people`` (restrictions and objections
        in force). Counts only, never content. With a window from 0 to far ahead, it is
        everything the store holds per tenant (``gateway.testing.check_answer`` counts so)."""


class Audit(Protocol):
    """The tamper-evident audit log: a hash chain whose entries name no person."""

    async def ref(self, tenant: str) -> str | None:
        """The tenant's pseudonym in the log (made on first use); ``None`` for an unknown tenant."""

    async def append(self, action: str, tenant_ref: str | None, details: dict[str, Any], *,
                     defer: bool = False) -> None:
        """Append an entry, chained in the writer's transaction (serial across processes),
        after the chain's head: the last entry or, when it is further on, the anchor (so
        entries cut off the end stay a visible gap). The same transaction moves the anchor to
        the new head. ``defer`` only queues it until the next entry that is not deferred,
        :meth:`flush` or close. The caller has checked ``action`` and ``details`` (no personal
        data)."""

    async def anchor(self) -> tuple[int, str] | None:
        """The chain's head as written a second time by every append: ``(seq, hash)`` of the
        newest entry, ``None`` before the first. An anchor beyond the last entry means
        entries were cut off the end."""

    async def flush(self) -> None:
        """Write the deferred entries."""

    async def entries(self, *, after: int = 0, limit: int | None = None,
                      tenant_ref: str | None = None) -> list[AuditEntry]:
        """Entries with ``seq > after`` (of one tenant pseudonym, when given), in order."""


class ClickToCall(Protocol):
    """Calls started from a CRM, correlated with the provider call that carries them out.

    Rows are call records: sealed and blind-indexed (CRM call id, (connection, provider call
    id), (connection, user, number), number), purged by retention, removed with the tenant,
    and found and erased by phone number for data-subject requests.
    """

    async def add(self, tenant: str, crm_call_id: str, *, sink: str, connection_id: str,
                  user_id: str, number: str, provider_call_id: str | None = None) -> None:
        """Record a call the CRM asked for, in state ``open``. ``provider_call_id`` when the
        telephone system named its call at once (then :meth:`by_call` finds it).

        Raises :class:`~gateway.errors.Conflict` when ``crm_call_id`` is there already (a
        duplicate request: originate once) and :class:`~gateway.errors.NotFound` for an
        unknown tenant."""

    async def get(self, tenant: str, crm_call_id: str) -> ClickToCallRow | None:
        """The row, or ``None``."""

    async def by_call(self, tenant: str, connection_id: str, call_id: str) -> ClickToCallRow | None:
        """The row adopted by, or created with, this provider call of this connection."""

    async def candidates(self, tenant: str, *, connection_id: str, user_id: str, number: str,
                         since_ms: int) -> list[ClickToCallRow]:
        """Rows in state ``open`` without a provider call, for this connection, telephony
        user and number, created at or after ``since_ms``; oldest first."""

    async def adopt(self, tenant: str, crm_call_id: str, *, connection_id: str, call_id: str) -> None:
        """Bind the row to the provider call ``call_id`` and set state ``adopted``; again
        with the same call does nothing.

        Raises :class:`~gateway.errors.NotFound` for no such row and
        :class:`~gateway.errors.Conflict` when another provider call has it already."""

    async def set_state(self, tenant: str, crm_call_id: str, state: str) -> None:
        """Set the row's state (a short word, no personal data).

        Raises :class:`~gateway.errors.NotFound` for no such row."""

    async def older_than(self, cutoff_ms: int, states: Iterable[str]) -> list[tuple[str, ClickToCallRow]]:
        """``(tenant, row)`` of every tenant's rows in one of ``states`` last changed before
        ``cutoff_ms``, oldest change first (for a sweep that closes forgotten cards)."""

    async def delete(self, tenant: str, crm_call_id: str) -> None:
        """Delete the row (no error when it is gone)."""

    async def by_phone(self, tenant: str, phone: str) -> list[ClickToCallRow]:
        """The tenant's rows about ``phone`` (a data subject's export), oldest first."""

    async def delete_by_phone(self, tenant: str, phone: str) -> int:
        """Delete the rows :meth:`by_phone` finds (a data subject's erasure); return how many."""


class Journal(Protocol):
    """Webhooks acknowledged before they were interpreted (see :mod:`gateway.journal`).

    Each entry holds the request as received (body, headers, content type, query), sealed
    with the tenant's key; entries are call data: purged with the call records, deleted with
    the tenant, and deleted as soon as they were interpreted."""

    async def append(self, connection: Connection, body: bytes, headers: Sequence[tuple[str, str]],
                     content_type: str, query: Sequence[tuple[str, str]], received_at_ms: int) -> None:
        """Add an entry; return once it is durable (group commit: many appends, one fsync)."""

    async def pending(self, *, limit: int = 256) -> list[JournalEntry]:
        """The oldest entries (in the order they were appended), opened."""

    async def done(self, ids: Sequence[int]) -> None:
        """Delete interpreted entries."""

    async def count(self) -> int:
        """How many entries wait."""


class Fleet(Protocol):
    """What the processes serving one store together share (a store that only one process
    serves has none): who delivers which lane, and the rate budgets of destinations.

    A lane is ``(sink, call key)``: the deliveries of one call to one sink, which go out one
    after the other, so one process at a time holds it. A process that dies loses its lanes
    when their leases expire (after ``ttl`` seconds without renewal).
    """

    @property
    def ttl(self) -> float:
        """Seconds a lane lease lasts without renewal."""

    def holds(self, lane: tuple[str, str]) -> bool:
        """Whether this process surely holds ``lane`` now (from memory, with a safety margin)."""

    async def acquire(self, lanes: Sequence[tuple[str, str]]) -> builtins.list[tuple[str, str]]:
        """Take those of ``lanes`` that no other process holds (skipping any another process
        is changing this moment); return those this process now holds."""

    async def claim(self, limit: int, full: Iterable[tuple[str, str]] = ()) -> builtins.list[tuple[str, str, str]]:
        """Take over up to ``limit`` lanes nobody holds, except those of the ``(sink, tenant)``
        pairs in ``full``; return them as ``(sink, call key, tenant)``."""

    async def next(self, lane: tuple[str, str]) -> PendingDelivery | None:
        """The lane's first pending delivery (event not attached); ``None`` when none is left,
        in which case the lane was handed back (atomically: a delivery queued on it by another
        process meanwhile is either returned or lets that process take the lane)."""

    async def renew(self) -> int:
        """Extend the leases of this process's lanes; return how many."""

    async def drop(self, lanes: Iterable[tuple[str, str]]) -> None:
        """Hand these lanes back without looking at their deliveries."""

    async def release_all(self) -> None:
        """Hand every lane of this process back (a clean shutdown)."""

    async def reserve(self, bucket: str, rate: float, burst: int) -> float:
        """Take one request from the shared budget ``bucket`` (``rate`` per second, bursts of
        ``burst``); return the seconds to wait before making it."""

    async def sweep_buckets(self, idle: float = 3600.0) -> int:
        """Forget budgets unused for ``idle`` seconds; return how many."""


class Store(Protocol):
    """A whole store: its parts, and its lifecycle."""

    # the parts (read-only, so a backend may hold its own subclasses)
    @property
    def tenants(self) -> Tenants: ...
    @property
    def connections(self) -> Connections: ...
    @property
    def sinks(self) -> Sinks: ...
    @property
    def events(self) -> Events: ...
    @property
    def users(self) -> Users: ...
    @property
    def records(self) -> Records: ...
    @property
    def leases(self) -> Leases: ...
    @property
    def subjects(self) -> Subjects: ...
    @property
    def audit(self) -> Audit: ...
    @property
    def clicktocall(self) -> ClickToCall: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def fleet(self) -> Fleet | None:
        """``None`` when one process serves the store (SQLite): it delivers everything."""

    @property
    def path(self) -> str:
        """Where the database is (a file path, or a DSN without its password)."""

    @property
    def keyring(self) -> MasterKeyring:
        """The master keys that wrap the tenants' data keys."""

    async def open(self) -> None:
        """Connect and migrate the schema to the current version.

        Raises :class:`~gateway.errors.StoreError` when the database is newer than this
        gateway or cannot be opened."""

    async def close(self) -> None:
        """Write deferred audit entries, finish queued writes, disconnect, release the claim."""

    async def ping(self) -> bool:
        """Whether the database answers (readiness)."""

    async def checkpoint(self) -> None:
        """Let queued writes land, then make sure deleted plaintext leaves every file
        (SQLite: the WAL is moved into the main file and truncated)."""

    def claim_serving(self) -> None:
        """Become a process that delivers this store's queue and runs its background work.
        A store without a :attr:`fleet` allows one: it raises
        :class:`~gateway.errors.StoreError` when another process serves it."""

    def file_paths(self) -> list[str]:
        """The files that hold the data on this machine (scans, backups); ``[]`` for a server."""
