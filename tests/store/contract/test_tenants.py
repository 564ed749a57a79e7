"""Tenants and their keys: create, status, key rotation under a new master key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import Conflict, NotFound
from gateway.store.crypto import MasterKeyring, generate_master_key
from gateway.store.protocols import Store

from .backends import Backend


async def test_create_get_list(store: Store) -> None:
    created = await store.tenants.create("b")
    await store.tenants.create("a")
    assert created.id == "b" and created.status == "active" and created.created_at is not None
    assert (await store.tenants.get("b")) == created
    assert [t.id for t in await store.tenants.list()] == ["a", "b"]
    assert await store.tenants.get("nobody") is None
    with pytest.raises(Conflict):
        await store.tenants.create("a")


async def test_status_and_reason(store: Store) -> None:
    await store.tenants.create("acme")
    await store.tenants.set_status("acme", "paused", "reinstall the app")
    tenant = await store.tenants.get("acme")
    assert tenant is not None and (tenant.status, tenant.status_reason) == ("paused", "reinstall the app")
    await store.tenants.set_status("acme", "active")
    tenant = await store.tenants.get("acme")
    assert tenant is not None and (tenant.status, tenant.status_reason) == ("active", None)
    with pytest.raises(NotFound):
        await store.tenants.set_status("nobody", "paused")


async def test_keys_are_per_tenant_and_unknown_tenants_have_none(store: Store) -> None:
    await store.tenants.create("a")
    await store.tenants.create("b")
    a, b = await store.tenants.keys("a"), await store.tenants.keys("b")
    assert a.blind_index("phone", "+49") == (await store.tenants.keys("a")).blind_index("phone", "+49")
    assert a.blind_index("phone", "+49") != b.blind_index("phone", "+49")
    with pytest.raises(NotFound):
        await store.tenants.keys("nobody")
    with pytest.raises(NotFound):
        await store.tenants.remove("nobody")


async def test_key_rotation_rewraps_and_keeps_data_readable(backend: Backend, tmp_path: Path) -> None:
    old, new = generate_master_key(), generate_master_key()
    async with backend.open(tmp_path, MasterKeyring.from_text(old)) as store:
        for t in ("a", "b", "c"):
            await store.tenants.create(t)
            await store.records.put(t, "p", "k", "key", {"v": t})

    async with backend.open(tmp_path, MasterKeyring.from_text(new, old)) as rotating:
        seen: list[tuple[int, int]] = []
        assert await rotating.tenants.rotate_keys(lambda done, total: seen.append((done, total))) == 3
        assert seen[-1] == (3, 3)
        assert await rotating.tenants.rotate_keys() == 0  # nothing left under the old key

    async with backend.open(tmp_path, MasterKeyring.from_text(new)) as only_new:
        assert await only_new.records.get("b", "p", "k", "key") == {"v": "b"}
