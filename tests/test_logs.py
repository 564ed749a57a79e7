"""Logs: one JSON object per line with request and tenant ids, and nothing personal."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from demo_secret import SECRET
from demo_source import sign

from gateway import logs

NUMBER = "+4922112345678"


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("text,hidden", [
    ("call from +49 221 1234-5678 failed", "1234"),
    ("user anna.agentin@example.com logged in", "anna.agentin"),
    ("fetch https://files.example/rec.mp3?sig=abc failed", "rec.mp3"),
    ("refresh with token=abcdef123456 failed", "abcdef123456"),
    ("Authorization: Bearer s3cr3t-value", "s3cr3t-value"),
])
def test_redaction_layer(text, hidden):
    assert hidden not in logs.redact(text)


@pytest.mark.parametrize("text", [
    "Bitrix24 token refreshed",
    "key rotation finished; auth failed for tenant a223c6b3710f85df22e9377d6c4f7553",
    "tenant 4a4cbb39578170aed9a2761a7bec8c7e704a541f52291ef603d6f5f152980c3c removed",
    "purged records received before 2026-11-29T20:16:30.123+00:00 (2026-11-29 20:16:30)",
    "call session ec56f405-8573-4093-8d90-2669ff24c3b3 ended",
    "listening on 127.0.0.1:8080, 42 of 1000 done, aiohttp 3.14.5",
])
def test_redaction_keeps_messages_ids_and_dates(text):
    assert logs.redact(text) == text


@pytest.mark.parametrize("text,expected", [
    ("auth[access_token]=abc123&x=1", "auth[access_token]=[secret]&x=1"),
    ('{"client_secret": "xyz"}', '{"client_secret": "[secret]"}'),
    ("from 022129191999 to (0221) 123 4567", "from [number] to ([number]"),
])
def test_redaction_replaces_only_the_value(text, expected):
    assert logs.redact(text) == expected


@pytest.fixture
def debug_setup():
    """``logs.setup("DEBUG")`` as ``gateway serve`` runs it, undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level,
             {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS})
    logs.setup("DEBUG", stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


async def test_at_debug_no_database_statement_is_logged(demo, debug_setup):
    body = orjson.dumps({"id": "e1", "call": "c1", "state": "ringing", "from": NUMBER})
    resp = await demo.post_hook("demo", demo.connection_id, body, {
        "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    assert resp.status == 200
    await demo.recorder.wait_for(1)
    await demo.admin("GET", "/tenants/acme", expect=200)
    logging.getLogger("gateway.test").debug("probe")
    assert [line["message"] for line in lines(debug_setup)] == ["probe"]


async def test_webhook_logs_are_json_with_request_and_tenant_ids(demo, json_log):
    body = orjson.dumps({"id": "e1", "call": "c1", "state": "ringing", "from": NUMBER})
    resp = await demo.post_hook("demo", demo.connection_id, body, {
        "Content-Type": "application/json", "X-Demo-Signature": "0" * 64, "X-Request-Id": "req-42"})
    assert resp.status == 401 and resp.headers["X-Request-Id"] == "req-42"
    refused = [line for line in lines(json_log) if line["message"] == "webhook refused"]
    assert refused, json_log.getvalue()
    entry = refused[0]
    assert entry["level"] == "info" and entry["logger"] == "gateway.webhooks"
    assert entry["request_id"] == "req-42" and entry["tenant"] == "acme"
    assert entry["status"] == 401 and entry["plugin"] == "demo"


async def test_a_full_flow_logs_nothing_personal(demo, json_log):
    demo.recorder.fail_times = 2  # retries log too
    for eid, state in (("e1", "ringing"), ("e2", "ended")):
        body = orjson.dumps({"id": eid, "call": "call-secret-id", "state": state, "from": NUMBER})
        await demo.post_hook("demo", demo.connection_id, body, {
            "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    await demo.recorder.wait_for(2)
    text = json_log.getvalue()
    assert "delivery will be retried" in text
    for value in (NUMBER, NUMBER[1:], "2211234", SECRET, "call-secret-id"):
        assert value not in text
