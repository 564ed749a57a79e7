import orjson

from demo_source import sign


async def test_signed_event_reaches_sink(demo):
    body = orjson.dumps({"id": "e1", "call": "c1", "state": "ringing", "from": "+4922112345678"})
    resp = await demo.post_hook("demo", demo.connection_id, body,
                                {"Content-Type": "application/json",
                                 "X-Demo-Signature": sign("s3cret-s3cret", body)})
    assert resp.status == 200
    events = await demo.recorder.wait_for(1)
    assert events[0].remote_number == "+4922112345678"
    assert events[0].tenant == "acme"
