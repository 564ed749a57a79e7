"""Logout, token refresh, rate limits, webhook health, hostile input and privacy of the logs."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import BadRequest, ConnectionHealth, RetryableError
from gateway.testing import ADMIN_TOKEN
from gateway_webex import accounts, tasks
from gateway_webex.signature import sign
from webex_fixtures import (
    ACCESS_TOKEN,
    AGENT_EMAIL,
    AGENT_NAME,
    AGENT_PHONE,
    CALLER,
    CALLER_NAME,
    CLIENT_SECRET,
    ENV,
    INBOUND_ANSWERED,
    ORG,
    PERSON,
    REFRESH_TOKEN,
    SESSION,
    FakeWebex,
    Webex,
    envelope,
    fake_webex,  # noqa: F401  (fixture)
    login,
    webex,  # noqa: F401  (fixture)
)


async def _conn(webex: Webex) -> Any:
    return await webex.h.gw.tenancy.connection(webex.connection_id)


# --- logout ---------------------------------------------------------------------------------------

async def test_logout_by_the_user_deletes_webhooks_tokens_name_and_email(webex: Webex) -> None:
    hook_ids = set(webex.fake.webhooks)
    created_hook = webex.hook("telephony_calls", "created")
    resp = await login(webex.h, webex.connection_id, code="auth-code-2", path="/apps/webex/logout")
    assert resp.status == 200
    assert {r.path for r in webex.fake.requests("DELETE", "/webhooks/.*")} == {f"/webhooks/{h}" for h in hook_ids}
    assert webex.fake.webhooks == {}
    assert await webex.users() == [{"user_id": PERSON, "name": None, "email": None, "extension": None,
                                    "status": "logged_out"}]
    assert await accounts.load_tokens(webex.h.gw.contexts["webex"], await _conn(webex), PERSON) is None
    # a delivery still in flight is verified, acknowledged and dropped
    body = orjson.dumps(envelope(created_hook[0], "telephony_calls", "created", INBOUND_ANSWERED[0][1]))
    before = await webex.h.stored_events()
    resp = await webex.h.post_hook("webex", webex.connection_id, body, {
        "Content-Type": "application/json", "X-Spark-Signature": sign(created_hook[1], body)})
    assert resp.status == 200 and await webex.h.stored_events() == before
    # with a bad signature it is still refused
    resp = await webex.h.post_hook("webex", webex.connection_id, body, {
        "Content-Type": "application/json", "X-Spark-Signature": sign("wrong", body)})
    assert resp.status == 401
    assert webex.h.recorder.events == []


async def test_logout_of_an_unknown_person_changes_nothing(webex: Webex) -> None:
    webex.fake.profile = {**webex.fake.profile, "id": "SOMEONE-ELSE"}
    resp = await login(webex.h, webex.connection_id, code="auth-code-3", path="/apps/webex/logout")
    assert resp.status == 404
    assert (await webex.users())[0]["status"] == "active"
    assert len(webex.fake.webhooks) == 5


async def test_admin_logout(webex: Webex) -> None:
    path = f"/plugins/webex/tenants/acme/connections/{webex.connection_id}/users/{PERSON}/logout"
    resp = await webex.h.client.post(f"/admin/v1{path}")
    assert resp.status == 401  # no token
    body = await webex.h.admin("POST", path, expect=200)
    assert body == {"user_id": PERSON, "status": "logged_out"}
    assert webex.fake.webhooks == {}
    assert (await webex.users())[0] == {"user_id": PERSON, "name": None, "email": None, "extension": None,
                                        "status": "logged_out"}
    await webex.h.admin("POST", f"/plugins/webex/tenants/acme/connections/{webex.connection_id}/users/NOPE/logout",
                        expect=404)
    await webex.h.admin("POST", f"/plugins/webex/tenants/other/connections/{webex.connection_id}/users/{PERSON}"
                        "/logout", expect=404)


async def test_relogin_replaces_webhooks(webex: Webex) -> None:
    old = set(webex.fake.webhooks)
    resp = await login(webex.h, webex.connection_id, code="auth-code-4")
    assert resp.status == 200
    assert len(webex.fake.webhooks) == 5 and not old & set(webex.fake.webhooks)
    assert len(await webex.users()) == 1


async def test_disconnect_removes_webhooks_at_webex(webex: Webex) -> None:
    await webex.h.admin("DELETE", f"/tenants/acme/connections/{webex.connection_id}", expect=200)
    assert webex.fake.webhooks == {}


# --- tokens ------------------------------------------------------------------------------------------

async def test_periodic_refresh_renews_expiring_tokens(webex: Webex) -> None:
    conn = await _conn(webex)
    tokens = await accounts.load_tokens(webex.h.gw.contexts["webex"], conn, PERSON)
    assert tokens is not None
    assert await tasks.refresh_tokens(webex.h.gw.contexts["webex"]) == 1
    assert (await accounts.load_tokens(webex.h.gw.contexts["webex"], conn, PERSON)) == tokens  # not due yet
    await accounts.save_tokens(webex.h.gw.contexts["webex"], conn, PERSON, tokens.__class__(
        tokens.access_token, tokens.refresh_token, time.time() + 60, tokens.refresh_expires_at, tokens.scopes))
    await tasks.refresh_tokens(webex.h.gw.contexts["webex"])
    fresh = await accounts.load_tokens(webex.h.gw.contexts["webex"], conn, PERSON)
    assert fresh is not None and fresh.access_token == "access-token-refreshed-1"
    assert fresh.expires_at > time.time() + 1_000_000
    form = webex.fake.requests("POST", "/access_token")[-1].form
    assert form is not None and form["grant_type"] == "refresh_token" and form["refresh_token"] == REFRESH_TOKEN


async def test_refused_refresh_marks_user_needs_login(webex: Webex) -> None:
    conn = await _conn(webex)
    tokens = await accounts.load_tokens(webex.h.gw.contexts["webex"], conn, PERSON)
    assert tokens is not None
    await accounts.save_tokens(webex.h.gw.contexts["webex"], conn, PERSON, tokens.__class__(
        tokens.access_token, "revoked-refresh-token", time.time() + 60, tokens.refresh_expires_at, tokens.scopes))
    await tasks.refresh_tokens(webex.h.gw.contexts["webex"])
    users = await webex.users()
    assert users[0]["status"] == "needs_login" and users[0]["email"] == AGENT_EMAIL
    # the user's webhooks keep delivering meanwhile
    assert await webex.sequence(INBOUND_ANSWERED[:1]) == [200]
    assert len(await webex.h.recorder.wait_for(1)) == 1


async def test_401_refreshes_once_then_retries(webex: Webex) -> None:
    webex.fake.valid_tokens.discard(ACCESS_TOKEN)  # Webex revoked the access token early
    user = (await webex.h.gw.directory.list(await _conn(webex)))[0]
    result = await webex.h.gw.clicktocall.start("recorder", "acme", "crm-2", number="+4922112345678", email=user.email)
    assert result.call_id == SESSION  # the call session: one call per customer call
    dials = webex.fake.requests("POST", "/telephony/calls/dial")
    assert [d.headers["Authorization"] for d in dials] == [f"Bearer {ACCESS_TOKEN}",
                                                           "Bearer access-token-refreshed-1"]


async def test_401_after_refresh_marks_user_for_relogin(webex: Webex) -> None:
    webex.fake.valid_tokens.clear()
    webex.fake.script("POST", "/telephony/calls/dial", 401, {"message": "no"})
    webex.fake.script("POST", "/telephony/calls/dial", 401, {"message": "still no"})
    with pytest.raises(BadRequest):
        await webex.h.gw.clicktocall.start("recorder", "acme", "crm-3", number="+4922112345678", email=AGENT_EMAIL)
    assert (await webex.users())[0]["status"] == "needs_login"
    with pytest.raises(BadRequest):  # not offered for click-to-call until the user logs in again
        await webex.h.gw.clicktocall.start("recorder", "acme", "crm-4", number="+4922112345678", email=AGENT_EMAIL)


async def test_429_retry_after_is_honoured(webex: Webex) -> None:
    webex.fake.script("POST", "/telephony/calls/dial", 429, {"message": "slow down"}, {"Retry-After": "17"})
    with pytest.raises(RetryableError) as caught:
        await webex.h.gw.clicktocall.start("recorder", "acme", "crm-5", number="+4922112345678", email=AGENT_EMAIL)
    assert caught.value.retry_after == 17.0
    webex.fake.script("POST", "/telephony/calls/dial", 503, {"message": "down"})
    with pytest.raises(RetryableError):
        await webex.h.gw.clicktocall.start("recorder", "acme", "crm-6", number="+4922112345678", email=AGENT_EMAIL)


async def test_login_rate_limited_answers_503(webex: Webex) -> None:
    webex.fake.script("GET", "/people/me", 429, {"message": "slow down"}, {"Retry-After": "30"})
    resp = await login(webex.h, webex.connection_id, code="auth-code-5")
    assert resp.status == 503 and resp.headers["Retry-After"] == "30"


# --- webhook health ----------------------------------------------------------------------------------

async def test_inactive_webhook_is_reactivated_with_backoff(webex: Webex, caplog: Any) -> None:
    hook_id, _ = webex.hook("telephony_calls", "updated")
    webex.fake.webhooks[hook_id]["status"] = "inactive"
    caplog.set_level(logging.INFO)
    assert await tasks.check_webhooks(webex.h.gw.contexts["webex"]) == 1
    puts = webex.fake.requests("PUT", f"/webhooks/{hook_id}")
    assert len(puts) == 1 and puts[0].json["status"] == "active"
    assert puts[0].json["targetUrl"] == webex.h.gw.webhook_url(await _conn(webex))
    assert webex.fake.webhooks[hook_id]["status"] == "active"
    metrics = await (await webex.h.client.get("/metrics")).text()
    assert any(line.startswith("gateway_webhook_reactivations") and 'plugin="webex"' in line
               and not line.endswith(" 0.0") for line in metrics.splitlines())
    # disabled again at once: the next check waits (back-off) instead of hammering Webex
    webex.fake.webhooks[hook_id]["status"] = "inactive"
    assert await tasks.check_webhooks(webex.h.gw.contexts["webex"]) == 0
    assert len(webex.fake.requests("PUT", f"/webhooks/{hook_id}")) == 1
    assert PERSON not in caplog.text


async def test_health_follows_the_webhook_checks_and_logins(webex: Webex) -> None:
    """What a CRM's status page shows (``ctx.connections.health``), as the checks left it."""
    ctx, crm = webex.h.gw.contexts["webex"], webex.h.context("recorder")
    assert await crm.connections.health(webex.connection_id) == ConnectionHealth("ok")
    hook_id, _ = webex.hook("telephony_calls", "updated")
    webex.fake.webhooks[hook_id]["status"] = "inactive"
    webex.fake.script("PUT", f"/webhooks/{hook_id}", 500)  # and Webex refuses to re-activate it
    await tasks.check_webhooks(ctx)
    assert await crm.connections.health(webex.connection_id) == ConnectionHealth("failing", "webhook_disabled")
    webex.fake.webhooks[hook_id]["status"] = "active"
    await tasks.check_webhooks(ctx)
    assert await crm.connections.health(webex.connection_id) == ConnectionHealth("ok")

    conn = await _conn(webex)
    await ctx.users.put(conn, dataclasses.replace(await ctx.users.get(conn, PERSON), status="needs_login"))
    assert await crm.connections.health(webex.connection_id) == ConnectionHealth("failing", "login_needed")
    await accounts.logout(ctx, conn, PERSON)
    assert await crm.connections.health(webex.connection_id) == ConnectionHealth("unknown", "no_users")


# --- hostile input -------------------------------------------------------------------------------------

async def _nothing_stored(webex: Webex) -> None:
    st = webex.h.context("webex").storage("acme")
    assert await st.all("call") == []
    assert webex.h.recorder.events == []


@pytest.mark.parametrize("case", ["bad_signature", "no_signature", "unknown_webhook", "invalid_json",
                                  "not_an_object", "signed_garbage_data"])
async def test_hostile_input_is_refused_and_nothing_stored(webex: Webex, case: str) -> None:
    hook_id, secret = webex.hook("telephony_calls", "created")
    good = orjson.dumps(envelope(hook_id, "telephony_calls", "created", INBOUND_ANSWERED[0][1]))
    headers = {"Content-Type": "application/json"}
    body, expect = good, 401
    if case == "bad_signature":
        headers["X-Spark-Signature"] = sign("not-the-secret", good)
    elif case == "unknown_webhook":
        body = orjson.dumps(envelope("WH-unknown", "telephony_calls", "created", INBOUND_ANSWERED[0][1]))
        headers["X-Spark-Signature"] = sign(secret, body)
    elif case == "invalid_json":
        body, expect = b'{"id": "' + hook_id.encode() + b'", "data": {', 400
        headers["X-Spark-Signature"] = sign(secret, body)
    elif case == "not_an_object":
        body, expect = b"[1, 2, 3]", 400
    elif case == "signed_garbage_data":
        body = orjson.dumps(envelope(hook_id, "telephony_calls", "created", {"callId": 5, "state": []}))
        headers["X-Spark-Signature"], expect = sign(secret, body), 400
    resp = await webex.h.post_hook("webex", webex.connection_id, body, headers)
    assert resp.status == expect
    text = await resp.text()
    assert CALLER not in text and hook_id not in text
    await _nothing_stored(webex)


async def test_webhook_of_another_connection_is_refused(webex: Webex) -> None:
    other = await webex.h.connect("acme", "webex", {})
    hook_id, secret = webex.hook("telephony_calls", "created")
    body = orjson.dumps(envelope(hook_id, "telephony_calls", "created", INBOUND_ANSWERED[0][1]))
    resp = await webex.h.post_hook("webex", other["id"], body, {
        "Content-Type": "application/json", "X-Spark-Signature": sign(secret, body)})
    assert resp.status == 401
    await _nothing_stored(webex)


async def test_forged_or_expired_state_is_refused(webex: Webex) -> None:
    for state in ["garbage", "abc.def", f"{'x' * 40}.{'y' * 40}"]:
        resp = await webex.h.client.get("/apps/webex/callback", params={"code": "c", "state": state})
        assert resp.status == 400
    resp = await webex.h.client.get("/apps/webex/callback", params={"error": "access_denied"})
    assert resp.status == 400
    resp = await webex.h.client.get("/apps/webex/login?connection=nope", allow_redirects=False)
    assert resp.status == 404
    assert len(webex.fake.requests("POST", "/access_token")) == 1  # only the fixture's login


async def test_login_from_another_organisation_is_refused(webex: Webex) -> None:
    webex.fake.profile = {**webex.fake.profile, "id": "OTHER-PERSON", "orgId": "OTHER-ORG"}
    resp = await login(webex.h, webex.connection_id, code="auth-code-6")
    assert resp.status == 403
    assert [u["user_id"] for u in await webex.users()] == [PERSON]


async def test_connection_needs_operator_credentials(gateway_harness: Any, tmp_path: Path) -> None:
    h = await gateway_harness(env={})
    await h.create_tenant("acme")
    body = await h.admin("POST", "/tenants/acme/connections", {"plugin": "webex", "settings": {}}, expect=400)
    assert "GATEWAY_WEBEX_CLIENT_ID" in body["error"]
    # a second gateway, configured this time: its own database (one gateway serves a database)
    h2 = await gateway_harness(env={**ENV, "GATEWAY_DATABASE": str(tmp_path / "configured.db")})
    await h2.admin("POST", "/tenants", {"id": "beta"}, expect=201)
    await h2.admin("POST", "/tenants/beta/connections", {"plugin": "webex", "settings": {"region": "xx"}},
                   expect=400)


# --- privacy of the logs -------------------------------------------------------------------------------

async def test_no_personal_data_in_logs(gateway_harness: Any, fake_webex: tuple[FakeWebex, str],
                                        caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    fake, api = fake_webex
    h = await gateway_harness(env={**ENV, "GATEWAY_WEBEX_API_URL": api})
    await h.create_tenant("acme")
    conn = await h.connect("acme", "webex", {"org_id": ORG})
    assert (await login(h, conn["id"])).status == 200
    w = Webex(h=h, fake=fake, api=api, connection_id=conn["id"])
    await w.sequence(INBOUND_ANSWERED)
    await h.recorder.wait_for(3)
    await w.deliver("created", {"id": "rec-x"}, resource="convergedRecordings")
    fake.webhooks[w.hook("telephony_calls", "created")[0]]["status"] = "inactive"
    await tasks.check_webhooks(h.gw.contexts["webex"])
    await w.deliver("created", INBOUND_ANSWERED[0][1], secret="wrong")
    fake.valid_tokens.clear()
    fake.token_response["refresh_token"] = "rotated"
    with pytest.raises(BadRequest):
        await h.gw.clicktocall.start("recorder", "acme", "crm-7", number="+4922112345678", email=AGENT_EMAIL)
    assert (await login(h, conn["id"], path="/apps/webex/logout")).status == 200
    secrets_ = [hook["secret"] for hook in fake.webhooks.values()] + [
        r.json["secret"] for r in fake.requests("POST", "/webhooks")]
    forbidden = [CALLER, "9055550100", CALLER_NAME, AGENT_NAME, AGENT_EMAIL, AGENT_PHONE, "+14085267209",
                 ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, ADMIN_TOKEN, PERSON, *secrets_]
    dumped = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records, "expected some log records"
    for value in forbidden:
        assert value not in dumped


# --- retention -------------------------------------------------------------------------------------------

async def test_call_state_and_dropped_webhooks_are_purged_with_the_call_records(webex: Webex) -> None:
    await webex.sequence(INBOUND_ANSWERED)
    await webex.h.recorder.wait_for(3)
    st = webex.h.context("webex").storage("acme")
    assert len(await st.all("call")) == 1
    hook_id, secret = webex.hook("telephony_calls", "created")
    await webex.h.admin("POST", f"/plugins/webex/tenants/acme/connections/{webex.connection_id}/users/{PERSON}"
                        "/logout", expect=200)
    body = orjson.dumps(envelope(hook_id, "telephony_calls", "created", INBOUND_ANSWERED[0][1]))
    headers = {"Content-Type": "application/json", "X-Spark-Signature": sign(secret, body)}
    await webex.h.gw.retention.purge()  # nothing is old yet: late deliveries are still acknowledged
    assert (await webex.h.post_hook("webex", webex.connection_id, body, headers)).status == 200
    await webex.h.gw.retention.purge(now=datetime.now(timezone.utc) + timedelta(days=8))
    assert await st.all("call") == []
    assert await st.all("webhook") == []
    assert (await webex.h.post_hook("webex", webex.connection_id, body, headers)).status == 401


async def test_subject_export_and_erase_cover_call_state(webex: Webex) -> None:
    await webex.sequence(INBOUND_ANSWERED)
    await webex.h.recorder.wait_for(3)
    exported = await webex.h.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER}, expect=200)
    states = [r["value"] for r in exported["plugins"]["webex"]["records"] if r["kind"] == "call"]
    assert [s["direction"] for s in states] == ["in"]
    other = await webex.h.admin("POST", "/tenants/acme/subjects/export", {"phone": "+4930999999"}, expect=200)
    assert "webex" not in other["plugins"]
    erased = await webex.h.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER}, expect=200)
    assert erased["erased"]["plugins"]["webex"] == 1
    assert await webex.h.context("webex").storage("acme").all("call") == []


async def test_erasing_a_user_by_e_mail_removes_their_webex_login(webex: Webex) -> None:
    """A user's own "delete my data" (or the controller's erasure): the core deletes the
    directory entry, the plugin then deletes the webhooks at Webex and forgets the tokens."""
    hooks_before = set(webex.fake.webhooks)
    assert hooks_before
    erased = await webex.h.admin("POST", "/tenants/acme/subjects/erase", {"email": AGENT_EMAIL}, expect=200)
    assert erased["erased"]["telephony_users"] == 1 and erased["incomplete"] == []
    assert webex.fake.webhooks == {}
    assert {r.path for r in webex.fake.requests("DELETE", "/webhooks/.*")} == {f"/webhooks/{h}" for h in hooks_before}
    ctx = webex.h.gw.contexts["webex"]
    conn = await _conn(webex)
    assert await accounts.logged_in(ctx, conn) == []
    assert await ctx.users.get(conn, PERSON) is None  # nothing about the person written back
    # a caller's erasure leaves the logged-in user alone
    resp = await login(webex.h, webex.connection_id, code="auth-code-3")
    assert resp.status == 200
    await webex.h.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER}, expect=200)
    assert await accounts.logged_in(ctx, conn) == [PERSON]
