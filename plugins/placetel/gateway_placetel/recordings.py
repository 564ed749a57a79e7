"""Matching a finished call to its recording or voicemail. Pure, best effort.

Notify's hex ``call_id`` has no link to the Web API's integer ids (reference §11), so a call
is matched by its numbers and a time window: the remote number must be equal (after
normalising), the local number too when both sides know it, and the recording's time must
fall between the call's start (its end minus duration minus ``SLACK``) and its end plus
``SLACK``. Several candidates: the one closest to the call's end wins. No match: ``None``.

References are ``recording:<id>`` (``/v2/recordings``) and ``voicemail:<id>`` (``/v2/calls``);
they are resolved into a link only at delivery time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from gateway import normalize_number

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SLACK = timedelta(seconds=180)
#: A call that rang before it was answered: how far before the answer a recording may start.
RING = timedelta(seconds=120)


def listed_time(value: Any) -> datetime | None:
    """A time of the Web API (ISO-8601 with an offset), ``None`` when absent or unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def listed_number(value: Any, region: str) -> str | None:
    """A number of the Web API (``/v2/calls`` nests it: ``to_number{number{number}}``), normalised."""
    if isinstance(value, dict):
        inner = value.get("number")
        value = inner.get("number") if isinstance(inner, dict) else inner
    return normalize_number(str(value), region) if value not in (None, "") else None


def _candidate(item: dict[str, Any], kind: str, region: str) -> tuple[str, str | None, str | None, datetime | None]:
    if kind == "voicemail":
        return (str(item.get("id")), listed_number(item.get("from_number"), region),
                listed_number(item.get("to_number"), region), listed_time(item.get("received_at")))
    return (str(item.get("id")), listed_number(item.get("from"), region), listed_number(item.get("to"), region),
            listed_time(item.get("time") or item.get("created_at")))


def find_match(call: dict[str, Any], items: Iterable[dict[str, Any]], kind: str,
               region: str = "DE") -> str | None:
    """The reference (``kind:id``) of the item that belongs to ``call``, or ``None``."""
    found = find_item(call, items, kind, region)
    return found[0] if found else None


def file_format(item: dict[str, Any], kind: str) -> str:
    """The file format of a recording or voicemail: the extension of its file's path when it
    is ``.mp3``/``.wav``, else ``mp3`` (Placetel serves both as MP3 per public client code;
    its API documentation names no format). Only the extension is read, the link is not kept."""
    link = item.get("file_url" if kind == "voicemail" else "file")
    if isinstance(link, str):
        path = urlsplit(link).path.lower()
        for ext in ("mp3", "wav"):
            if path.endswith(f".{ext}"):
                return ext
    return "mp3"


def find_item(call: dict[str, Any], items: Iterable[dict[str, Any]], kind: str,
              region: str = "DE") -> tuple[str, dict[str, Any]] | None:
    """The reference (``kind:id``) and the listing item that belong to ``call``, or ``None``.

    ``call`` is the per-call memory: ``direction``, ``remote``, ``local``, ``ended_at``
    (ISO-8601) and ``duration`` (seconds or ``None``).
    """
    ended = listed_time(call.get("ended_at"))
    remote = call.get("remote")
    if ended is None or not remote:
        return None
    local = call.get("local")
    given = call.get("duration")
    duration = given if isinstance(given, int) else 0
    earliest = ended - timedelta(seconds=duration) - RING - SLACK
    latest = ended + SLACK
    inbound = call.get("direction") != "out"
    best: tuple[timedelta, str, dict[str, Any]] | None = None
    for item in items:
        if not isinstance(item, dict) or not _ID.match(str(item.get("id", ""))):
            continue
        item_id, from_, to, when = _candidate(item, kind, region)
        their_remote, their_local = (from_, to) if inbound else (to, from_)
        if their_remote != remote or when is None or not earliest <= when <= latest:
            continue
        if local and their_local and their_local != local:
            continue
        distance = abs(ended - when)
        if best is None or distance < best[0]:
            best = (distance, f"{kind}:{item_id}", item)
    return (best[1], best[2]) if best else None


def parse_ref(ref: str) -> tuple[str, str] | None:
    """``("recording"|"voicemail", id)`` from a reference, ``None`` when it is not ours."""
    kind, sep, item_id = ref.partition(":")
    if not sep or kind not in {"recording", "voicemail"} or not _ID.match(item_id):
        return None
    return kind, item_id
