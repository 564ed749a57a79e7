"""Every visible string of the app, one JSON file per language under ``texts/``.

Bitrix24 passes the user's language as ``LANG`` (``de``, ``en``, ``ru``, ...). A language with
a file here is used as it is; any other gets English. Adding a language is adding a file with
the same keys (a test checks that every file has exactly the keys and placeholders of
``en.json``). Placeholders are ``{name}`` and filled with :meth:`str.format_map`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import cache
from importlib import resources

DEFAULT = "en"
_LANG = re.compile(r"^[a-z]{2}$")


@cache
def available_languages() -> frozenset[str]:
    """The languages that have a file."""
    folder = resources.files(__package__).joinpath("texts")
    return frozenset(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")
                     and _LANG.match(p.name[:-5]))


def choose_language(lang: str | None) -> str:
    """The language to show for Bitrix24's ``LANG``: its own file if there is one, else English."""
    code = (lang or "").strip().lower()[:2]
    return code if code in available_languages() else DEFAULT


class Texts:
    """The strings of one language: ``t("key", name=...)``; a missing key is a ``KeyError``,
    so a template cannot silently show a key instead of a text."""

    def __init__(self, lang: str, strings: Mapping[str, str]) -> None:
        self.lang = lang
        self.strings = dict(strings)

    @classmethod
    def load(cls, lang: str | None) -> Texts:
        """The texts for Bitrix24's ``LANG`` (see :func:`choose_language`)."""
        return _load(choose_language(lang))

    def __call__(self, key: str, /, **params: object) -> str:
        text = self.strings[key]
        return text.format_map(params) if params else text

    def has(self, key: str) -> bool:
        return key in self.strings

    def when(self, moment: datetime) -> str:
        """A moment as this language writes it, in UTC (the gateway does not know the portal's zone)."""
        return self._format("format.datetime", moment.astimezone(timezone.utc))

    def date(self, moment: datetime) -> str:
        return self._format("format.date", moment.astimezone(timezone.utc))

    def day(self, moment: datetime) -> str:
        return self._format("format.day", moment.astimezone(timezone.utc))

    def hour(self, moment: datetime) -> str:
        return self._format("format.hour", moment.astimezone(timezone.utc))

    def _format(self, key: str, m: datetime) -> str:
        months = self.strings["format.months"].split(",")
        return self.strings[key].format(d=m.day, m=m.month, mon=months[m.month - 1], y=m.year, h=m.hour,
                                        H=f"{m.hour:02d}", M=f"{m.minute:02d}")


@cache
def _load(lang: str) -> Texts:
    raw = resources.files(__package__).joinpath("texts", f"{lang}.json").read_text(encoding="utf-8")
    strings = json.loads(raw)
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise ValueError(f"texts/{lang}.json must map keys to strings")
    return Texts(lang, strings)
