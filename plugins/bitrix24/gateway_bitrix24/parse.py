"""Sans-I/O parsing of what Bitrix24 posts to us: bytes in, typed records out.

Bitrix24 sends events as ``application/x-www-form-urlencoded`` with PHP-style bracketed keys
(``auth[member_id]``, ``data[CALL_ID]``); the docs merely *show* them as JSON. The UI install
page gets a flat form (``AUTH_ID``, ``REFRESH_ID``, ``member_id``, ``DOMAIN``, ...). Nothing here
does I/O; every function raises :class:`gateway.BadRequest` (never echoing input) on bad input.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from gateway import BadRequest, normalize_number

MAX_FIELDS = 200
MAX_DEPTH = 4
_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_MEMBER_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # also a valid core tenant id
_CALL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,256}$")

#: Telephony events are acted on only this long after Bitrix24 sent them (``ts``). Bitrix24
#: queues events and may deliver late, hence an hour; a click-to-call older than that is
#: stale for the person who clicked, and a captured request replayed later is refused.
EVENT_WINDOW = 3600
#: How far ``ts`` may be ahead of our clock (clock skew).
EVENT_SKEW = 300

INSTALL = "ONAPPINSTALL"
UPDATE = "ONAPPUPDATE"
UNINSTALL = "ONAPPUNINSTALL"
CALL_START = "ONEXTERNALCALLSTART"
CALLBACK_START = "ONEXTERNALCALLBACKSTART"


def parse_form(body: bytes) -> dict[str, Any]:
    """Decode a form body with bracketed keys into nested dicts (``a[b][c]=v``).

    Empty brackets (``a[]=1&a[]=2``) collect into a list. A key given twice with different
    values is ambiguous (which one did the sender mean?) and refused; percent-escapes must
    decode as UTF-8.
    """
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict",
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not a valid form") from None
    out: dict[str, Any] = {}
    for raw_key, value in pairs:
        m = _KEY.match(raw_key)
        if m is None:
            raise BadRequest("malformed form key")
        parts = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2))
        if len(parts) > MAX_DEPTH:
            raise BadRequest("form keys nest too deeply")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                raise BadRequest("malformed form key")
            if last:
                if part == "":
                    raise BadRequest("malformed form key")
                if isinstance(node.get(part), (dict, list)):
                    raise BadRequest("form key used both as a value and a group")
                if node.get(part, value) != value:
                    raise BadRequest("a form key appears twice with different values")
                node[part] = value
            elif parts[i + 1] == "" and i + 1 == len(parts) - 1:
                lst = node.setdefault(part, [])
                if not isinstance(lst, list):
                    raise BadRequest("form key used both as a value and a group")
                lst.append(value)
                break
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise BadRequest("form key used both as a value and a group")
                node = child
    return out


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    return value.strip() if isinstance(value, str) else ""


def _digits(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` accepts ``²`` and other digits ``int`` refuses."""
    return value.isascii() and value.isdigit()


def _int(value: str, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{what} is not a number") from None
    if n < 0 or n > 2**31:
        raise BadRequest(f"{what} is out of range")
    return n


def positive_id(value: Any) -> int | None:
    """A Bitrix24 id (user, line) as sent: a positive int or a string of digits; else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


def tokens_equal(stored: str | None, given: str | None) -> bool:
    """Constant-time comparison of an application token; missing on either side is unequal."""
    if not stored or not given:
        return False
    return hmac.compare_digest(stored.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Auth:
    """The ``auth[...]`` block of an event. Tokens are absent on uninstall and robot events."""

    member_id: str
    application_token: str = ""
    domain: str = ""
    client_endpoint: str = ""
    access_token: str = ""
    refresh_token: str = ""
    expires: int = 0
    user_id: int = 0

    def __repr__(self) -> str:  # never show tokens
        return f"Auth(member_id={self.member_id!r})"


@dataclass(frozen=True, slots=True)
class AppEvent:
    """One event as posted to ``/hooks/bitrix24/events``."""

    name: str
    auth: Auth
    data: dict[str, Any] = field(default_factory=dict)
    ts: int = 0
    handler_id: str = ""


def _auth(raw: Any) -> Auth:
    if not isinstance(raw, dict):
        raise BadRequest("auth is missing")
    member = _str(raw, "member_id")
    if not _MEMBER_ID.match(member):
        raise BadRequest("auth.member_id is missing or malformed")
    app_token = _str(raw, "application_token")
    access = _str(raw, "access_token")
    refresh = _str(raw, "refresh_token")
    for tok in (app_token, access, refresh):
        if tok and not _TOKEN.match(tok):
            raise BadRequest("a token is malformed")
    expires = _str(raw, "expires")
    user = _str(raw, "user_id")
    return Auth(member_id=member, application_token=app_token, domain=_str(raw, "domain"),
                client_endpoint=_str(raw, "client_endpoint"), access_token=access,
                refresh_token=refresh,
                expires=_int(expires, "auth.expires") if _digits(expires) else 0,
                user_id=_int(user, "auth.user_id") if _digits(user) else 0)


def parse_event(body: bytes) -> AppEvent:
    """Parse an event body; payload drift (``event_handler_id``, missing endpoints) is tolerated."""
    form = parse_form(body)
    name = _str(form, "event").upper()
    if not name or len(name) > 64:
        raise BadRequest("event name is missing")
    data = form.get("data", {})
    if not isinstance(data, dict):
        data = {}
    ts = _str(form, "ts")
    if ts and not (_digits(ts) and len(ts) < 12):
        raise BadRequest("ts is not a unix time")
    return AppEvent(name=name, auth=_auth(form.get("auth")), data=data, ts=int(ts) if ts else 0,
                    handler_id=_str(form, "event_handler_id")[:32])


@dataclass(frozen=True, slots=True)
class UiInstall:
    """The POST Bitrix24 sends to an app's install page (app with a UI).

    ``APP_SID`` is a frame id, not the event token (pitfall 9): it is deliberately not read.
    """

    member_id: str
    domain: str
    access_token: str
    refresh_token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"UiInstall(member_id={self.member_id!r})"


def parse_ui_install(body: bytes) -> UiInstall:
    form = parse_form(body)
    member = _str(form, "member_id")
    if not _MEMBER_ID.match(member):
        raise BadRequest("member_id is missing or malformed")
    access, refresh = _str(form, "AUTH_ID"), _str(form, "REFRESH_ID")
    if not (_TOKEN.match(access) and _TOKEN.match(refresh)):
        raise BadRequest("AUTH_ID and REFRESH_ID are required")
    expires = _str(form, "AUTH_EXPIRES")
    return UiInstall(member_id=member, domain=_str(form, "DOMAIN"), access_token=access,
                     refresh_token=refresh,
                     expires_in=_int(expires, "AUTH_EXPIRES") if _digits(expires) else 3600)


def parse_flag(value: str) -> bool:
    """``IS_MOBILE`` and friends: current docs send ``0``/``1``, legacy ones ``Y``/``N``."""
    v = value.strip().upper()
    if v in {"1", "Y", "TRUE"}:
        return True
    if v in {"", "0", "N", "FALSE"}:
        return False
    raise BadRequest("flag is not 0/1 or Y/N")


@dataclass(frozen=True, slots=True)
class ClickToCall:
    """``ONEXTERNALCALLSTART``: Bitrix24 registered ``call_id`` already; we only dial."""

    call_id: str
    user_id: int
    number: str
    line_number: str
    is_mobile: bool
    crm_entity_type: str
    crm_entity_id: int
    call_list_id: int

    def __repr__(self) -> str:
        return f"ClickToCall(call_id={self.call_id!r}, user_id={self.user_id})"


def parse_click_to_call(data: dict[str, Any]) -> ClickToCall:
    call_id = _str(data, "CALL_ID")
    if not _CALL_ID.match(call_id):
        raise BadRequest("data.CALL_ID is missing or malformed")
    user = _str(data, "USER_ID")
    if not _digits(user):
        raise BadRequest("data.USER_ID is missing")
    number = normalize_number(_str(data, "PHONE_NUMBER_INTERNATIONAL") or _str(data, "PHONE_NUMBER"))
    if not number or number == "anonymous":
        raise BadRequest("data.PHONE_NUMBER is missing")
    entity = _str(data, "CRM_ENTITY_ID")
    calllist = _str(data, "CALL_LIST_ID")
    return ClickToCall(call_id=call_id, user_id=_int(user, "data.USER_ID"), number=number,
                       line_number=_str(data, "LINE_NUMBER")[:64],
                       is_mobile=parse_flag(_str(data, "IS_MOBILE")),
                       crm_entity_type=_str(data, "CRM_ENTITY_TYPE").upper()[:16],
                       crm_entity_id=_int(entity, "data.CRM_ENTITY_ID") if _digits(entity) else 0,
                       call_list_id=_int(calllist, "data.CALL_LIST_ID") if _digits(calllist) else 0)


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """``ONEXTERNALCALLBACKSTART``: a callback form; no CALL_ID, we register (TYPE 4) ourselves."""

    number: str
    line_number: str
    crm_entity_type: str
    crm_entity_id: int

    def __repr__(self) -> str:
        return "CallbackRequest()"


def parse_callback(data: dict[str, Any]) -> CallbackRequest:
    number = normalize_number(_str(data, "PHONE_NUMBER"))
    if not number or number == "anonymous":
        raise BadRequest("data.PHONE_NUMBER is missing")
    entity = _str(data, "CRM_ENTITY_ID")
    return CallbackRequest(number=number, line_number=_str(data, "LINE_NUMBER")[:64],
                           crm_entity_type=_str(data, "CRM_ENTITY_TYPE").upper()[:16],
                           crm_entity_id=_int(entity, "data.CRM_ENTITY_ID") if _digits(entity) else 0)


def is_fresh(ts: int, now: float) -> bool:
    """Whether an event sent at ``ts`` (unix seconds; 0 = not given) may still be acted on."""
    return ts > 0 and now - EVENT_WINDOW <= ts <= now + EVENT_SKEW
