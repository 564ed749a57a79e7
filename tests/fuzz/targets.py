"""Fuzz targets: the sans-I/O parsers, bytes in. Each target may raise only the error type its
parser documents; anything else escaping is a finding.

Run coverage-guided with atheris (``python tests/fuzz/run.py <target>``); the test suite
replays the seed corpus (``corpus/<target>/``) through the same functions without atheris.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from gateway import BadRequest
from gateway.admin import _subject
from gateway.audit import clean_details
from gateway.privacy.rights import _changes
from gateway_bitrix24 import parse as b24
from gateway_bitrix24.settings import TenantSettings
from gateway_bitrix24.users import Override
from gateway_placetel import parse as placetel
from gateway_placetel import signature as placetel_signature
from gateway_webex import parse as webex
from gateway_webex import session as webex_session
from gateway_webex import signature as webex_signature

NOW = datetime(2026, 3, 10, 11, 19, 30, tzinfo=timezone.utc)
SECRET = "fuzz-secret"


def _header(data: bytes) -> str:
    """A header value as aiohttp hands it on: latin-1 bytes, surrogate-escaped beyond ASCII."""
    return data[:80].decode("utf-8", "surrogateescape")


def fuzz_placetel(data: bytes) -> None:
    placetel_signature.verify(SECRET, data, _header(data))
    try:
        notification = placetel.parse_notification(data)
    except placetel.ParseError:
        return
    events, memory = placetel.to_events(notification, None, NOW)
    placetel.to_events(notification, memory, NOW)  # a redelivery, with the call's memory


def fuzz_webex(data: bytes) -> None:
    webex_signature.verify(SECRET, data, {webex_signature.HEADER: _header(data)})
    try:
        envelope = webex.parse_envelope(data)
        if envelope.resource == "convergedRecordings":
            webex.recording_notice(envelope)
            return
        snapshot = webex.call_snapshot(envelope)
    except webex.MalformedNotification:
        return
    state, _events = webex_session.apply(None, snapshot, user="person", local_number=None, received_at=NOW)
    state, _events = webex_session.apply(state, snapshot, user="person", local_number=None, received_at=NOW)
    webex_session.expire(state, NOW)


def fuzz_bitrix24_event(data: bytes) -> None:
    try:
        event = b24.parse_event(data)
        b24.is_fresh(event.ts, NOW.timestamp())
        if event.name == b24.CALL_START:
            b24.parse_click_to_call(event.data)
        elif event.name == b24.CALLBACK_START:
            b24.parse_callback(event.data)
    except BadRequest:
        return


def fuzz_bitrix24_install(data: bytes) -> None:
    try:
        b24.parse_ui_install(data)
    except BadRequest:
        return


def fuzz_admin_json(data: bytes) -> None:
    """The validators behind the admin API's JSON bodies (core and Bitrix24 plugin routes)."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(body, dict):
        return
    for check in (lambda: _subject(body), lambda: _changes(body.get("changes")),
                  lambda: TenantSettings.from_dict(body), lambda: clean_details(body),
                  lambda: [Override.from_dict(e) for e in _entries(body)]):
        try:
            check()
        except BadRequest:
            pass


def _entries(body: dict[str, object]) -> list[object]:
    entries = body.get("entries")  # the route refuses anything but a list before looking inside
    return entries if isinstance(entries, list) else []


TARGETS: dict[str, Callable[[bytes], None]] = {
    "placetel": fuzz_placetel,
    "webex": fuzz_webex,
    "bitrix24_event": fuzz_bitrix24_event,
    "bitrix24_install": fuzz_bitrix24_install,
    "admin_json": fuzz_admin_json,
}
