"""Canonical events → externalCall parameters, and REST/OAuth answer classification."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from gateway_bitrix24.batch import command
from gateway_bitrix24.mapping import (
    ANONYMOUS_NUMBER,
    external_call_id,
    finish_params,
    is_call_unknown,
    recording_filename,
    register_params,
    status_code,
)
from gateway_bitrix24.responses import (
    AuthRevoked,
    Bitrix24Error,
    ExpiredToken,
    parse_oauth,
    parse_rest,
)

from gateway import ANONYMOUS, CallEvent, CallState, Direction, Outcome, RecordingRef, RetryableError

T0 = datetime(2026, 3, 10, 10, 19, 30, tzinfo=timezone.utc)


def event(**kw: object) -> CallEvent:
    base: dict[str, object] = dict(event_id="e1", call_id="c1", direction=Direction.INBOUND,
                                   state=CallState.ENDED, occurred_at=T0, remote_number="+4922112345678",
                                   local_number="+4922199998560", source="placetel", connection_id="k1")
    base.update(kw)
    return CallEvent(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome,code", [
    (Outcome.ANSWERED, "200"), (Outcome.MISSED, "304"), (Outcome.BUSY, "486"), (Outcome.REJECTED, "603"),
    (Outcome.CANCELLED, "603-S"), (Outcome.UNAVAILABLE, "480"), (Outcome.FAILED, "503"),
    (Outcome.VOICEMAIL, "304"), (Outcome.BLOCKED, "423"),
])
def test_every_outcome_has_an_explicit_status(outcome: Outcome, code: str) -> None:
    assert status_code(event(outcome=outcome)) == code


def test_finish_always_sends_duration_and_status() -> None:
    p = finish_params(event(outcome=Outcome.ANSWERED, answered_at=T0, ended_at=T0 + timedelta(seconds=95)),
                      crm_call_id="externalCall.x.1", user_id=1269)
    assert p == {"CALL_ID": "externalCall.x.1", "USER_ID": 1269, "DURATION": 95, "STATUS_CODE": "200"}
    assert finish_params(event(), crm_call_id="x", user_id=1)["DURATION"] == 0
    assert finish_params(event(), crm_call_id="x", user_id=1)["STATUS_CODE"] == "304"


def test_register_params() -> None:
    p = register_params(event(state=CallState.RINGING, started_at=T0), user_id=1269, crm_create=True, show=True)
    assert p["TYPE"] == 2 and p["USER_ID"] == 1269 and p["CRM_CREATE"] == 1 and p["SHOW"] == 1
    assert p["CALL_START_DATE"] == "2026-03-10T10:19:30+00:00"
    assert p["LINE_NUMBER"] == "+4922199998560" and p["PHONE_NUMBER"] == "+4922112345678"
    out = register_params(event(direction=Direction.OUTBOUND), user_id=1, crm_create=False, show=False)
    assert out["TYPE"] == 1 and out["CRM_CREATE"] == 0 and out["SHOW"] == 0


@pytest.mark.parametrize("number", [ANONYMOUS, None])
def test_anonymous_callers_get_the_placeholder_and_no_crm_entities(number: str | None) -> None:
    p = register_params(event(remote_number=number), user_id=1, crm_create=True, show=False)
    assert p["PHONE_NUMBER"] == ANONYMOUS_NUMBER == "0000000000" and p["CRM_CREATE"] == 0


def test_internal_calls_never_create_crm_entities_and_extensions_are_no_lines() -> None:
    p = register_params(event(internal=True, remote_number="23", local_number="7777a@fpbx.de"), user_id=1,
                        crm_create=True, show=False)
    assert p["CRM_CREATE"] == 0 and p["PHONE_NUMBER"] == "23" and "LINE_NUMBER" not in p


@pytest.mark.parametrize("ref,link,name", [
    (RecordingRef("webex", "ea0efc7c-f83a-4972-b0eb-c0f30cff5e61", "MP3"), "https://x.test/a?sig=1",
     "webex-ea0efc7c-f83a-4972-b0eb-c0f30cff5e61.mp3"),
    (RecordingRef("placetel", "recording:77", "wav"), "https://x.test/77", "placetel-recording-77.wav"),
    (RecordingRef("other", "r1"), "https://x.test/files/r1.WAV?token=abc", "other-r1.wav"),  # from the link's path
    (RecordingRef("other", "r1"), "https://x.test/stream?format=mp3", None),
    (RecordingRef("other", "r1", "ogg"), "https://x.test/r1.mp3", None),  # the provider said ogg
    (RecordingRef("other", "+4922112345678 Jane Doe " * 4, "mp3"), "https://x.test/", None),
])
def test_recording_file_names_come_from_the_id_and_stated_format(ref: RecordingRef, link: str,
                                                                  name: str | None) -> None:
    got = recording_filename(event(state=CallState.RECORDING, recording=ref), link)
    if name is not None:
        assert got == name
    elif ref.format in (None, "ogg"):
        assert got is None
    else:  # a long or odd id: replaced by its digest, nothing of it in the name
        assert got is not None and got.startswith("other-") and "4922112345678" not in got and "Jane" not in got


def test_batch_commands_send_lists_as_php_arrays() -> None:
    assert command("telephony.externalCall.hide", {"CALL_ID": "c", "USER_ID": [11, 13]}) == \
        "telephony.externalCall.hide?CALL_ID=c&USER_ID%5B0%5D=11&USER_ID%5B1%5D=13"


def test_external_call_id_unique_per_physical_call_and_stable() -> None:
    a, b = event(call_id="c1"), event(call_id="c2")
    assert external_call_id(a) != external_call_id(b)
    assert external_call_id(a) == external_call_id(event(call_id="c1", event_id="other"))
    assert external_call_id(a) != external_call_id(event(call_id="c1", connection_id="k2"))


def test_call_unknown_matches_empty_code_descriptions() -> None:
    assert is_call_unknown("Call is not found (call should be registered prior to finishing")
    assert not is_call_unknown("Communication type is not defined.")


def body(d: object) -> bytes:
    return orjson.dumps(d)


def test_rest_result() -> None:
    assert parse_rest(200, body({"result": {"CALL_ID": "x"}, "time": {}})) == {"CALL_ID": "x"}


@pytest.mark.parametrize("status,payload,code,wait", [
    (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, "QUERY_LIMIT_EXCEEDED", 1.0),
    (429, {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"}, "OPERATION_TIME_LIMIT", 30.0),
    (500, {"error": "INTERNAL_SERVER_ERROR"}, "INTERNAL_SERVER_ERROR", None),
])
def test_limits_and_5xx_are_retryable(status: int, payload: object, code: str, wait: float | None) -> None:
    with pytest.raises(RetryableError) as info:
        parse_rest(status, body(payload))
    assert info.value.code == code and info.value.retry_after == wait


def test_retry_after_header_wins() -> None:
    with pytest.raises(RetryableError) as info:
        parse_rest(429, body({"error": "OPERATION_TIME_LIMIT"}), "120")
    assert info.value.retry_after == 120.0


@pytest.mark.parametrize("status", [503, 429, 502, 200, 404])
def test_html_pages_are_retryable(status: int) -> None:
    with pytest.raises(RetryableError):
        parse_rest(status, b"<html><body>Too many requests</body></html>")


def test_auth_errors() -> None:
    with pytest.raises(ExpiredToken):
        parse_rest(401, body({"error": "expired_token", "error_description": "The access token provided has expired."}))
    with pytest.raises(AuthRevoked) as info:
        parse_rest(401, body({"error": "invalid_token"}))
    assert info.value.reason == "reinstall_required"
    with pytest.raises(AuthRevoked) as info:
        parse_rest(403, body({"error": "ACCESS_DENIED"}))
    assert info.value.reason == "access_denied"


def test_empty_error_code_keeps_description_for_matching() -> None:
    with pytest.raises(Bitrix24Error) as info:
        parse_rest(400, body({"error": "", "error_description": "Call is not found (call should be registered prior to finishing"}))
    assert info.value.code == "ERROR_CORE"
    assert is_call_unknown(info.value.description)
    assert "Call is not found" not in str(info.value)


def test_oauth() -> None:
    grant = parse_oauth(200, body({"access_token": "a", "refresh_token": "r", "expires_in": 3600,
                                   "member_id": "m", "client_endpoint": "https://p.bitrix24.com/rest/",
                                   "user_id": 67}), now=1000)
    assert (grant.access_token, grant.refresh_token, grant.expires, grant.member_id, grant.user_id) == ("a", "r", 4600, "m", 67)
    with pytest.raises(AuthRevoked):
        parse_oauth(400, body({"error": "invalid_grant", "error_description": "Invalid grant"}), now=0)
    with pytest.raises(RetryableError):
        parse_oauth(502, b"<html>bad gateway</html>", now=0)


def test_batch_commands_keep_order_encode_values_and_pass_references() -> None:
    from urllib.parse import parse_qsl

    from gateway_bitrix24.batch import Ref, batch_params
    body = batch_params({
        "register": ("telephony.externalCall.register", {"PHONE_NUMBER": "+4922112345678", "TYPE": 2}),
        "attach": ("telephony.externalCall.attachRecord",
                   {"CALL_ID": Ref("register", "CALL_ID"), "RECORD_URL": "https://r.test/a.mp3?x=1&y=2"})})
    assert body["halt"] == 1 and list(body["cmd"]) == ["register", "attach"]
    method, _, query = body["cmd"]["attach"].partition("?")
    assert method == "telephony.externalCall.attachRecord"
    assert "CALL_ID=$result[register][CALL_ID]" in query  # the reference is sent as is
    assert dict(parse_qsl(query)) == {"CALL_ID": "$result[register][CALL_ID]",
                                      "RECORD_URL": "https://r.test/a.mp3?x=1&y=2"}
    assert dict(parse_qsl(body["cmd"]["register"].partition("?")[2])) == {"PHONE_NUMBER": "+4922112345678", "TYPE": "2"}
    with pytest.raises(ValueError):
        batch_params({})


def test_batch_answers_per_command() -> None:
    from gateway_bitrix24.batch import parse_batch
    answer = parse_batch({"result": {"register": {"CALL_ID": "externalCall.a.1"}},
                          "result_error": {"finish": {"error": "", "error_description": "Call is not found"}},
                          "result_total": [], "result_next": [], "result_time": []})
    assert answer.ran("register") and not answer.ran("finish") and not answer.ran("attach")
    assert answer.errors["finish"].code == "" and is_call_unknown(answer.errors["finish"].description)
    empty = parse_batch({"result": [], "result_error": []})  # PHP's empty arrays
    assert empty.results == {} and empty.errors == {}
    with pytest.raises(RetryableError):
        parse_batch("<html>")
