"""Throw-away PostgreSQL databases for the tests: each test that needs one creates its own
(``callgate_test_<random>``) and drops it afterwards, so runs never share state.

The server is ``CALLGATE_TEST_POSTGRES`` (default: 127.0.0.1:5432, trust authentication, the
``postgres`` maintenance database). When it cannot be reached, every PostgreSQL test fails
with one line saying so: CI must not pass by silently skipping them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("CALLGATE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres")


def dsn_of(database: str) -> str:
    """The DSN of ``database`` on the test server."""
    parts = urlsplit(ADMIN_DSN)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@cache
def unreachable() -> str | None:
    """Why the test server cannot be used, or ``None`` when it answers."""
    async def probe() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        await conn.close()
    try:  # in a thread of its own: the caller may be inside an event loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, probe()).result()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        where = urlsplit(ADMIN_DSN).netloc.rsplit("@", 1)[-1]
        return (f"PostgreSQL is not reachable at {where} ({type(exc).__name__}): the PostgreSQL tests need "
                "it; start it or set CALLGATE_TEST_POSTGRES")
    return None


def require() -> None:
    """Fail the calling test, in one line, when the test server cannot be reached."""
    reason = unreachable()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


async def create(name: str | None = None) -> str:
    """Create an empty database (a fresh random name unless ``name``); return its name."""
    name = name or "callgate_test_" + secrets.token_hex(6)
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def dump(name: str) -> bytes:
    """What ``pg_dump`` makes of the database: everything an attacker with a backup has."""
    binary = shutil.which("pg_dump")
    if binary is None:  # a skip would let CI pass without the at-rest check
        pytest.fail("pg_dump is not installed: the PostgreSQL at-rest test needs it", pytrace=False)
    return subprocess.run([binary, "--dbname", dsn_of(name)], check=True, capture_output=True,
                          timeout=120).stdout


@pytest.fixture
async def postgres_dsn() -> object:
    """A DSN of a fresh, empty database, dropped after the test."""
    require()
    name = await create()
    try:
        yield dsn_of(name)
    finally:
        await drop(name)
