"""The plugin context: bound to one plugin, it reaches only that plugin's data."""

from __future__ import annotations

from typing import Any

import pytest
from demo_secret import SECRET

from gateway import NotFound, TelephonyUser
from gateway.testing import Harness


@pytest.fixture
async def two(demo: Harness) -> tuple[Harness, Any]:
    conn = await demo.gw.tenancy.connection(demo.connection_id)  # type: ignore[attr-defined]
    return demo, conn


async def test_storage_is_the_plugins_own(two: tuple[Harness, Any]) -> None:
    h, _ = two
    await h.context("demo").storage("acme").put("secret", "k", {"api_key": "demo-only"})
    assert await h.context("demo").storage("acme").get("secret", "k") == {"api_key": "demo-only"}
    assert await h.context("recorder").storage("acme").get("secret", "k") is None
    assert await h.context("recorder").storage("acme").all("secret") == []


async def test_another_plugins_connection_is_seen_without_its_settings(two: tuple[Harness, Any]) -> None:
    h, conn = two
    own = await h.context("demo").connections.get(conn.id)
    foreign = await h.context("recorder").connections.get(conn.id)
    assert own.settings == {"secret": SECRET}
    assert foreign.settings == {} and foreign.id == conn.id and foreign.plugin == "demo"
    assert await h.context("recorder").connections.list() == []
    with pytest.raises(NotFound):
        await h.context("recorder").connections.own(conn.id)


async def test_a_plugin_cannot_change_another_plugins_connection(two: tuple[Harness, Any]) -> None:
    h, conn = two
    ctx = h.context("recorder")
    with pytest.raises(NotFound):
        await ctx.connections.update(conn.id, status="broken", reason="x")
    with pytest.raises(NotFound):
        await ctx.users.put(conn, TelephonyUser("u1", "Mallory"))
    with pytest.raises(NotFound):
        await ctx.ingest(conn, [])
    assert (await h.gw.tenancy.connection(conn.id)).status == "active"


async def test_users_found_across_plugins_carry_no_foreign_settings(two: tuple[Harness, Any]) -> None:
    h, conn = two
    await h.context("demo").users.put(conn, TelephonyUser("u1", "Ann", "ann@example.com", "23"))
    [(found_conn, user)] = await h.context("recorder").users.find("acme", email="ANN@example.com")
    assert user.user_id == "u1" and found_conn.settings == {}


async def test_a_sink_binds_only_itself(two: tuple[Harness, Any]) -> None:
    h, _ = two
    await h.admin("POST", "/tenants", {"id": "beta"}, expect=201)
    binding = await h.context("recorder").tenants.bind("beta")
    assert binding.plugin == "recorder"
    assert [b.plugin for b in await h.gw.tenancy.bindings("beta")] == ["recorder"]


async def test_call_state_is_exported_and_erased_by_the_core(two: tuple[Harness, Any]) -> None:
    h, conn = two
    ctx = h.context("demo")
    async with ctx.calls.state(conn, "c1") as call:
        assert call.value is None
        call.value = {"remote": "+4922112345678", "seen": ["ringing"]}
        call.phones = ["+4922112345678"]
    async with ctx.calls.state(conn, "c1") as call:
        assert call.value == {"remote": "+4922112345678", "seen": ["ringing"]}
    exported = await h.admin("POST", "/tenants/acme/subjects/export", {"phone": "+49 221 12345678"}, expect=200)
    records = exported["plugins"]["demo"]["records"]
    assert records == [{"kind": "call", "value": {"remote": "+4922112345678", "seen": ["ringing"]}}]
    erased = await h.admin("POST", "/tenants/acme/subjects/erase", {"phone": "+4922112345678"}, expect=200)
    assert erased["erased"]["plugins"]["demo"] == 1
    assert await ctx.calls.get(conn, "c1") is None
