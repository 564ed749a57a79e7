"""Moving house: copy a SQLite installation into an empty PostgreSQL database.

Rows are copied as they are: ciphertexts, blind indexes, wrapped tenant keys. Nothing is
decrypted or re-encrypted, so the PostgreSQL store opens them with the same master keys.
Everything goes in one transaction (``COPY`` per table): a failure leaves the target empty,
and the copy can simply be run again. Leases are not copied (they belong to the processes of
the old installation); the lanes of pending deliveries are made afresh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg

from ...errors import StoreError
from ..crypto import MasterKeyring
from ..schema import SCHEMA_VERSION
from ...config import public_dsn
from .database import why
from .schema import migrate

#: In an order that keeps references valid (tenants first).
TABLES = ("tenants", "connections", "sinks", "telephony_users", "events", "deliveries", "records",
          "record_phones", "restrictions", "clicktocall", "journal", "audit_log", "audit_anchor")
#: Identity columns: their sequences continue after the highest id the source ever used.
IDENTITIES = (("events", "seq"), ("deliveries", "id"), ("journal", "id"))
CHUNK = 5000

#: ``progress(table, copied, total)``
Progress = Callable[[str, int, int], None]


def _source(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise StoreError(f"there is no SQLite database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"the SQLite database has schema version {version}, this gateway {SCHEMA_VERSION}: "
                         "run this gateway on it once (any command) before moving it")
    waiting = int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    if waiting:
        conn.close()
        raise StoreError(f"the SQLite journal still holds {waiting} webhooks not yet interpreted: start the "
                         "SQLite gateway once and stop it cleanly (it interprets them), then migrate")
    return conn


def _check_keys(source: sqlite3.Connection, keyring: MasterKeyring) -> None:
    """Every tenant key must unwrap with the configured master keys: the copy keeps them as
    they are, so the gateway on PostgreSQL needs the same keys."""
    for tenant, kid, wrapped in source.execute("SELECT id, key_id, wrapped_key FROM tenants"):
        keyring.unwrap(tenant, kid, wrapped)


async def copy_sqlite(path: str, dsn: str, keyring: MasterKeyring, progress: Progress) -> dict[str, int]:
    """Copy the SQLite database at ``path`` into the empty database ``dsn``; return the rows
    per table, verified by counting both sides.

    Raises :class:`~gateway.errors.StoreError` (one line, no password) when the source is
    missing or of another schema version, a key does not unwrap, the target cannot be
    reached or is not empty, or the counts differ."""
    source = _source(path)
    try:
        _check_keys(source, keyring)
        try:
            target = await asyncpg.connect(dsn, server_settings={"application_name": "callgate-migrate"})
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open the PostgreSQL database {public_dsn(dsn)}: {why(exc)}") from None
        try:
            await migrate(target)
            for table in TABLES:
                if await target.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise StoreError(f"the target database is not empty (table {table} has rows): "
                                     "gateway migrate copies into an empty database only")
            async with target.transaction():
                for table in TABLES:
                    await _copy_table(source, target, table, progress)
                for table, column in IDENTITIES:
                    highest = max(_high_water(source, table), int(await target.fetchval(
                        f"SELECT COALESCE(MAX({column}), 0) FROM {table}")))
                    if highest:
                        await target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), $1)",
                                             highest)
                await target.execute(
                    "INSERT INTO lanes (sink, call_key, tenant) SELECT DISTINCT sink, call_key, tenant "
                    "FROM deliveries WHERE state='pending' ON CONFLICT DO NOTHING")
            return await _verify(source, target)
        finally:
            await target.close()
    finally:
        source.close()


def _high_water(source: sqlite3.Connection, table: str) -> int:
    """The highest id SQLite ever gave ``table`` (kept in ``meta`` beyond deleted rows)."""
    row = source.execute("SELECT value FROM meta WHERE key=?", (f"{table}_high_water",)).fetchone()
    return int(row[0]) if row else 0


async def _copy_table(source: sqlite3.Connection, target: asyncpg.Connection, table: str,
                      progress: Progress) -> None:
    columns = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
    total = int(source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
    done = 0
    progress(table, done, total)
    while rows := cursor.fetchmany(CHUNK):
        await target.copy_records_to_table(table, records=rows, columns=columns)
        done += len(rows)
        progress(table, done, total)


async def _verify(source: sqlite3.Connection, target: asyncpg.Connection) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        there = int(source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        here = int(await target.fetchval(f"SELECT COUNT(*) FROM {table}"))
        if here != there:
            raise StoreError(f"verification failed: {table} has {there} rows in SQLite but {here} in PostgreSQL")
        counts[table] = here
    return counts
