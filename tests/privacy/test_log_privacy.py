"""Logs stay free of personal data and secrets through whole call flows, at DEBUG, all loggers."""

from __future__ import annotations

import logging

import orjson
from demo_secret import SECRET
from demo_source import sign
from privacy_flows import CALLER, EMAIL, NAME, OTHER, call

from gateway import TelephonyUser
from gateway.logs import JsonFormatter
from gateway.testing import ADMIN_TOKEN


async def test_full_flows_log_no_numbers_emails_names_tokens_or_secrets(demo, caplog):
    caplog.handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.DEBUG)
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    await demo.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (OTHER,)))
    demo.recorder.fail_times = 2  # retries log their reasons
    for i, state in enumerate(("ringing", "answered", "ended")):
        await call(demo, f"e{i}", "c1", state, user="u1")
    await demo.recorder.wait_for(3)
    body = orjson.dumps({"id": "x", "call": "c9", "state": "ringing", "from": CALLER})
    bad = await demo.post_hook("demo", demo.connection_id, body,
                               {"Content-Type": "application/json", "X-Demo-Signature": sign("wrong", body)})
    assert bad.status == 401
    garbage = b'{"id": "y", "from": "' + CALLER.encode() + b'"'
    resp = await demo.post_hook("demo", demo.connection_id, garbage,
                                {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, garbage)})
    assert resp.status == 400
    refused = await demo.client.get("/admin/v1/tenants", headers={"Authorization": "Bearer not-the-token-12345"})
    assert refused.status == 401
    await demo.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER}, expect=200)
    await demo.admin("POST", "/tenants/acme/subjects/restrict", {"email": EMAIL}, expect=200)
    await demo.admin("POST", "/tenants/acme/subjects/rectify", {"email": EMAIL, "changes": {"name": "Anna B"}},
                     expect=200)
    await demo.admin("POST", "/tenants/acme/subjects/erase", {"phone": CALLER}, expect=200)
    await demo.gw.clicktocall.start("recorder", "acme", "crm-1", number=CALLER, extension="23")
    await demo.gw.directory.logout(connection, "u1")
    await demo.gw.retention.purge()
    await demo.admin("DELETE", "/tenants/acme", expect=200)

    logged = caplog.text
    assert len(caplog.records) > 5, "the flows must have logged something"
    for line in logged.splitlines():
        orjson.loads(line)  # structured: one JSON object per line
    for value in (CALLER, CALLER[1:], OTHER, EMAIL, NAME, "Anna B", SECRET, ADMIN_TOKEN, "not-the-token-12345",
                  demo.gw.config.master_key):
        assert value not in logged, value
