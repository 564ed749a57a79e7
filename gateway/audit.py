"""The audit log of processing operations: append-only, hash-chained, free of personal data.

Each entry stores ``sha256(prev_hash + canonical entry)``; changing, removing or reordering
an entry breaks every hash after it, which :func:`verify` finds. Entries name *what* was done
with ids and counts only: never numbers, e-mails, names, tokens or links. A tenant appears
only as its audit pseudonym, which is forgotten when the tenant is removed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .errors import BadRequest, NotFound
from .logs import looks_personal

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("gateway.audit")

GENESIS = "0" * 64
_ACTION = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_ID_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: int
    action: str
    #: the tenant's audit pseudonym (``t-...``), not its id: see ``SQLiteStore.audit_ref``
    tenant_ref: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "action": self.action, "tenant_ref": self.tenant_ref,
                "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash}


def canonical(seq: int, at: int, action: str, tenant_ref: str | None, details: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted-key JSON of everything but the hashes."""
    return orjson.dumps({"seq": seq, "at": at, "action": action, "tenant_ref": tenant_ref,
                         "details": details}, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, entry: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + entry).hexdigest()


def clean_details(ids: Mapping[str, Any]) -> dict[str, Any]:
    """Check what a caller wants to record: short names, scalar values, nothing personal.

    Details are ids by construction and the log is permanent: a string that looks like a
    phone number, an e-mail, a link or a secret is refused (400), never silently altered.
    """
    out: dict[str, Any] = {}
    for name, value in ids.items():
        if not _ID_NAME.match(name):
            raise BadRequest("audit detail names are short lower-case identifiers")
        if value is None or isinstance(value, (bool, int, float)):
            out[name] = value
        elif isinstance(value, str):
            if len(value) > MAX_ID_LENGTH or looks_personal(value):
                raise BadRequest("audit details hold ids and counts, never numbers, e-mails, links or secrets")
            out[name] = value
        elif isinstance(value, Mapping) and all(isinstance(v, int) for v in value.values()):
            out[name] = {str(k)[:64]: int(v) for k, v in value.items()}
        else:
            raise BadRequest("audit details are strings, numbers, booleans or counts")
    return out


def check_action(action: str) -> str:
    if not _ACTION.match(action):
        raise BadRequest("audit actions are short lower-case names like 'user.login'")
    return action


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str = ""

    def line(self) -> str:
        if self.ok:
            return f"audit log intact: {self.checked} entries"
        return f"audit log broken at entry {self.broken_seq}: {self.problem}"


#: ``(seq, hash)`` of an entry as recorded elsewhere: the store's anchor, or a head logged earlier
Anchor = tuple[int, str]


def parse_anchor(text: str) -> Anchor:
    """``SEQ:HASH``, from the ``seq`` and ``hash`` fields of an ``audit log head`` log line."""
    seq, _, digest = text.partition(":")
    if not seq.isascii() or not seq.isdigit() or len(digest) != 64 \
            or any(c not in "0123456789abcdef" for c in digest):
        raise BadRequest("an anchor is SEQ:HASH, the seq and hash of an 'audit log head' log line")
    return int(seq), digest


def verify(entries: Iterable[AuditEntry], anchors: Iterable[Anchor] = ()) -> Verdict:
    """Walk the chain from the start; name the first entry that does not fit. Each anchor (the
    store's, heads from the logs) must name an entry of the chain with its hash: an anchor
    beyond the last entry means entries were cut off the end."""
    wanted = dict(anchors)
    prev, expected_seq, checked = GENESIS, 1, 0
    for e in entries:
        if e.seq != expected_seq:
            return Verdict(False, checked, e.seq, f"expected entry {expected_seq} here (entries missing)")
        if e.prev_hash != prev:
            return Verdict(False, checked, e.seq, "does not link to the entry before it")
        if chain_hash(prev, canonical(e.seq, e.at, e.action, e.tenant_ref, e.details)) != e.hash:
            return Verdict(False, checked, e.seq, "content does not match its hash (altered)")
        if wanted.get(e.seq, e.hash) != e.hash:
            return Verdict(False, checked, e.seq, "does not match the anchor recorded for it (replaced)")
        prev, expected_seq, checked = e.hash, expected_seq + 1, checked + 1
    beyond = [seq for seq in wanted if seq >= expected_seq]
    if beyond:
        return Verdict(False, checked, max(beyond),
                       f"entries cut off the end: the anchor names entry {max(beyond)}, "
                       f"the log ends at entry {expected_seq - 1}")
    return Verdict(True, checked)


class AuditLog:
    """Appends to the store's hash chain on behalf of the core and the plugins."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, action: str, *, tenant: str | None = None, batch: bool = False,
                     **ids: Any) -> None:
        """Append one entry: ``action`` is a short dotted name (``user.login``), ``ids`` are
        ids, plugin names and counts, never numbers, e-mails, names, tokens or links. A tenant
        appears only as its audit pseudonym. ``batch`` writes the entry with the next one or
        within seconds (for frequent entries such as the aggregated admin refusals)."""
        ref = await self._store.audit.ref(tenant) if tenant is not None else None
        await self.append_for(ref, action, defer=batch, **ids)

    async def entries(self, *, after: int = 0, limit: int | None = None,
                      tenant: str | None = None) -> list[AuditEntry]:
        """Entries in order (all queued ones written first); with ``tenant`` only its own.
        :class:`NotFound` for a tenant the log does not know."""
        await self._store.audit.flush()
        ref = None
        if tenant is not None:
            ref = await self._store.audit.ref(tenant)
            if ref is None:
                raise NotFound("unknown tenant")
        return await self._store.audit.entries(after=after, limit=limit, tenant_ref=ref)

    async def flush(self) -> None:
        """Write the entries queued with ``batch=True``."""
        await self._store.audit.flush()

    async def anchor(self) -> Anchor | None:
        """The chain's head as the store recorded it a second time (queued entries written first)."""
        await self._store.audit.flush()
        return await self._store.audit.anchor()

    async def log_head(self) -> None:
        """Log the head at INFO, so the operator's log store keeps a copy the database cannot
        rewrite: ``gateway audit verify --anchor SEQ:HASH`` compares with it."""
        head = await self.anchor()
        if head is not None:
            log.info("audit log head", extra={"seq": head[0], "hash": head[1]})

    async def append_for(self, tenant_ref: str | None, action: str, *, defer: bool = False,
                         **ids: Any) -> None:
        """Append under a pseudonym taken earlier (a tenant being removed loses its mapping)."""
        await self._store.audit.append(check_action(action), tenant_ref, clean_details(ids), defer=defer)
