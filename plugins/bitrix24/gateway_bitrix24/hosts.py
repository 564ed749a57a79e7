"""The portal host allow-list: no URL taken from an event is called unless it matches.

A pattern is ``[scheme://]host[:port]``. ``host`` may start with ``*.`` (exactly one DNS
label, so ``*.bitrix24.de`` matches ``example.bitrix24.de`` but neither ``bitrix24.de`` nor
``a.b.bitrix24.de``); ``port`` may be ``*``. The scheme defaults to ``https`` and the port to
the scheme's default. Sans-I/O: strings in, booleans out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

CLOUD_ZONES = ("com", "de", "eu", "es", "fr", "it", "pl", "uk", "in", "com.br", "com.tr", "jp",
               "cn", "by", "kz", "ru", "ua", "id", "mx", "co", "vn")
DEFAULT_PATTERNS = ",".join(f"https://*.bitrix24.{zone}" for zone in CLOUD_ZONES)

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DEFAULT_PORT = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class HostPattern:
    scheme: str
    host: str  # lower-case; may start with "*."
    port: int | None  # None: any port

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or (self.port is not None and port != self.port):
            return False
        if self.host.startswith("*."):
            suffix = self.host[1:]
            label = host[: -len(suffix)] if host.endswith(suffix) else ""
            return bool(_LABEL.match(label))
        return host == self.host


def parse_patterns(text: str) -> tuple[HostPattern, ...]:
    """Parse a comma- or space-separated list; malformed entries raise ValueError."""
    out = []
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest = "https", item
        scheme = scheme.lower()
        if scheme not in _DEFAULT_PORT:
            raise ValueError("allowed portal patterns must be http or https")
        host, _, port_text = rest.rstrip("/").rpartition(":") if ":" in rest else (rest, "", "")
        host = host.lower()
        if not host or "/" in host or "@" in host:
            raise ValueError("malformed allowed portal pattern")
        if port_text == "*":
            port: int | None = None
        elif port_text:
            port = int(port_text)
        else:
            port = _DEFAULT_PORT[scheme]
        out.append(HostPattern(scheme, host, port))
    return tuple(out)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without user info; ``None`` if unusable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORT[scheme]


def is_allowed(url: str, patterns: tuple[HostPattern, ...]) -> bool:
    origin = origin_of(url)
    return origin is not None and any(p.matches(*origin) for p in patterns)


def rest_endpoint(url: str) -> str | None:
    """Normalise a portal address or ``client_endpoint`` to ``scheme://host[:port]/rest/``."""
    origin = origin_of(url if "://" in url else f"https://{url}")
    if origin is None:
        return None
    scheme, host, port = origin
    netloc = host if port == _DEFAULT_PORT[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}/rest/"
