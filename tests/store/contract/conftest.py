"""Fixtures of the store contract: every test runs once per backend in :data:`BACKENDS`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.models import Connection
from gateway.store.crypto import MasterKeyring, generate_master_key
from gateway.store.protocols import Store

import pgdb

from .backends import BACKENDS, CREATED, Backend, tenant_with_connection


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    yield BACKENDS[request.param]
    while CREATED:  # the test's own databases go with it
        await pgdb.drop(CREATED.pop())


@pytest.fixture
def keyring() -> MasterKeyring:
    return MasterKeyring.from_text(generate_master_key())


@pytest.fixture
async def store(backend: Backend, keyring: MasterKeyring, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend.open(tmp_path, keyring) as opened:
        yield opened


@pytest.fixture
async def acme(store: Store) -> Connection:
    """Tenant ``acme`` with one connection and the sink ``crm`` bound."""
    return await tenant_with_connection(store, "acme")
