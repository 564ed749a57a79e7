"""The portal host allow-list."""

from __future__ import annotations

import pytest
from gateway_bitrix24.hosts import DEFAULT_PATTERNS, is_allowed, parse_patterns, rest_endpoint

DEFAULT = parse_patterns(DEFAULT_PATTERNS)


@pytest.mark.parametrize("url", [
    "https://example.bitrix24.de/rest/", "https://Example.Bitrix24.COM/rest/x", "https://a-b.bitrix24.com.br/rest/",
    "https://example.bitrix24.de:443/rest/",
])
def test_cloud_portals_allowed(url: str) -> None:
    assert is_allowed(url, DEFAULT)


@pytest.mark.parametrize("url", [
    "http://example.bitrix24.de/rest/",            # not https
    "https://example.bitrix24.de:8443/rest/",      # other port
    "https://bitrix24.de/rest/",                   # no portal label
    "https://a.b.bitrix24.de/rest/",               # two labels
    "https://example.bitrix24.de.evil.com/rest/",
    "https://evil.com/?x=.bitrix24.de",
    "https://user@example.bitrix24.de/rest/",
    "ftp://example.bitrix24.de/", "javascript:alert(1)", "", "https://[::1/",
])
def test_everything_else_refused(url: str) -> None:
    assert not is_allowed(url, DEFAULT)


def test_patterns_with_scheme_and_port() -> None:
    pats = parse_patterns("http://127.0.0.1:*, crm.example.com:8443")
    assert is_allowed("http://127.0.0.1:5555/rest/", pats)
    assert not is_allowed("https://127.0.0.1:5555/rest/", pats)
    assert is_allowed("https://crm.example.com:8443/rest/", pats)
    assert not is_allowed("https://crm.example.com/rest/", pats)
    with pytest.raises(ValueError):
        parse_patterns("gopher://x")


def test_rest_endpoint() -> None:
    assert rest_endpoint("example.bitrix24.de") == "https://example.bitrix24.de/rest/"
    assert rest_endpoint("https://example.bitrix24.de/rest/") == "https://example.bitrix24.de/rest/"
    assert rest_endpoint("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/rest/"
    assert rest_endpoint("mailto:x") is None
