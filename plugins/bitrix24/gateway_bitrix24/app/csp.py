"""Security headers of the app's pages: who may frame them, what they may load.

``frame-ancestors`` names only the tenant's own portal, so another site cannot frame the app
(clickjacking). Everything else comes from the gateway itself (``'self'``), except Bitrix24's
``BX24`` library, allowed only on pages that need it (finishing the install, fitting the frame).
No inline script or style is allowed anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from .views import BX24_SRC

_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def portal_origin(portal: str, scheme: str = "https") -> str:
    """``https://<domain>[:port]`` for a portal domain (``example.bitrix24.de``) or URL.

    Raises ``ValueError`` for anything that is not a plain host, so a header can never be
    extended through a stored domain.
    """
    text = portal.strip().lower()
    if not text.isascii() or not text.isprintable() or " " in text:  # urlsplit drops tabs and newlines
        raise ValueError("not a portal address")
    parts = urlsplit(text if "://" in text else f"{scheme}://{text}")
    if parts.scheme not in ("https", "http") or parts.username or parts.password \
            or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("not a portal address")
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ValueError("not a portal address") from None
    if not _HOST.match(host):
        raise ValueError("not a portal address")
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


_DEFAULT_PORTS = {"https": 443, "http": 80}


def pattern_source(scheme: str, host: str, port: int | None) -> str:
    """A CSP source for a portal allow-list pattern (``host`` may start with ``*.``; ``port``
    ``None`` is any port): who may frame a page that belongs to no tenant yet (an error)."""
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if scheme not in _DEFAULT_PORTS or not _HOST.match(bare) or (port is not None and not 0 < port < 65536):
        raise ValueError("not a portal pattern")
    where = ":*" if port is None else ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")
    return f"{scheme}://{'*.' if wildcard else ''}{bare}{where}"


_SOURCE = re.compile(r"^https?://(\*\.)?[a-z0-9.-]+(:(\*|[0-9]{1,5}))?$")


def _ancestors(portal: str | Sequence[str]) -> str:
    if isinstance(portal, str):
        return portal_origin(portal)
    sources = list(portal)
    if not all(_SOURCE.match(s) for s in sources):
        raise ValueError("frame ancestors must be portal origins or patterns")
    return " ".join(sources) or "'none'"


def content_security_policy(portal: str | Sequence[str], *, bx24: bool = False, bx24_src: str = BX24_SRC) -> str:
    """The ``Content-Security-Policy`` of a page shown inside ``portal``'s frame: a portal
    address, or several sources made by :func:`portal_origin` / :func:`pattern_source`."""
    script = "'self'" + (f" {_source(bx24_src)}" if bx24 else "")
    return "; ".join((
        "default-src 'self'",
        f"script-src {script}",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {_ancestors(portal)}",
    ))


def _source(url: str) -> str:
    parts = urlsplit(url)
    if not url.isascii() or not url.isprintable() or " " in url or parts.scheme != "https" or not parts.hostname or not _HOST.match(parts.hostname) \
            or parts.query or parts.fragment or not re.fullmatch(r"[A-Za-z0-9/._-]*", parts.path):
        raise ValueError("the BX24 library address must be a plain https URL")
    return f"https://{parts.hostname}{parts.path}"


def security_headers(portal: str | Sequence[str], *, bx24: bool = False,
                     bx24_src: str = BX24_SRC) -> dict[str, str]:
    """Every header an app page is sent with.

    Tokens travel in URLs (no cookies in the frame), so no page sends a ``Referer``; pages hold
    personal data for the viewer only, so nothing caches them.
    """
    return {
        "Content-Security-Policy": content_security_policy(portal, bx24=bx24, bx24_src=bx24_src),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
