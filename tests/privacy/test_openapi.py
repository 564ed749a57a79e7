"""The admin API's OpenAPI document is served behind the token and lists every admin route."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import hookimpl, json_response


async def plugin_status(request: web.Request) -> web.Response:
    return json_response({"ok": True})


class AdminRoutePlugin:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        register(method="GET", path="/status", handler=plugin_status, area="admin")


async def test_every_admin_route_is_in_the_document(gateway_harness):
    h = await gateway_harness(plugins=[("extra", AdminRoutePlugin())])
    assert (await h.client.get("/admin/v1/openapi.json")).status == 401
    doc = await h.admin("GET", "/openapi.json", expect=200)
    assert doc["openapi"].startswith("3.") and doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    registered = {(route.method, route.resource.canonical) for route in h.client.app.router.routes()
                  if route.resource is not None and route.resource.canonical.startswith("/admin/v1/")
                  and route.method != "HEAD"}
    assert ("GET", "/admin/v1/plugins/extra/status") in registered
    for method, path in registered:
        assert method.lower() in doc["paths"].get(path[len("/admin/v1"):], {}), (method, path)
    for path, operations in doc["paths"].items():
        for op in operations.values():
            assert op["summary"] and {"401", "403"} <= set(op["responses"]), path
