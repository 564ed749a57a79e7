"""The Web API client against a fake Placetel on 127.0.0.1: the error policy of every call."""

import aiohttp
import pytest

from gateway import RetryableError
from gateway_placetel.api import ApiRefused, KeyRejected, PlacetelClient, RetryPolicy
from placetel_testdata import API_KEY, SIP_USERS, fake_api  # noqa: F401  (fixture)

FAST = RetryPolicy(attempts=3, base=0.0, max_wait=5.0)


@pytest.fixture
async def client(fake_api):  # noqa: F811
    async with aiohttp.ClientSession() as http:
        yield PlacetelClient(http, API_KEY, base_url=fake_api.base, retry=FAST)


async def test_bearer_key_and_json(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", json={"id": 1, "name": "Acme"})
    assert (await client.me())["id"] == 1
    (seen,) = fake_api.requests("GET", "/me")
    assert seen.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_list_pages_until_short_page(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/sip_users", json=[{"sipuid": f"u{i}@x"} for i in range(100)])
    fake_api.on("GET", "/sip_users", json=SIP_USERS)
    assert len(await client.sip_users()) == 102
    assert [s.query for s in fake_api.requests("GET", "/sip_users")] == [
        {"page": "1", "per_page": "100"}, {"page": "2", "per_page": "100"}]


async def test_401_is_key_rejected(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=401, json={"error": "bad key"})
    with pytest.raises(KeyRejected) as info:
        await client.me()
    assert API_KEY not in str(info.value)


async def test_429_with_long_retry_after_is_handed_back(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=429, headers={"Retry-After": "120"}, body="slow down")
    with pytest.raises(RetryableError) as info:
        await client.me()
    assert info.value.retry_after == 120 and info.value.code == "HTTP_429"
    assert len(fake_api.requests("GET", "/me")) == 1


async def test_429_with_short_retry_after_is_retried(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=429, headers={"Retry-After": "0"}, body="")
    fake_api.on("GET", "/me", json={"id": 7})
    assert (await client.me())["id"] == 7


async def test_5xx_is_retried_with_backoff_then_given_up(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", status=503, body="")
    fake_api.on("GET", "/me", status=502, body="")
    fake_api.on("GET", "/me", json={"id": 3})
    assert (await client.me())["id"] == 3
    fake_api.on("GET", "/sip_users", status=500, body="boom")
    with pytest.raises(RetryableError) as info:
        await client.sip_users()
    assert info.value.code == "HTTP_500"
    assert len(fake_api.requests("GET", "/sip_users")) == 3


async def test_click_to_dial_is_not_retried_on_5xx(client, fake_api):  # noqa: F811
    fake_api.on("POST", "/calls", status=500, body="")
    with pytest.raises(RetryableError):
        await client.originate("7777abcdefg@fpbx.de", "+4922112345678")
    assert len(fake_api.requests("POST", "/calls")) == 1


async def test_network_error_is_retryable():
    async with aiohttp.ClientSession() as http:
        client = PlacetelClient(http, API_KEY, base_url="http://127.0.0.1:1/v2", retry=FAST)
        with pytest.raises(RetryableError) as info:
            await client.me()
    assert info.value.code and "127.0.0.1" not in str(info.value)


async def test_other_4xx_is_refused_and_404_unsubscribe_is_fine(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/recordings/9", status=404, body="")
    with pytest.raises(ApiRefused) as info:
        await client.recording("9")
    assert info.value.status == 404
    await client.unsubscribe("sub-1")  # unknown to the fake: 404, already gone
    fake_api.on("DELETE", "/subscriptions/sub-2", status=422, body="")
    with pytest.raises(ApiRefused):
        await client.unsubscribe("sub-2")


async def test_malformed_json_is_an_upstream_error(client, fake_api):  # noqa: F811
    fake_api.on("GET", "/me", body="{not json")
    with pytest.raises(Exception) as info:
        await client.me()
    assert type(info.value).__name__ == "UpstreamError"


async def test_subscribe_returns_the_id(client, fake_api):  # noqa: F811
    fake_api.on("PUT", "/subscriptions", json={"id": "sub-112ba1", "url": "https://gw/x"})
    fake_api.on("PUT", "/subscriptions", json=[{"id": "sub-2", "url": "https://gw/y"}])
    fake_api.on("PUT", "/subscriptions", body="")
    assert await client.subscribe("https://gw/x") == "sub-112ba1"
    (first, *_) = fake_api.requests("PUT", "/subscriptions")
    assert first.json["service"] == "calls" and first.json["url"] == "https://gw/x"
    assert first.json["incoming"] and first.json["hungup"]
    assert await client.subscribe("https://gw/y") == "sub-2"
    assert await client.subscribe("https://gw/z") is None
