"""Sans-I/O parsing of Bitrix24's form-encoded events (bodies as on the wire)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from gateway_bitrix24.parse import (
    parse_callback,
    parse_click_to_call,
    parse_event,
    parse_flag,
    parse_form,
    parse_ui_install,
    tokens_equal,
)
from hypothesis import given
from hypothesis import strategies as st

from gateway import BadRequest

INSTALL = (
    "event=ONAPPINSTALL&ts=1773130000"
    "&data[VERSION]=1&data[ACTIVE]=Y&data[INSTALLED]=Y&data[LANGUAGE_ID]=de"
    "&auth[access_token]=s6p6eclrvim6da22ft9ch94ekreb52lv&auth[expires]=1773133600&auth[expires_in]=3600"
    "&auth[scope]=telephony,crm,user&auth[domain]=example.bitrix24.de"
    "&auth[server_endpoint]=https://oauth.bitrix.info/rest/&auth[status]=L"
    "&auth[client_endpoint]=https://example.bitrix24.de/rest/&auth[member_id]=a223c6b3710f85df22e9377d6c4f7553"
    "&auth[user_id]=1&auth[refresh_token]=4s386p3q0tr8dy89xvmt96234v3dljg8"
    "&auth[application_token]=51856fefc120afa4b628cc82d3935cce"
)


def wire(text: str) -> bytes:
    """Encode like Bitrix24 does: brackets and other specials percent-encoded."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                    for k, _, v in (p.partition("=") for p in text.split("&"))).encode()


def test_install_event_from_the_docs() -> None:
    ev = parse_event(wire(INSTALL))
    assert ev.name == "ONAPPINSTALL"
    assert ev.ts == 1773130000
    assert ev.data["LANGUAGE_ID"] == "de"
    assert ev.auth.member_id == "a223c6b3710f85df22e9377d6c4f7553"
    assert ev.auth.application_token == "51856fefc120afa4b628cc82d3935cce"
    assert ev.auth.refresh_token == "4s386p3q0tr8dy89xvmt96234v3dljg8"
    assert ev.auth.client_endpoint == "https://example.bitrix24.de/rest/"
    assert ev.auth.user_id == 1
    assert "51856fef" not in repr(ev.auth)


def test_uninstall_without_tokens_and_without_server_endpoint() -> None:
    body = urlencode({"event": "ONAPPUNINSTALL", "data[CLEAN]": "1", "data[LANGUAGE_ID]": "de",
                      "auth[domain]": "example.bitrix24.de", "auth[member_id]": "a223c6b3",
                      "auth[application_token]": "51856fef"}).encode()
    ev = parse_event(body)
    assert ev.name == "ONAPPUNINSTALL" and ev.auth.access_token == "" and ev.data["CLEAN"] == "1"


def test_nested_and_list_keys() -> None:
    assert parse_form(b"a[b][c]=1&a[b][d]=2&x[]=1&x[]=2") == {"a": {"b": {"c": "1", "d": "2"}}, "x": ["1", "2"]}


@pytest.mark.parametrize("body", [
    b"\xff\xfe", b"a=1&a[b]=2", b"a[b]=1&a=2", b"a]b[=1", b"a[b][c][d][e]=1",
    b"event=ONAPPINSTALL", b"event=X&auth[member_id]=bad/slash", b"auth[member_id]=abc",
    b"event=X&auth[member_id]=abc&auth[application_token]=has%20space",
])
def test_bad_bodies_are_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_event(body)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    try:
        parse_event(body)
    except BadRequest:
        pass


def test_click_to_call_from_the_docs() -> None:
    body = wire(
        "event=ONEXTERNALCALLSTART&event_handler_id=1055&ts=1773236988"
        "&data[PHONE_NUMBER]=+494951234567&data[PHONE_NUMBER_INTERNATIONAL]=+494951234567&data[EXTENSION]="
        "&data[USER_ID]=1269&data[CALL_LIST_ID]=0&data[LINE_NUMBER]=7&data[IS_MOBILE]=0"
        "&data[CALL_ID]=externalCall.89350264e026dace3f2b14d1f438257c.1773236989"
        "&data[CRM_ENTITY_TYPE]=CONTACT&data[CRM_ENTITY_ID]=797"
        "&auth[access_token]=s7p6abc&auth[expires_in]=3600&auth[member_id]=a223c6b9"
        "&auth[application_token]=51610fef")
    ev = parse_event(body)
    assert ev.handler_id == "1055"
    c2c = parse_click_to_call(ev.data)
    assert c2c.call_id == "externalCall.89350264e026dace3f2b14d1f438257c.1773236989"
    assert c2c.user_id == 1269 and c2c.number == "+494951234567"
    assert c2c.crm_entity_type == "CONTACT" and c2c.crm_entity_id == 797 and c2c.is_mobile is False
    assert "494951234567" not in repr(c2c)


@pytest.mark.parametrize("raw,expected", [("0", False), ("1", True), ("Y", True), ("N", False), ("", False)])
def test_is_mobile_both_spellings(raw: str, expected: bool) -> None:
    assert parse_flag(raw) is expected


def test_click_to_call_needs_call_id_user_and_number() -> None:
    good = {"CALL_ID": "externalCall.x.1", "USER_ID": "5", "PHONE_NUMBER": "+4922112345678"}
    for missing in good:
        with pytest.raises(BadRequest):
            parse_click_to_call({k: v for k, v in good.items() if k != missing})
    with pytest.raises(BadRequest):
        parse_click_to_call({**good, "IS_MOBILE": "maybe"})


def test_callback_form() -> None:
    cb = parse_callback({"PHONE_NUMBER": "0221 12345678", "TEXT": "Rückruf", "CRM_ENTITY_TYPE": "lead",
                         "CRM_ENTITY_ID": "12", "LINE_NUMBER": "022199998560"})
    assert cb.number == "+4922112345678" and cb.crm_entity_type == "LEAD" and cb.crm_entity_id == 12


def test_ui_install_ignores_app_sid() -> None:
    body = urlencode({"DOMAIN": "example.bitrix24.de", "PROTOCOL": "1", "LANG": "de", "APP_SID": "frame123",
                      "AUTH_ID": "acc", "AUTH_EXPIRES": "3600", "REFRESH_ID": "ref",
                      "member_id": "a223c6b3", "status": "L", "PLACEMENT": "DEFAULT"}).encode()
    ui = parse_ui_install(body)
    assert (ui.member_id, ui.domain, ui.access_token, ui.refresh_token) == ("a223c6b3", "example.bitrix24.de", "acc", "ref")
    assert not hasattr(ui, "application_token")


def test_token_compare() -> None:
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd")
    assert not tokens_equal("", "")
    assert not tokens_equal(None, "abc")
