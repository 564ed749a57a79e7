"""Pytest fixtures for plugin authors (loaded automatically through the ``pytest11`` entry point).

``gateway_harness`` starts a real gateway (real store, real HTTP app) on a temporary database
with any extra in-process plugins, and a :class:`RecordingSink` that keeps what it receives::

    async def test_incoming(gateway_harness):
        h = await gateway_harness(env={"GATEWAY_PLACETEL_API_URL": "http://127.0.0.1:9/v2"})
        await h.create_tenant("acme")
        ...
        events = await h.recorder.wait_for(2)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import hookimpl
from .app import create_app
from .appkeys import GATEWAY
from .config import Config
from .context import PluginContext
from .events import CallEvent
from .plugins import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP  # re-export for plugin tests
from .runtime import Gateway
from .sinks import Delivery, Sink
from .store.crypto import generate_master_key

ADMIN_TOKEN = "test-admin-token-0123456789"


class RecordingSink(Sink):
    """A CRM stand-in that records every delivered event, in delivery order.

    Set ``fail_times`` to make the next N deliveries raise ``RetryableError``.
    """

    name = "recorder"

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_times = 0
        self._changed = asyncio.Event()

    @property
    def events(self) -> list[CallEvent]:
        return [d.event for d in self.deliveries]

    async def deliver(self, ctx: PluginContext, delivery: Delivery) -> None:
        from .errors import RetryableError
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RetryableError("recorder told to fail", code="TEST_FAILURE")
        self.deliveries.append(delivery)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[CallEvent]:
        """Wait until at least ``count`` events arrived; return them all."""
        async def until() -> None:
            while len(self.deliveries) < count:
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(until(), timeout)
        return self.events


class RecorderPlugin:
    """The pluggy plugin object that registers a :class:`RecordingSink`."""

    def __init__(self, sink: RecordingSink | None = None) -> None:
        self.sink = sink or RecordingSink()

    @hookimpl
    def register_sinks(self, register: Callable[[Sink], None]) -> None:
        register(self.sink)


def make_config(tmp_path: Path, env: Mapping[str, str] | None = None) -> Config:
    base = {
        "GATEWAY_DATABASE": str(tmp_path / "gateway.db"),
        "GATEWAY_MASTER_KEY": generate_master_key(),
        "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEWAY_RETRY_BASE": "0.01",
        "GATEWAY_RETRY_CAP": "0.2",
    }
    base.update(env or {})
    return Config.load(base)


class Harness:
    """A running gateway under test: HTTP client, the gateway object, the recording sink."""

    def __init__(self, client: Any, recorder: RecordingSink) -> None:
        self.client = client
        self.recorder = recorder

    @property
    def gw(self) -> Gateway:
        """The running core (for assertions about its state; plugins never get it)."""
        gateway: Gateway = self.client.app[GATEWAY]
        return gateway

    def context(self, plugin: str) -> PluginContext:
        """The context the core gives ``plugin``: what the plugin sees of the gateway."""
        return self.gw.contexts[plugin]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def set_env(self, **values: str) -> None:
        """Change settings of the running gateway (e.g. a plugin setting naming a connection id
        that only exists after connecting); they are checked as at start-up."""
        self.gw.reconfigure(values)

    async def admin(self, method: str, path: str, json: Any = None, expect: int | None = None) -> Any:
        resp = await self.client.request(method, f"/admin/v1{path}", json=json, headers=self.headers)
        body = await resp.json()
        if expect is not None:
            assert resp.status == expect, (resp.status, body)
        return body

    async def create_tenant(self, tenant: str, *, record: bool = True) -> None:
        """Create a tenant; with ``record`` bind it to the recording sink."""
        await self.admin("POST", "/tenants", {"id": tenant}, expect=201)
        if record:
            await self.admin("PUT", f"/tenants/{tenant}/sinks/recorder", {"settings": {}}, expect=200)

    async def connect(self, tenant: str, plugin: str, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create a connection through the admin API; return its JSON (id, webhook_url, ...)."""
        created: dict[str, Any] = await self.admin(
            "POST", f"/tenants/{tenant}/connections",
            {"plugin": plugin, "settings": dict(settings or {})}, expect=201)
        return created

    async def post_hook(self, plugin: str, connection_id: str, body: bytes,
                        headers: Mapping[str, str]) -> Any:
        return await self.client.post(f"/hooks/{plugin}/{connection_id}", data=body, headers=dict(headers))


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
def gateway_harness(tmp_path: Path, aiohttp_client: Any) -> HarnessFactory:
    """Factory: ``await gateway_harness(env={...}, plugins=[(name, obj)], disabled=[...])``."""
    async def start(env: Mapping[str, str] | None = None,
                    plugins: Iterable[tuple[str, object]] = (),
                    recorder: RecordingSink | None = None) -> Harness:
        sink = recorder or RecordingSink()
        config = make_config(tmp_path, env)
        app = create_app(config, extra_plugins=[("recorder", RecorderPlugin(sink)), *plugins])
        client = await aiohttp_client(app)
        return Harness(client, sink)
    return start
