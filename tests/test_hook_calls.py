"""Every hook reaches every plugin with its own context; one failing plugin never stops the
others, and the core reports which failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from gateway import Connection, PluginContext, Subject, TelephonyUser, hookimpl, setting
from gateway.errors import ConfigError, PluginError


class Spy:
    """An in-process plugin that records which hook reached it, with which context."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.ran = asyncio.Event()

    @hookimpl
    def startup(self, context: PluginContext) -> None:
        self.calls.append(("startup", context.name, None))

    @hookimpl
    async def shutdown(self, context: PluginContext) -> None:
        self.calls.append(("shutdown", context.name, None))

    @hookimpl
    def purge_expired(self, context: PluginContext, cutoff: datetime) -> int:
        self.calls.append(("purge_expired", context.name, cutoff))
        return 2

    @hookimpl
    async def subject_export(self, context: PluginContext, tenant: str, subject: Subject) -> dict[str, Any]:
        self.calls.append(("subject_export", context.name, tenant))
        return {"held": "nothing personal"}

    @hookimpl
    async def subject_erase(self, context: PluginContext, tenant: str, subject: Subject) -> int:
        self.calls.append(("subject_erase", context.name, tenant))
        return 1

    @hookimpl
    async def tenant_removed(self, context: PluginContext, tenant: str) -> None:
        self.calls.append(("tenant_removed", context.name, tenant))

    @hookimpl
    async def user_logged_out(self, context: PluginContext, connection: Connection, user_id: str) -> None:
        self.calls.append(("user_logged_out", context.name, user_id))

    @hookimpl
    def register_tasks(self, register: Any) -> None:
        async def tick(ctx: PluginContext) -> None:
            self.calls.append(("task", ctx.name, None))
            self.ran.set()
        register(name="spy-tick", interval=0.01, func=tick)

    def hooks(self, name: str) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] == name]


class Faulty:
    """Fails every hook that must reach every plugin."""

    @hookimpl
    async def tenant_removed(self, context: PluginContext, tenant: str) -> None:
        raise RuntimeError("the vendor is down")

    @hookimpl
    async def subject_erase(self, context: PluginContext, tenant: str, subject: Subject) -> int:
        raise RuntimeError("the vendor is down")

    @hookimpl
    async def subject_export(self, context: PluginContext, tenant: str, subject: Subject) -> int:
        raise RuntimeError("the vendor is down")

    @hookimpl
    async def user_logged_out(self, context: PluginContext, connection: Connection, user_id: str) -> None:
        raise RuntimeError("the vendor is down")


@pytest.fixture
async def spied(gateway_harness: Any) -> Any:
    spy = Spy()
    # the failing plugin is registered after the spy: pluggy calls it first
    h = await gateway_harness(plugins=[("spy", spy), ("faulty", Faulty())])
    await h.create_tenant("acme")
    return h, spy


@pytest.mark.hook("tenant_removed")
async def test_a_failing_plugin_does_not_keep_the_others_from_forgetting_a_tenant(spied: Any) -> None:
    h, spy = spied
    removed = await h.admin("DELETE", "/tenants/acme", expect=200)
    assert spy.hooks("tenant_removed") == [("tenant_removed", "spy", "acme")]
    assert removed["incomplete"] == ["faulty"]
    assert await h.gw.tenancy.get("acme") is None  # the core deleted everything anyway


@pytest.mark.hook("subject_export")
@pytest.mark.hook("subject_erase")
async def test_subject_rights_reach_every_plugin_and_name_the_failed_one(spied: Any) -> None:
    h, spy = spied
    exported = await h.admin("POST", "/tenants/acme/subjects/export", {"phone": "+4922112345678"}, expect=200)
    assert exported["plugins"]["spy"] == {"held": "nothing personal"}
    assert exported["incomplete"] == ["faulty"]
    erased = await h.admin("POST", "/tenants/acme/subjects/erase", {"phone": "+4922112345678"}, expect=200)
    assert erased["erased"]["plugins"]["spy"] == 1
    assert erased["incomplete"] == ["faulty"]
    assert [c[1:] for c in spy.calls if c[0].startswith("subject_")] == [("spy", "acme"), ("spy", "acme")]


@pytest.mark.hook("user_logged_out")
async def test_logout_reaches_every_plugin(spied: Any) -> None:
    h, spy = spied
    conn = await h.connect("acme", "demo", {"secret": "s3cret-s3cret"})
    connection = await h.gw.tenancy.connection(conn["id"])
    await h.gw.directory.put(connection, TelephonyUser("u1", "Ann", "ann@example.com"))
    heard = await h.gw.directory.logout(connection, "u1")
    assert spy.hooks("user_logged_out") == [("user_logged_out", "spy", "u1")]
    assert heard.failed == ("faulty",)
    user = await h.gw.directory.get(connection, "u1")
    assert user is not None and user.name is None and user.email is None


@pytest.mark.hook("startup")
@pytest.mark.hook("shutdown")
@pytest.mark.hook("register_tasks")
async def test_lifecycle_hooks_and_tasks_get_the_plugins_own_context(spied: Any) -> None:
    h, spy = spied
    assert spy.hooks("startup") == [("startup", "spy", None)]
    await asyncio.wait_for(spy.ran.wait(), 5)
    assert ("task", "spy", None) in spy.calls
    await h.gw.close()
    assert spy.hooks("shutdown") == [("shutdown", "spy", None)]


@pytest.mark.hook("purge_expired")
async def test_retention_counts_what_plugins_purged(spied: Any) -> None:
    h, spy = spied
    now = datetime.now(timezone.utc)
    counts = await h.gw.retention.purge(now=now)
    assert counts["plugin_records"] == 2
    [(_, name, cutoff)] = spy.hooks("purge_expired")
    assert name == "spy" and cutoff == now - timedelta(days=7)


class BadStart:
    @hookimpl
    def startup(self, context: PluginContext) -> None:
        raise RuntimeError("cannot start")


async def test_a_plugin_that_fails_to_start_stops_startup_naming_it(tmp_path: Any) -> None:
    from gateway.app import build_gateway
    from gateway.testing import make_config

    gw = build_gateway(make_config(tmp_path), extra_plugins=[("badstart", BadStart())])
    with pytest.raises(PluginError, match="'badstart' failed to start"):
        await gw.open()
    assert not gw.started


@dataclass(frozen=True)
class StrictSettings:
    api_url: str = setting("https://api.example", help="where the vendor lives")
    token: str = setting("", secret=True, help="the vendor's token")
    tries: int = setting(3)

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("setting tries must be at least 1")


class Declares:
    @hookimpl
    def declare_settings(self) -> type[StrictSettings]:
        return StrictSettings


@pytest.mark.hook("declare_settings")
async def test_declared_settings_reach_the_plugin_typed(gateway_harness: Any) -> None:
    h = await gateway_harness(env={"GATEWAY_STRICT_TRIES": "5", "GATEWAY_STRICT_TOKEN": "t0ken-value"},
                              plugins=[("strict", Declares())])
    settings = h.context("strict").settings
    assert settings == StrictSettings(tries=5, token="t0ken-value")
    h.set_env(GATEWAY_STRICT_TRIES="2")
    assert h.context("strict").settings.tries == 2


@pytest.mark.parametrize("env, message", [
    ({"GATEWAY_STRICT_TRIES": "many"}, "plugin strict: setting tries must be a number"),
    ({"GATEWAY_STRICT_TRIES": "0"}, "plugin strict: setting tries must be at least 1"),
    ({"GATEWAY_STRICT_RETRIES": "3"}, "plugin strict: unknown setting retries"),
])
def test_a_bad_setting_stops_startup_with_one_line(tmp_path: Any, env: dict[str, str], message: str) -> None:
    from gateway.app import build_gateway
    from gateway.testing import make_config

    with pytest.raises(ConfigError) as raised:
        build_gateway(make_config(tmp_path, env), extra_plugins=[("strict", Declares())])
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value) and "many" not in str(raised.value)
