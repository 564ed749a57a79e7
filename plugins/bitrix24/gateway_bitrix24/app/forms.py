"""Reading the app's forms: a form's fields in, checked values out (no I/O).

Every form carries its frame token in the field ``t`` (checked by the caller with
:func:`.token.verify` for the form's purpose before anything here is used). Fields a form
does not have are refused, and so are values the page could not have offered: a portal user
that was not in the select, a mapping row that was not on the page. Errors are
:class:`gateway.BadRequest` and never repeat the input.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gateway import BadRequest

TOKEN_FIELD = "t"
MAP_PREFIX = "map."
AUTO = "auto"
ALL = "all"
MAX_API_KEY = 200
_ROW_KEY = re.compile(r"^[A-Za-z0-9.:_-]{1,200}$")
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_API_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def form_token(form: Mapping[str, str]) -> str:
    """The frame token a form was posted with ("" when missing)."""
    value = form.get(TOKEN_FIELD, "")
    return value if isinstance(value, str) else ""


def _only(form: Mapping[str, str], allowed: Collection[str]) -> None:
    if any(name != TOKEN_FIELD and name not in allowed for name in form):
        raise BadRequest("the form has fields it should not have")


def _flag(form: Mapping[str, str], name: str) -> bool:
    value = form.get(name)
    if value is None:
        return False
    if value != "on":
        raise BadRequest("a checkbox has an unexpected value")
    return True


def _portal_user(value: str, portal_user_ids: Collection[int]) -> int:
    if not value.isdigit() or len(value) > 12 or int(value) not in portal_user_ids:
        raise BadRequest("not a portal user that was offered")
    return int(value)


@dataclass(frozen=True, slots=True)
class SettingsChoice:
    responsible_user_id: int | None
    crm_create: bool
    show_card: bool
    log_internal: bool


def read_settings(form: Mapping[str, str], portal_user_ids: Collection[int]) -> SettingsChoice:
    """The settings form: responsible user ("" = nobody) and three checkboxes (absent = off)."""
    _only(form, ("responsible_user_id", "crm_create", "show_card", "log_internal"))
    raw = form.get("responsible_user_id", "")
    responsible = _portal_user(raw, portal_user_ids) if raw else None
    return SettingsChoice(responsible, _flag(form, "crm_create"), _flag(form, "show_card"),
                          _flag(form, "log_internal"))


def read_mapping(form: Mapping[str, str], row_keys: Collection[str],
                 portal_user_ids: Collection[int]) -> dict[str, int | None]:
    """The mapping form: row key → chosen portal user id, or ``None`` for automatic matching.
    Only rows that were on the page are accepted; rows missing from the form are left out."""
    out: dict[str, int | None] = {}
    for name, value in form.items():
        if name == TOKEN_FIELD:
            continue
        key = name[len(MAP_PREFIX):] if name.startswith(MAP_PREFIX) else ""
        if not _ROW_KEY.match(key) or key not in row_keys:
            raise BadRequest("the form names a telephone user that was not on the page")
        out[key] = None if value == AUTO else _portal_user(value, portal_user_ids)
    return out


def read_placetel_key(form: Mapping[str, str]) -> str:
    """The Placetel API key (surrounding blanks removed); not checked with Placetel here."""
    _only(form, ("api_key",))
    key = form.get("api_key", "").strip()
    if not key or len(key) > MAX_API_KEY or not _API_KEY.match(key):
        raise BadRequest("the API key is missing or malformed")
    return key


def read_retry(form: Mapping[str, str]) -> str | None:
    """The failed delivery to retry, or ``None`` for all of them."""
    _only(form, ("delivery",))
    value = form.get("delivery", "")
    if value == ALL:
        return None
    if not _DELIVERY.match(value):
        raise BadRequest("no failed delivery named")
    return value


def read_confirmation(form: Mapping[str, str]) -> None:
    """The delete-my-data form must carry the ticked confirmation (the browser requires it too)."""
    _only(form, ("confirm",))
    if form.get("confirm") != "yes":
        raise BadRequest("the deletion was not confirmed")


def read_empty(form: Mapping[str, str]) -> None:
    """Forms that are only a button (disconnect Placetel, log out of Webex)."""
    _only(form, ())
