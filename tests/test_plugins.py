"""Plugins are plugins: found by entry point, blockable, never imported by the core."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from demo_secret import SECRET
from demo_source import sign

from gateway import CONTEXT, Sink, Source, hookimpl
from gateway.errors import PluginError

ROOT = Path(__file__).parents[1]
GATEWAY_BIN = [sys.executable, "-m", "gateway"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    full.update(env or {})
    return subprocess.run([*GATEWAY_BIN, *args], capture_output=True, text=True, env=full, timeout=60)


def test_core_source_imports_no_plugin_package():
    offenders = []
    for path in (ROOT / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("gateway_")
                          or n.split(".")[0] in {"example_crm", "demo_source"}]
    assert offenders == []


def test_importing_the_core_loads_no_plugin_module():
    code = ("import sys, gateway, gateway.app, gateway.cli, gateway.testing; "
            "print([m for m in sys.modules if m.startswith('gateway_') or m in ('demo_source', 'example_crm')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_plugins_command_lists_versions_and_hooks():
    out = run_cli("plugins")
    assert out.returncode == 0, out.stderr
    lines = {line.split(" ")[0]: line for line in out.stdout.splitlines()}
    assert lines["demo"] == "demo 0.0.1: register_sources"
    assert lines["example_crm"] == "example_crm 0.0.1: declare_settings, register_sinks"


def test_disabled_plugins_are_not_loaded():
    out = run_cli("plugins", env={"GATEWAY_PLUGINS_DISABLED": "demo, example_crm"})
    assert out.returncode == 0
    names = [line.split(" ")[0] for line in out.stdout.splitlines()]
    assert "demo" not in names and "example_crm" not in names


async def test_disabled_source_gets_no_webhooks(gateway_harness):
    h = await gateway_harness(env={"GATEWAY_PLUGINS_DISABLED": "demo"})
    await h.create_tenant("acme")
    resp = await h.admin("POST", "/tenants/acme/connections", {"plugin": "demo", "settings": {}})
    assert resp == {"error": "no telephony plugin of that name is loaded"}
    assert (await h.post_hook("demo", "anything", b"{}", {"Content-Type": "application/json"})).status == 404


def _broken_distribution(tmp_path: Path) -> Path:
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gateway.plugins]\nbroken = broken_mod\n")
    (tmp_path / "broken_mod.py").write_text("raise ImportError('needs a library that is not there')\n")
    return tmp_path


def test_a_plugin_that_fails_to_import_stops_startup_naming_it(tmp_path):
    env = {"PYTHONPATH": str(_broken_distribution(tmp_path)), "GATEWAY_MASTER_KEY": "A" * 43 + "=",
           "GATEWAY_DATABASE": str(tmp_path / "db.sqlite")}
    for args in (("plugins",), ("serve",)):
        out = run_cli(*args, env=env)
        assert out.returncode == 1
        assert out.stderr.count("\n") == 1 and "'broken' failed to import" in out.stderr
        assert "Traceback" not in out.stderr
    assert run_cli("plugins", env=env | {"GATEWAY_PLUGINS_DISABLED": "broken"}).returncode == 0


@pytest.mark.hook("register_sinks")
async def test_third_party_sink_receives_events_without_core_changes(gateway_harness, aiohttp_server):
    received: list[dict] = []

    async def crm(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    crm_app = web.Application()
    crm_app.router.add_post("/calls", crm)
    server = await aiohttp_server(crm_app)
    h = await gateway_harness()
    await h.create_tenant("acme", record=False)
    await h.admin("PUT", "/tenants/acme/sinks/example_crm",
                  {"settings": {"url": str(server.make_url("/calls"))}}, expect=200)
    conn = await h.connect("acme", "demo", {"secret": SECRET})
    for eid, state in (("e1", "ringing"), ("e2", "answered"), ("e3", "ended")):
        body = orjson.dumps({"id": eid, "call": "c1", "state": state, "from": "+4922112345678",
                             "outcome": "answered" if state == "ended" else None})
        resp = await h.post_hook("demo", conn["id"], body,
                                 {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
        assert resp.status == 200
    for _ in range(200):
        if len(received) == 3:
            break
        await asyncio.sleep(0.02)
    assert [r["state"] for r in received] == ["ringing", "answered", "ended"]
    assert received[0]["number"] == "+4922112345678" and received[2]["outcome"] == "answered"


class Impostor:
    """Registers a source and a sink under other plugins' names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @hookimpl
    def register_sources(self, register):
        if self.kind == "source":
            register(type("Fake", (Source,), {"name": "placetel"})())

    @hookimpl
    def register_sinks(self, register):
        if self.kind == "sink":
            register(type("Fake", (Sink,), {"name": "bitrix24"})())


@pytest.mark.hook("register_sources")
@pytest.mark.parametrize("kind", ["source", "sink"])
def test_a_plugin_registers_only_under_its_own_name(tmp_path, kind):
    from gateway.app import build_gateway
    from gateway.testing import make_config

    with pytest.raises(PluginError, match=f"plugin 'impostor' registered a {kind} named"):
        build_gateway(make_config(tmp_path), extra_plugins=[("impostor", Impostor(kind))])


class Climber:
    """Tries to mount a route under another plugin's prefix with a crafted path."""

    @hookimpl
    def register_routes(self, register):
        async def steal(request):
            return web.Response(text="mine")
        register(method="GET", path="/../webex/callback", handler=steal)


@pytest.mark.hook("register_routes")
def test_a_route_cannot_climb_out_of_the_plugins_prefix(tmp_path):
    from gateway.app import build_gateway
    from gateway.testing import make_config

    with pytest.raises(PluginError, match="'climber' registered a route with a bad area or path"):
        build_gateway(make_config(tmp_path), extra_plugins=[("climber", Climber())])


class OnePage:
    @hookimpl
    def register_routes(self, register):
        async def whoami(request):
            ctx = request[CONTEXT]
            return web.json_response({"plugin": ctx.name, "url": ctx.app_url("/me")})
        register(method="GET", path="/me", handler=whoami)


@pytest.mark.hook("register_routes")
async def test_a_route_handler_finds_its_plugins_context(gateway_harness):
    h = await gateway_harness(plugins=[("pages", OnePage())])
    resp = await h.client.get("/apps/pages/me")
    assert resp.status == 200
    assert await resp.json() == {"plugin": "pages", "url": "http://127.0.0.1:8080/apps/pages/me"}
