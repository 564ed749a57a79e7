from datetime import datetime, timedelta, timezone

from gateway_placetel.background import lookup_days
from gateway_placetel.recordings import find_match, parse_ref
from gateway_placetel.users import build_directory
from placetel_testdata import CALLER, CALLER_E164, EMAIL, OURS, OURS_E164, SIP_USERS, SIPUID, WEB_USERS


def test_directory_merges_sip_and_web_users():
    users = {u.user_id: u for u in build_directory(SIP_USERS, WEB_USERS)}
    assert set(users) == {SIPUID, "7777xyz@fpbx.de"}  # the web user without SIP user is left out
    anna = users[SIPUID]
    assert (anna.name, anna.email, anna.extension, anna.numbers) == ("Anna Agent", EMAIL, "23", (OURS_E164,))
    reception = users["7777xyz@fpbx.de"]
    assert (reception.name, reception.email, reception.extension) == ("Empfang", None, "24")


def test_directory_maps_through_primary_sip_user_and_skips_broken_rows():
    sip = [{"id": 1, "sipuid": "a@fpbx.de"}, {"id": 2}, {"id": 3, "sipuid": ""}, {"sipuid": {"x": 1}}]
    web = [{"id": 9, "email": "b@example.com", "first_name": "B", "primary_sip_user_id": 1}]
    (user,) = build_directory(sip, web)
    assert user.user_id == "a@fpbx.de" and user.email == "b@example.com" and user.name == "B"


END = datetime(2024, 5, 6, 10, 0, 0, tzinfo=timezone.utc)
CALL = {"direction": "in", "remote": CALLER_E164, "local": OURS_E164, "ended_at": END.isoformat(),
        "duration": 42}


def rec(id_, when, from_=CALLER, to=OURS):
    return {"id": id_, "from": from_, "to": to, "time": when.isoformat(), "direction": "in"}


def test_recording_match_by_numbers_and_time_window():
    items = [
        rec(1, END - timedelta(hours=2)),                      # too early
        rec(2, END - timedelta(seconds=30), from_="030123456"),  # other caller
        rec(3, END - timedelta(seconds=45), to="0301234567"),   # other line
        rec(4, END - timedelta(seconds=40)),
        rec(5, END - timedelta(seconds=10)),                    # closest to the end
        {"id": "../x", "from": CALLER, "to": OURS, "time": END.isoformat()},
    ]
    assert find_match(CALL, items, "recording") == "recording:5"
    assert find_match(CALL, items[:3], "recording") is None
    assert find_match({**CALL, "ended_at": None}, items, "recording") is None


def test_voicemail_match_uses_the_calls_shape():
    item = {"id": 5, "type": "voicemail", "from_number": CALLER,
            "to_number": {"number": {"id": 12, "number": OURS}},
            "received_at": (END - timedelta(seconds=20)).astimezone(timezone(timedelta(hours=2))).isoformat()}
    assert find_match({**CALL, "duration": 0}, [item], "voicemail") == "voicemail:5"


def test_outbound_recording_swaps_the_numbers():
    call = {**CALL, "direction": "out"}
    assert find_match(call, [rec(8, END, from_=OURS, to=CALLER)], "recording") == "recording:8"


def test_parse_ref():
    assert parse_ref("recording:77") == ("recording", "77")
    assert parse_ref("voicemail:5") == ("voicemail", "5")
    assert parse_ref("recording:../../me") is None and parse_ref("file:1") is None and parse_ref("77") is None


def test_lookup_days_cover_a_call_across_midnight():
    # 22:59:30 UTC on 31 March = 00:59:30 German summer time on 1 April
    ended = datetime(2024, 3, 31, 22, 59, 30, tzinfo=timezone.utc)
    assert lookup_days(ended, 0) == ["2024-04-01"]
    assert lookup_days(ended, None) == ["2024-04-01"]
    assert lookup_days(ended, 3600) == ["2024-03-31", "2024-04-01"]
    assert lookup_days(datetime(2024, 1, 15, 12, tzinfo=timezone.utc), 600) == ["2024-01-15"]
