"""Property: whatever is posted to a Placetel webhook, signed or not, the answer is 2xx or
4xx, never a 5xx or a traceback, and a 4xx stores nothing. Bodies are made from the seed
corpus (real Notify bodies); the long, coverage-guided run is ``tests/fuzz/run.py placetel``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from placetel_testdata import SECRET, fake_api, pt, sign  # noqa: F401 (fixtures)

from gateway.testing import HEADER_CHARS, check_answer, corpus, fuzz_bodies, fuzz_forms, fuzz_settings

SEEDS = corpus("placetel")
FORM = "application/x-www-form-urlencoded"


@fuzz_settings(max_examples=100)
@given(body=st.one_of(fuzz_forms(SEEDS), fuzz_bodies(SEEDS)))
async def test_any_signed_body_is_answered_2xx_or_4xx(pt, body):  # noqa: F811
    headers = {"Content-Type": FORM, "X-PLACETEL-SIGNATURE": sign(body, SECRET)}
    await check_answer(pt, lambda: pt.post_hook("placetel", pt.conn["id"], body, headers))


@fuzz_settings(max_examples=20)
@given(body=st.sampled_from(SEEDS), signature=st.text(HEADER_CHARS, max_size=70))
async def test_any_signature_header_is_answered_4xx(pt, body, signature):  # noqa: F811
    headers = {"Content-Type": FORM, "X-PLACETEL-SIGNATURE": signature}
    assert await check_answer(pt, lambda: pt.post_hook("placetel", pt.conn["id"], body, headers)) == 401
