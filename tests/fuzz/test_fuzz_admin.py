"""Property: whatever JSON body an authenticated caller sends to the core's admin routes, the
answer is 2xx or 4xx, never a 5xx or a traceback, and a 4xx stores nothing. Bodies are made
from the seed corpus; the long, coverage-guided run is ``tests/fuzz/run.py admin_json``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.testing import check_answer, corpus, fuzz_bodies, fuzz_json, fuzz_settings

SEEDS = corpus("admin_json")
ROUTES = [("POST", "/tenants"), ("POST", "/tenants/acme/connections"), ("PUT", "/tenants/acme/sinks/recorder"),
          *[("POST", f"/tenants/acme/subjects/{op}") for op in
            ("export", "erase", "rectify", "restrict", "object", "unrestrict")]]


@fuzz_settings(max_examples=120)
@given(body=st.one_of(fuzz_json(SEEDS), fuzz_bodies(SEEDS)), route=st.sampled_from(ROUTES))
async def test_any_admin_body_is_answered_2xx_or_4xx(demo, body, route):
    method, path = route
    headers = {**demo.headers, "Content-Type": "application/json"}
    await check_answer(demo, lambda: demo.client.request(method, f"/admin/v1{path}", data=body, headers=headers))
