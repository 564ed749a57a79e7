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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from . import hookimpl, reconcile
from .app import create_app
from .appkeys import GATEWAY
from .config import Config
from .context import PluginContext
from .events import CallEvent, CallState
from .plugins import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP  # re-export for plugin tests
from .metrics import REGISTRY
from .reconcile import ReconcileFailed as ReconcileFailed  # re-export: what a failed run raises
from .runtime import Gateway
from .sinks import Delivery, Sink
from .sources import Source
from .store.crypto import generate_master_key as generate_master_key  # re-export for plugin tests

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


SourceT = TypeVar("SourceT", bound=Source)
SinkT = TypeVar("SinkT", bound=Sink)


class SourcePlugin(Generic[SourceT]):
    """A pluggy plugin object that registers one source, kept as ``.source``: pass it to
    ``gateway_harness(plugins=[(name, SourcePlugin(MySource()))])``."""

    def __init__(self, source: SourceT) -> None:
        self.source = source

    @hookimpl
    def register_sources(self, register: Callable[[Source], None]) -> None:
        register(self.source)


class SinkPlugin(Generic[SinkT]):
    """A pluggy plugin object that registers one sink, kept as ``.sink``."""

    def __init__(self, sink: SinkT) -> None:
        self.sink = sink

    @hookimpl
    def register_sinks(self, register: Callable[[Sink], None]) -> None:
        register(self.sink)


class RecorderPlugin(SinkPlugin[RecordingSink]):
    """The pluggy plugin object that registers a :class:`RecordingSink`."""

    def __init__(self, sink: RecordingSink | None = None) -> None:
        super().__init__(sink or RecordingSink())


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
                        headers: Mapping[str, str], *, settle: bool = True) -> Any:
        """Post a webhook. With ``settle`` (the default) return only once a journaled request
        (a ``deferred`` source) was interpreted, so its events and state are in the store."""
        resp = await self.client.post(f"/hooks/{plugin}/{connection_id}", data=body, headers=dict(headers))
        if settle:
            await self.settled()
        return resp

    async def stored_events(self) -> int:
        """How many call events the store holds (for "this stored nothing" checks)."""
        rows = await self.gw.store.subjects.held_counts(0, 2**62)
        return sum(int(row["events"]) for row in rows)

    async def settled(self) -> None:
        """Wait until every acknowledged webhook was interpreted."""
        await self.gw.interpreter.drain()

    async def delivered(self, timeout: float = 5.0) -> list[CallEvent]:
        """Wait until the delivery queue is empty; every event the recorder got so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.gw.dispatcher.depth and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # a delivery handed over just now finishes
        return self.recorder.events


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


def ended(events: Iterable[CallEvent]) -> list[CallEvent]:
    """The ``ended`` events among ``events``: one per call written."""
    return [e for e in events if e.state is CallState.ENDED]


def metric(name: str, **labels: str) -> float:
    """A sample of the gateway's Prometheus registry; 0 when it was never set."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def no_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliation windows end now, not two minutes ago: the calls of a test are seconds old."""
    monkeypatch.setattr(reconcile, "SETTLE", timedelta(0))


# --- fuzzing -----------------------------------------------------------------------------

#: ``held_counts`` window end: far beyond anything stored (ms since the epoch).
_FOREVER_MS = 2**62


async def stored_counts(h: Harness) -> dict[str, Any]:
    """What a request could have stored, counted through the store's parts, so the check
    holds on every backend: the tenants, and per tenant its sink bindings and everything
    ``subjects.held_counts`` counts (events, telephony users, connections, plugin records,
    click-to-call rows, restrictions). Deliveries and leases change by themselves, and the
    audit log records authenticated admin access."""
    store = h.gw.store
    counts: dict[str, Any] = {"tenants": sorted(t.id for t in await store.tenants.list())}
    for row in await store.subjects.held_counts(0, _FOREVER_MS):
        tenant = row.pop("tenant")
        counts[tenant] = {**row, "sinks": [b.plugin for b in await store.sinks.bindings(tenant)]}
    return counts


async def check_answer(h: Harness, send: Callable[[], Awaitable[Any]]) -> int:
    """Send one fuzzed request and check the status policy: only 2xx or 4xx, no traceback, and
    a 4xx stores nothing. Returns the status. For property tests of plugin endpoints::

        @given(body=...)
        async def test_fuzz(my_harness, body):
            await check_answer(my_harness, lambda: my_harness.client.post(path, data=body))
    """
    before = await stored_counts(h)
    resp = await send()
    text = await resp.text()
    assert 200 <= resp.status < 300 or 400 <= resp.status < 500, (resp.status, text[:200])
    assert "Traceback" not in text
    if resp.status >= 400:
        assert await stored_counts(h) == before, "a refused request stored something"
    return int(resp.status)


def fuzz_settings(max_examples: int = 60) -> Any:
    """Hypothesis settings for HTTP property tests: bounded, deterministic, one harness for
    all examples (a function-scoped fixture is fine here)."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


#: Values that broke parsers before: overflowing numbers, digits ``int`` refuses, dates no
#: call has, bytes outside ASCII, control characters.
ODD_VALUES = ("99999999999", str(10**30), "-1", "0", "²", "٣", "1e9", "", " ", "\x00", "\udcff",
              "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2025-08-05T17:44:52",
              "anonymous", "+", "a" * 300, "[]", "%ff")


#: Characters a client can put in a header value (latin-1 without controls).
HEADER_CHARS = "".join(chr(c) for c in range(0x20, 0x100) if c != 0x7F)


def fuzz_bodies(seeds: Sequence[bytes]) -> Any:
    """A hypothesis strategy: bytes near real bodies (a seed with bytes inserted, replaced or
    cut off) and arbitrary bytes."""
    from hypothesis import strategies as st

    def mutate(seed: bytes, at: int, cut: int, junk: bytes) -> bytes:
        at = at % (len(seed) + 1)
        return seed[:at] + junk + seed[at + cut:]

    near = st.builds(mutate, st.sampled_from(list(seeds)), st.integers(0, 10_000), st.integers(0, 8),
                     st.binary(max_size=6))
    return st.one_of(near, st.sampled_from(list(seeds)).map(lambda s: s[: len(s) // 2]), st.binary(max_size=300))


def fuzz_forms(seeds: Sequence[bytes]) -> Any:
    """A hypothesis strategy: form bodies made from real ones, fields dropped, doubled or set to
    odd values (and odd keys added)."""
    from urllib.parse import parse_qsl, urlencode

    from hypothesis import strategies as st

    forms = [parse_qsl(s.decode(), keep_blank_values=True) for s in seeds]
    values = st.one_of(st.sampled_from(ODD_VALUES), st.text(max_size=20))

    def apply(pairs: list[tuple[str, str]], changes: list[tuple[int, str, str]]) -> bytes:
        out = list(pairs)
        for index, op, value in changes:
            i = index % max(len(out), 1)
            if op == "drop" and out:
                del out[i]
            elif op == "double" and out:
                out.append((out[i][0], value))
            elif op == "set" and out:
                out[i] = (out[i][0], value)
            else:
                out.append((value[:12] or "x", value))
        return urlencode(out, encoding="utf-8", errors="surrogatepass").encode()

    change = st.tuples(st.integers(0, 100), st.sampled_from(("drop", "double", "set", "add")), values)
    return st.builds(apply, st.sampled_from(forms), st.lists(change, max_size=4))


def fuzz_json(seeds: Sequence[bytes]) -> Any:
    """A hypothesis strategy: JSON bodies made from real ones, with values anywhere in them
    replaced by other JSON values (wrong types, nulls, odd strings) or removed."""
    import orjson
    from hypothesis import strategies as st

    docs = [orjson.loads(s) for s in seeds]
    odd = st.sampled_from([v for v in ODD_VALUES if "\udcff" not in v])
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),  # what orjson writes
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
    values = st.one_of(odd, st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                                         | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6))

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix] if prefix else []
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            found += paths(child, (*prefix, key))
        return found

    def apply(doc: Any, changes: list[tuple[int, bool, Any]]) -> bytes:
        doc = orjson.loads(orjson.dumps(doc))
        for index, remove, value in changes:
            options = paths(doc)
            if not options:
                break
            *parents, last = options[index % len(options)]
            node = doc
            for key in parents:
                node = node[key]
            if remove and isinstance(node, dict):
                del node[last]
            else:
                node[last] = value
        return orjson.dumps(doc)

    change = st.tuples(st.integers(0, 1000), st.booleans(), values)
    return st.builds(apply, st.sampled_from(docs), st.lists(change, min_size=1, max_size=3))


def corpus(name: str) -> list[bytes]:
    """The seed corpus of a fuzz target (``tests/fuzz/corpus/<name>/`` in the repository)."""
    folder = Path(__file__).resolve().parent.parent / "tests" / "fuzz" / "corpus" / name
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []
