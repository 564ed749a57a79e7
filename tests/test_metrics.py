"""Metrics: the documented series exist, labels are bounded, nothing personal leaks."""

from __future__ import annotations

import orjson
from demo_secret import SECRET
from demo_source import sign

NUMBER = "+4922112345678"


async def test_metrics_after_a_flow(demo):
    demo.recorder.fail_times = 1
    for eid, state in (("m1", "ringing"), ("m2", "ended")):
        body = orjson.dumps({"id": eid, "call": "metrics-call-id", "state": state, "from": NUMBER})
        await demo.post_hook("demo", demo.connection_id, body, {
            "Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    await demo.post_hook("demo", demo.connection_id, b"{}", {"Content-Type": "application/json"})
    await demo.recorder.wait_for(2)
    resp = await demo.client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    for series in ('gateway_webhooks_total{plugin="demo",status="200"}',
                   'gateway_webhooks_total{plugin="demo",status="401"}',
                   'gateway_events_total{state="ringing"}', 'gateway_deliveries_total{outcome="delivered",sink="recorder"}',
                   'gateway_deliveries_total{outcome="retry",sink="recorder"}', "gateway_delivery_latency_seconds_bucket",
                   "gateway_queue_depth", "gateway_delivery_retries_total", "gateway_dead_letters_total",
                   "gateway_rate_limit_waits_total", "gateway_token_refreshes_total", "gateway_purged_records_total",
                   "gateway_webhook_reactivations_total"):
        assert series in text, series
    for value in (NUMBER, NUMBER[1:], "metrics-call-id", demo.connection_id, SECRET):
        assert value not in text
