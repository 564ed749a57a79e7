"""The canonical call event: number normalisation, UTC times, JSON round trips."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from demo_secret import SECRET
from demo_source import sign
from hypothesis import given
from hypothesis import strategies as st

from gateway import ANONYMOUS, CallEvent, CallState, Direction, Outcome, RecordingRef, events, normalize_number


@pytest.mark.parametrize("raw,expected", [
    ("022129191999", "+4922129191999"),            # national German number, default region DE
    ("+49 221 29191999", "+4922129191999"),
    ("0049 221 29191999", "+4922129191999"),
    ("tel:+12223334444", "+12223334444"),
    ("+1 (905) 555-0100", "+19055550100"),
    ("anonymous", ANONYMOUS), ("Anonymous", ANONYMOUS), ("unknown", ANONYMOUS),
    ("23", "23"),                                  # an internal extension stays as it is
    ("*73", "*73"),
    ("7777abcdefg@fpbx.de", "7777abcdefg@fpbx.de"),  # a SIP id stays as it is
    ("not a number", "not a number"),
    ("", None), ("   ", None), (None, None),
])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_region_decides_national_numbers():
    assert normalize_number("030 1234567", "DE") == "+49301234567"
    assert normalize_number("01 23 45 67 89", "FR") == "+33123456789"


def test_times_become_utc_and_naive_times_are_refused():
    local = datetime(2026, 3, 10, 11, 19, 30, tzinfo=timezone(timedelta(hours=1)))
    ev = CallEvent(event_id="e", call_id="c", direction=Direction.INBOUND, state=CallState.RINGING,
                   occurred_at=local)
    assert ev.occurred_at == local and ev.occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        CallEvent(event_id="e", call_id="c", direction=Direction.INBOUND, state=CallState.RINGING,
                  occurred_at=datetime(2026, 3, 10, 11, 19, 30))


@pytest.mark.parametrize("kw", [
    {"event_id": ""}, {"call_id": ""}, {"duration": -1}, {"state": CallState.RECORDING},
])
def test_invalid_events_are_refused(kw):
    base = {"event_id": "e", "call_id": "c", "direction": Direction.INBOUND, "state": CallState.ENDED,
            "occurred_at": datetime.now(timezone.utc)}
    with pytest.raises(ValueError):
        CallEvent(**(base | kw))


texts = st.text(min_size=1, max_size=30)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(timezone.utc))


@given(event_id=texts, call_id=texts, direction=st.sampled_from(Direction),
       state=st.sampled_from([CallState.RINGING, CallState.ANSWERED, CallState.ENDED]),
       outcome=st.none() | st.sampled_from(Outcome), at=moments, answered=st.none() | moments,
       duration=st.none() | st.integers(min_value=0, max_value=10**6), number=st.none() | texts,
       recording=st.none() | st.builds(RecordingRef, texts, texts, st.none() | st.sampled_from(["mp3", "wav"])),
       ringing=st.lists(texts, max_size=4).map(tuple), internal=st.booleans())
def test_json_round_trip(event_id, call_id, direction, state, outcome, at, answered, duration, number, recording,
                         ringing, internal):
    ev = CallEvent(event_id=event_id, call_id=call_id, direction=direction, state=state, outcome=outcome,
                   occurred_at=at, answered_at=answered, duration=duration, remote_number=number,
                   recording=recording, ringing=ringing, internal=internal)
    assert CallEvent.from_dict(ev.to_dict()) == ev


def test_events_stored_before_the_ringing_internal_and_format_fields_still_read():
    old = {"event_id": "e", "call_id": "c", "direction": "in", "state": "recording",
           "occurred_at": "2025-01-01T00:00:00+00:00", "recording": {"source": "x", "ref": "r"}}
    ev = CallEvent.from_dict(old)
    assert ev.ringing == () and ev.internal is False and ev.recording == RecordingRef("x", "r", None)


def test_stamped_copies_without_touching_the_original():
    ev = CallEvent(event_id="e", call_id="c", direction=Direction.OUTBOUND, state=CallState.RINGING,
                   occurred_at=datetime.now(timezone.utc))
    stamped = ev.stamped(source="demo", connection_id="k", tenant="acme")
    assert (stamped.source, stamped.connection_id, stamped.tenant) == ("demo", "k", "acme")
    assert ev.tenant == "" and stamped.event_id == ev.event_id


def test_the_number_cache_holds_no_raw_input_and_is_bounded(monkeypatch):
    events.forget_numbers()
    assert normalize_number("0221 1234 5678") == "+4922112345678"
    assert normalize_number("0221 1234 5678") == "+4922112345678"  # a hit
    assert len(events._number_cache) == 1
    (key, (_expiry, value)), = events._number_cache.items()
    assert isinstance(key, bytes) and len(key) == 16 and b"1234" not in key  # a keyed digest
    long_input = "0" + "1" * 10_000  # signed input may carry anything: never a cache key
    assert normalize_number(long_input) == long_input and len(events._number_cache) == 1
    monkeypatch.setattr(events, "NUMBER_CACHE_SIZE", 50)
    for n in range(200):
        normalize_number(f"+49221{n:08d}")
    assert len(events._number_cache) <= 50


def test_cached_numbers_expire(monkeypatch):
    events.forget_numbers()
    now = [1000.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: now[0])
    normalize_number("+4922112345678")
    now[0] += events.NUMBER_CACHE_SECONDS + 1
    normalize_number("+4930111222")  # any later call drops what expired
    assert [v for _e, v in events._number_cache.values()] == ["+4930111222"]


async def test_an_erasure_empties_the_number_cache(demo):
    h = demo
    conn = {"id": demo.connection_id}
    body = orjson.dumps({"id": "e1", "call": "c1", "state": "ringing", "from": "0221 98765432"})
    resp = await h.post_hook("demo", conn["id"], body,
                             {"Content-Type": "application/json", "X-Demo-Signature": sign(SECRET, body)})
    assert resp.status == 200
    assert "+4922198765432" in [v for _e, v in events._number_cache.values()]
    await h.admin("POST", "/tenants/acme/subjects/erase", {"phone": "+4922198765432"}, expect=200)
    assert "+4922198765432" not in [v for _e, v in events._number_cache.values()]
