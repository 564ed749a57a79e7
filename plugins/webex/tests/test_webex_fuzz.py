"""Property: whatever a logged-in user's webhook delivers, signed with its secret, the answer
is 2xx or 4xx, never a 5xx or a traceback, and a 4xx stores nothing. Envelopes are made from
the seed corpus (Webex's documented examples); the long, coverage-guided run is
``tests/fuzz/run.py webex``."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from webex_fixtures import Webex, fake_webex, webex  # noqa: F401 (fixtures)

from gateway.testing import check_answer, corpus, fuzz_bodies, fuzz_json, fuzz_settings
from gateway_webex.signature import sign

SEEDS = corpus("webex")


def addressed(webex: Webex, body: bytes) -> tuple[bytes, str]:  # noqa: F811
    """The body sent through the user's real webhook (its id put in), and that webhook's secret."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    resource = "convergedRecordings" if b"convergedRecordings" in body else "telephony_calls"
    event = doc.get("event") if isinstance(doc, dict) else None
    hook_id, secret = webex.hook(resource, event if event in ("created", "updated", "deleted") and not (
        resource == "convergedRecordings" and event == "deleted") else "created")
    if isinstance(doc, dict):
        doc["id"] = hook_id
        body = orjson.dumps(doc)
    return body, secret


@fuzz_settings(max_examples=100)
@given(body=st.one_of(fuzz_json(SEEDS), fuzz_bodies(SEEDS)))
async def test_any_signed_delivery_is_answered_2xx_or_4xx(webex, body):  # noqa: F811
    body, secret = addressed(webex, body)
    headers = {"Content-Type": "application/json", "X-Spark-Signature": sign(secret, body)}
    await check_answer(webex.h, lambda: webex.h.post_hook("webex", webex.connection_id, body, headers))
