"""``check_answer``, the property every fuzz test asserts, sees what a refused request stored
through the store's own parts, so it holds on every backend (no SQL, no database file)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from aiohttp import web

from gateway import CONTEXT, BadRequest, hookimpl
from gateway.appkeys import GATEWAY
from gateway.testing import check_answer


class Leaky:
    """A plugin whose route stores something, then refuses the request."""

    @hookimpl
    def register_routes(self, register: Any) -> None:
        async def leak(request: web.Request) -> web.Response:
            ctx, store = request[CONTEXT], request.app[GATEWAY].store
            what = request.query["what"]
            if what == "record":
                await ctx.storage("acme").put("note", "k", {"v": 1})
            elif what == "tenant":
                await ctx.tenants.ensure("newcomer")
            elif what == "binding":
                await store.sinks.bind("acme", "recorder", {})
            elif what == "restriction":
                key = await store.subjects.subject_key("acme", "phone", "+4922112345678")
                await store.subjects.restrict("acme", key, [], "object")
            elif what == "nothing+ok":
                return web.Response(text="fine")
            if what.endswith("+ok"):
                return web.Response(text="stored, and said so")
            raise BadRequest("refused")
        register(method="POST", path="/leak", handler=leak)


@pytest.fixture
async def leaky(gateway_harness: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    h = await gateway_harness(plugins=[("leaky", Leaky())])
    await h.create_tenant("acme", record=False)

    def no_file_access(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("check_answer must count through the store, not open the database file")
    monkeypatch.setattr(sqlite3, "connect", no_file_access)  # the store is open: it needs no new connection
    return h


@pytest.mark.parametrize("what", ["record", "tenant", "binding", "restriction"])
async def test_a_refused_request_that_stored_something_fails_the_check(leaky: Any, what: str) -> None:
    with pytest.raises(AssertionError, match="a refused request stored something"):
        await check_answer(leaky, lambda: leaky.client.post("/apps/leaky/leak", params={"what": what}))


@pytest.mark.parametrize("what", ["nothing", "nothing+ok", "record+ok"])
async def test_refusing_without_storing_or_storing_with_2xx_passes(leaky: Any, what: str) -> None:
    status = await check_answer(leaky, lambda: leaky.client.post("/apps/leaky/leak", params={"what": what}))
    assert status == (400 if what == "nothing" else 200)
