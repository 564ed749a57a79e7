"""``gateway migrate --to postgresql://...``: a SQLite installation moves into an empty
PostgreSQL database with its ciphertexts and keys unchanged, and opens there."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from gatewayproc import clean_env
from pgdb import postgres_dsn  # noqa: F401  (a fixture)

from gateway.audit import verify
from gateway.events import CallEvent, CallState, Direction
from gateway.models import Connection, TelephonyUser
from gateway.store.common import now_ms
from gateway.store.crypto import MasterKeyring, generate_master_key
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SQLiteStore

pytestmark = pytest.mark.postgres

CALLER = "+4922112345678"
USER = TelephonyUser("u1", "Anna Agentin", "anna@example.com", "23", ("+4940111222333",))


def migrate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "migrate", *args], capture_output=True, text=True,
                          env=clean_env(env), timeout=120)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("gateway: "), out.stderr
    return out.stderr


async def installation(path: Path, keyring: MasterKeyring) -> Connection:
    """A SQLite store that has seen a bit of everything: calls delivered and pending, a dead
    letter, a user, plugin records, a click-to-call, the audit chain."""
    store = SQLiteStore(str(path), keyring)
    await store.open()
    try:
        await store.tenants.create("acme")
        conn = await store.connections.add(Connection(store.connections.new_id(), "acme", "demo", {"secret": "s"}))
        await store.sinks.bind("acme", "crm", {"url": "https://crm.example"})
        await store.users.put(conn, USER)
        await store.records.put("acme", "p", "oauth", "token", {"access": "t0k"}, index="i")
        await store.records.put("acme", "p", "call", "c1", {"n": 1}, call_record=True, phones=(CALLER,))
        events = [CallEvent(f"e{n}", f"c{n % 3}", Direction.INBOUND, CallState.RINGING,
                            datetime.now(timezone.utc), remote_number=CALLER) for n in range(12)]
        await store.events.ingest(conn, events, now_ms())
        first, second, *_ = await store.events.pending(per_group=100)
        await store.events.finish(first.id)
        await store.events.dead(second.id, 3, "http_500")
        await store.clicktocall.add("acme", "crm-1", sink="crm", connection_id=conn.id, user_id="u1", number=CALLER)
        await store.audit.append("tenant.created", await store.audit.ref("acme"), {"n": 1})
        return conn
    finally:
        await store.close()


async def test_a_sqlite_installation_moves_and_opens_on_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    key = generate_master_key()
    keyring = MasterKeyring.from_text(key)
    sqlite_path = tmp_path / "gateway.db"
    conn = await installation(sqlite_path, keyring)
    env = {"GATEWAY_DATABASE": str(sqlite_path), "GATEWAY_MASTER_KEY": key}

    out = migrate("--to", postgres_dsn, env=env)
    assert out.returncode == 0, out.stderr
    assert "copied 12/12 rows of events" in out.stderr and "row counts of both databases match" in out.stdout

    store = PostgresStore(postgres_dsn, keyring)
    await store.open()
    try:
        assert await store.users.get(conn, "u1") == USER
        assert await store.connections.get(conn.id) == conn
        assert (await store.sinks.binding("acme", "crm")).settings == {"url": "https://crm.example"}  # type: ignore[union-attr]
        assert await store.records.get("acme", "p", "oauth", "token") == {"access": "t0k"}
        assert [r[2] for r in await store.records.by_phone("acme", CALLER)] == ["c1"]
        assert (await store.clicktocall.get("acme", "crm-1") or {}).get("number") == CALLER
        assert await store.events.count("pending") == 10 and len(await store.events.dead_letters()) == 1
        pending = await store.events.pending(per_group=100)
        assert (await store.events.load("acme", pending[0].event_seq) or events_none()).remote_number == CALLER
        assert verify(await store.audit.entries()).ok
        # the copied ids go on: new events and deliveries get fresh ones, and the old are still duplicates
        await store.events.ingest(conn, [CallEvent("e0", "c0", Direction.INBOUND, CallState.RINGING,
                                                   datetime.now(timezone.utc))], now_ms())
        await store.events.ingest(conn, [CallEvent("new", "c9", Direction.INBOUND, CallState.RINGING,
                                                   datetime.now(timezone.utc))], now_ms())
        fresh = await store.events.pending(per_group=100)
        assert len(fresh) == 11 and fresh[-1].id > pending[-1].id
        # the pending deliveries have lanes a replica can take
        assert {lane[1] for lane in await store.fleet.claim(100)} == {d.call_key for d in fresh}
    finally:
        await store.close()

    again = migrate("--to", postgres_dsn, env=env)
    assert again.returncode == 1 and "not empty" in one_line(again)


def events_none() -> CallEvent:
    raise AssertionError("the event does not open")


def test_wrong_targets_and_sources_are_one_clear_line(tmp_path: Path) -> None:
    key = generate_master_key()
    env = {"GATEWAY_DATABASE": str(tmp_path / "gateway.db"), "GATEWAY_MASTER_KEY": key}
    out = migrate("--to", "/var/lib/other.db", env=env)
    assert out.returncode == 2 and "postgresql://" in one_line(out)
    out = migrate("--to", "postgresql://127.0.0.1:5432/x", env=env)
    assert out.returncode == 1 and "no SQLite database at" in one_line(out)
    out = migrate("--to", "postgresql://127.0.0.1:5432/x", env={**env, "GATEWAY_DATABASE": "postgresql://h/db"})
    assert out.returncode == 1 and "SQLite database to copy from" in one_line(out)


async def test_an_unreachable_target_or_a_wrong_key_is_one_line_without_the_password(tmp_path: Path) -> None:
    key = generate_master_key()
    await installation(tmp_path / "gateway.db", MasterKeyring.from_text(key))
    env = {"GATEWAY_DATABASE": str(tmp_path / "gateway.db"), "GATEWAY_MASTER_KEY": key}
    out = migrate("--to", "postgresql://callgate:hunter2-secret@127.0.0.1:1/gateway", env=env)
    assert out.returncode == 1 and "cannot open the PostgreSQL database" in one_line(out)
    assert "hunter2" not in out.stderr + out.stdout
    out = migrate("--to", "postgresql://127.0.0.1:1/gateway", env={**env, "GATEWAY_MASTER_KEY": generate_master_key()})
    assert out.returncode == 1 and "master key" in one_line(out)
