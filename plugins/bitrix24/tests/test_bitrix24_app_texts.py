"""Texts: every language has the same keys and placeholders; templates use only known keys."""

from __future__ import annotations

import json
import re
import string
from importlib import resources
from typing import get_args

import pytest

from gateway_bitrix24.app import texts as texts_module
from gateway_bitrix24.app.texts import Texts, available_languages, choose_language
from gateway_bitrix24.app.views import HEALTH_REASONS, ErrorReason, Health, MatchedBy

APP = resources.files("gateway_bitrix24.app")
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_.]*[a-z0-9_])["']""")
DYNAMIC_KEY = re.compile(r"""\bt\(\s*["']([a-z0-9_.]+\.)["']\s*~""")


def _strings(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(APP.joinpath("texts", f"{lang}.json").read_text(encoding="utf-8"))
    return data


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _templates() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in APP.joinpath("templates").iterdir()
            if p.name.endswith(".html")}


def test_english_and_german_are_there() -> None:
    assert {"en", "de"} <= available_languages()


@pytest.mark.parametrize("lang", sorted(available_languages() - {"en"}))
def test_every_language_has_the_keys_and_placeholders_of_english(lang: str) -> None:
    en, other = _strings("en"), _strings(lang)
    assert set(other) == set(en), sorted(set(other) ^ set(en))
    for key, text in en.items():
        if key.startswith("format."):  # date formats pick their own fields
            continue
        assert _placeholders(other[key]) == _placeholders(text), key
        assert other[key].strip(), key


def test_german_is_german() -> None:
    de = Texts.load("de")
    assert de("user.erase.button") == "Meine Daten löschen"
    assert de("nav.privacy") == "Datenschutz"
    assert sum(de(k) == Texts.load("en")(k) for k in de.strings) < 20  # only names and dashes agree


def test_every_key_a_template_names_exists() -> None:
    keys = set(_strings("en"))
    used = {name: set(LITERAL_KEY.findall(src)) for name, src in _templates().items()}
    assert all(found for name, found in used.items() if name != "macros.html")
    for name, found in used.items():
        assert found <= keys, (name, sorted(found - keys))


def test_every_key_a_template_builds_exists() -> None:
    """Keys built from data (``t("error.reason." ~ page.reason)``) exist for every value the
    data classes allow."""
    keys = set(_strings("en"))
    prefixes = set().union(*(DYNAMIC_KEY.findall(src) for src in _templates().values()))
    values = {"error.reason.": get_args(ErrorReason), "error.next.": get_args(ErrorReason),
              "status.health.": get_args(Health), "status.reason.": HEALTH_REASONS,
              "mapping.matched.": (*get_args(MatchedBy), "none"),
              "state.": ("ringing", "answered", "ended", "recording"),
              "privacy.never.": ("logs", "cookies", "third_party", "sell")}
    for row in ("calls", "users", "recordings", "audio", "customer"):
        values[f"privacy.{row}."] = ("data", "kept", "deleted")
    privacy_rows = {p for p in prefixes if p == "privacy."}
    assert privacy_rows  # privacy.html builds "privacy." ~ row ~ ".data"
    for prefix in prefixes - privacy_rows:
        assert prefix in values, prefix
    for prefix, suffixes in values.items():
        for suffix in suffixes:
            assert prefix + suffix in keys, prefix + suffix


@pytest.mark.parametrize(("lang", "chosen"), [("de", "de"), ("DE", "de"), ("en", "en"), ("ru", "en"),
                                              ("", "en"), (None, "en"), ("de-AT", "de"), ("../x", "en")])
def test_language_choice(lang: str | None, chosen: str) -> None:
    assert choose_language(lang) == chosen
    assert Texts.load(lang).lang == chosen


def test_a_missing_key_is_an_error_not_a_blank() -> None:
    with pytest.raises(KeyError):
        Texts.load("en")("no.such.key")


def test_a_new_language_is_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(texts_module, "available_languages", lambda: frozenset({"en", "de", "fr"}))
    assert choose_language("fr") == "fr"
