"""Issue 17, item 5: the ``ONAPPINSTALL`` that completes a UI install sets the application
token every later event is checked against, so it must be Bitrix24's, for our app.

Until it arrives the tenant has our tokens but no application token. A sender holding any
token the portal accepts (another app's on the same portal, say) must not get to choose the
application token: with it, a forged ``ONAPPUNINSTALL`` would crypto-shred the tenant and a
forged ``ONEXTERNALCALLSTART`` would dial any number.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from aioresponses import CallbackResult
from bitrix24_fakes import (
    ENV,
    EVENT_ACCESS,
    FORM,
    MEMBER,
    OAUTH_RE,
    PORTAL,
    BitrixMock,
    _CompatResponse,
    calls,
    install_body,
    oauth_answer,
    oauth_calls,
    ok,
    ui_install_body,
    uninstall_body,
)
from gateway_bitrix24.records import get_tokens

OURS = {"ID": 12, "CODE": "app.abc123", "VERSION": 1, "STATUS": "L", "INSTALLED": True}
ANOTHER_APP = {"ID": 31, "CODE": "local.5f0e2c1b9a7d34.12345678", "VERSION": 3, "STATUS": "L", "INSTALLED": True}
FORGED_APP_TOKEN = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0"
GRANT_ACCESS, GRANT_REFRESH = "grant-access-of-our-app", "grant-refresh-of-our-app"


@pytest.fixture
def mock() -> Any:
    with BitrixMock(passthrough=["http://127.0.0.1"]) as m:
        yield m


def portal_apps(mock: Any, by_token: dict[str, dict[str, Any]]) -> None:
    """``app.info`` on the stored portal answers for the app each access token belongs to."""
    def answer(url: Any, **kwargs: Any) -> CallbackResult:
        app = by_token.get((kwargs.get("json") or {}).get("auth", ""))
        if app is None:
            return CallbackResult(status=401, payload={"error": "invalid_token", "error_description": "x"},
                                  response_class=_CompatResponse)
        return CallbackResult(payload=ok(app), response_class=_CompatResponse)
    mock.post(PORTAL + "app.info", callback=answer, repeat=True)


async def ui_installed(gateway_harness: Any, mock: Any) -> Any:
    """Our app installed through its page: tokens stored, no application token yet."""
    h = await gateway_harness(env=ENV)
    mock.get(OAUTH_RE, payload=oauth_answer())
    mock.post(PORTAL + "event.bind", payload=ok(True), repeat=True)
    resp = await h.client.post("/apps/bitrix24/install", data=ui_install_body(), headers=FORM)
    assert resp.status == 200
    return h


async def application_token_known(h: Any) -> bool:
    info = await h.admin("GET", f"/plugins/bitrix24/tenants/{MEMBER}", expect=200)
    return bool(info["application_token_known"])


async def test_the_install_event_of_our_app_completes_the_install(gateway_harness: Any, mock: Any) -> None:
    h = await ui_installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access=GRANT_ACCESS, refresh=GRANT_REFRESH))
    portal_apps(mock, {EVENT_ACCESS: OURS, GRANT_ACCESS: OURS})
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 200 and (await resp.json())["status"] == "completed"
    assert sorted(c["auth"] for c in calls(mock, "app.info")) == sorted([EVENT_ACCESS, GRANT_ACCESS])
    assert len(oauth_calls(mock)) == 2  # the UI install's exchange, then the event's grant
    tokens = await get_tokens(h.gw.contexts["bitrix24"].storage(MEMBER))
    assert tokens is not None and tokens.refresh_token == GRANT_REFRESH
    assert await application_token_known(h)


async def test_a_token_of_another_app_on_the_same_portal_sets_no_application_token(
        gateway_harness: Any, mock: Any) -> None:
    h = await ui_installed(gateway_harness, mock)
    # The OAuth server exchanges the refresh token for our client id (someone replays ours,
    # or Bitrix24 is mocked loosely); the access token is another app's on the same portal.
    mock.get(OAUTH_RE, payload=oauth_answer(access=GRANT_ACCESS, refresh=GRANT_REFRESH))
    portal_apps(mock, {EVENT_ACCESS: ANOTHER_APP, GRANT_ACCESS: OURS})
    forged = install_body(application_token=FORGED_APP_TOKEN)
    resp = await h.client.post("/hooks/bitrix24/events", data=forged, headers=FORM)
    assert resp.status == 401
    assert FORGED_APP_TOKEN not in await resp.text()
    assert not await application_token_known(h)
    # so the forged application token cannot uninstall the tenant
    resp = await h.client.post("/hooks/bitrix24/events", data=uninstall_body(FORGED_APP_TOKEN), headers=FORM)
    assert resp.status == 401
    await h.admin("GET", f"/tenants/{MEMBER}", expect=200)


async def test_a_grant_that_is_not_ours_sets_no_application_token(gateway_harness: Any, mock: Any) -> None:
    h = await ui_installed(gateway_harness, mock)
    # the event's refresh token is another app's: our client id and secret cannot exchange it
    mock.get(OAUTH_RE, status=401, payload={"error": "invalid_client", "error_description": "x"})
    portal_apps(mock, {EVENT_ACCESS: OURS})  # even an access token app.info would accept
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(application_token=FORGED_APP_TOKEN),
                               headers=FORM)
    assert resp.status == 401
    assert calls(mock, "app.info") == []  # refused before the portal was asked
    assert not await application_token_known(h)


async def test_a_grant_for_another_portal_sets_no_application_token(gateway_harness: Any, mock: Any) -> None:
    h = await ui_installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access=GRANT_ACCESS, refresh=GRANT_REFRESH,
                                            member="b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"))
    portal_apps(mock, {EVENT_ACCESS: OURS, GRANT_ACCESS: OURS})
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(application_token=FORGED_APP_TOKEN),
                               headers=FORM)
    assert resp.status == 401
    assert not await application_token_known(h)


@pytest.mark.parametrize("missing", ["access_token", "refresh_token"])
async def test_an_install_event_without_tokens_sets_no_application_token(
        gateway_harness: Any, mock: Any, missing: str) -> None:
    h = await ui_installed(gateway_harness, mock)
    portal_apps(mock, {EVENT_ACCESS: OURS})
    body = urlencode([(k, v) for k, v in parse_qsl(install_body().decode()) if k != f"auth[{missing}]"]).encode()
    resp = await h.client.post("/hooks/bitrix24/events", data=body, headers=FORM)
    assert resp.status == 401
    assert not await application_token_known(h)


@pytest.mark.parametrize("answer", [{}, {"ID": 12}, {"CODE": "app.abc123"}, ["ID", 12], {"ID": True, "CODE": "x"}])
async def test_an_app_info_answer_that_names_no_app_is_refused(gateway_harness: Any, mock: Any,
                                                                answer: Any) -> None:
    h = await ui_installed(gateway_harness, mock)
    mock.get(OAUTH_RE, payload=oauth_answer(access=GRANT_ACCESS, refresh=GRANT_REFRESH))
    portal_apps(mock, {EVENT_ACCESS: answer, GRANT_ACCESS: answer})
    resp = await h.client.post("/hooks/bitrix24/events", data=install_body(), headers=FORM)
    assert resp.status == 401
    assert not await application_token_known(h)
