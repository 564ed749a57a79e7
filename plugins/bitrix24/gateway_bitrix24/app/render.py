"""Turn the page data of :mod:`.views` into HTML with Jinja2 (autoescaping on for every template).

Each ``render_*`` function takes plain data and returns a complete HTML document. Values from
portals, telephone systems and users are escaped by Jinja2; the only markup passed through
unescaped is the SVG chart, which :mod:`.chart` escapes itself. Undefined template variables
are errors, so a typo cannot render an empty string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from . import token
from .chart import Bar, bar_chart, legend
from .texts import Texts
from .views import AdminPage, Bucket, ErrorPage, Frame, PrivacyPage, UserPage


@cache
def environment() -> Environment:
    """The app's Jinja2 environment; ``autoescape=True`` for every template, whatever its name."""
    return Environment(loader=PackageLoader(__package__, "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def _render(template: str, frame: Frame, page_id: str, **values: Any) -> str:
    texts = Texts.load(frame.lang)

    def href(path: str) -> str:
        view = frame.tokens.get(token.VIEW)
        return f"{path}?t={view}" if view else path

    return environment().get_template(template).render(
        frame=frame, t=texts, href=href, when=texts.when, date=texts.date, page_id=page_id, **values)


def render_error(page: ErrorPage, frame: Frame | None = None) -> str:
    """The page for a wrong, expired or foreign ``AUTH_ID`` or token: what happened, what to do,
    no data. ``frame`` (for the language) must carry no tokens: there is nobody to give them to."""
    frame = frame or Frame()
    if frame.tokens:
        raise ValueError("an error page carries no tokens")
    return _render("error.html", frame, "error", page=page)


def render_install(frame: Frame) -> str:
    """The install page of an app with a UI: ``app.js`` calls ``BX24.installFinish()``."""
    if not frame.bx24:
        raise ValueError("finishing the install needs Bitrix24's library")
    return _render("install.html", frame, "install")


@dataclass(frozen=True, slots=True)
class _Chart:
    svg: Markup
    caption: str


def _bars(texts: Texts, buckets: Sequence[Bucket], hourly: bool) -> list[Bar]:
    bars = []
    for b in buckets:
        label = texts.hour(b.start) if hourly else texts.day(b.start)
        long = f"{texts.date(b.start)}, {label}" if hourly else texts.date(b.start)
        bars.append(Bar(label, b.written, b.failed,
                        texts("chart.bar", label=long, written=b.written, failed=b.failed)))
    return bars


def _chart(texts: Texts, buckets: Sequence[Bucket], hourly: bool) -> _Chart:
    bars = _bars(texts, buckets, hourly)
    title = texts("chart.hourly_title" if hourly else "chart.daily_title")
    summary = texts("chart.summary", written=sum(b.written for b in bars), failed=sum(b.failed for b in bars))
    if bars and any(b.written + b.failed for b in bars):
        peak = max(bars, key=lambda b: b.written + b.failed)  # first of equal peaks: deterministic
        summary += "; " + texts("chart.peak", label=peak.label, count=peak.written + peak.failed)
    svg = bar_chart(bars, title=title, summary=summary + ".", written_label=texts("chart.written"),
                    failed_label=texts("chart.failed"))
    return _Chart(Markup(svg), title)  # noqa: S704 - chart.py escapes every text it writes


def render_admin(page: AdminPage, frame: Frame) -> str:
    """The administrator's page: Placetel, Webex users, settings, user mapping, status."""
    if not frame.is_admin or token.SETTINGS not in frame.tokens:
        raise ValueError("the administrator's page needs an administrator's frame")
    texts = Texts.load(frame.lang)
    charts = [_chart(texts, buckets, hourly) for buckets, hourly in
              ((page.status.daily, False), (page.status.hourly, True)) if buckets]
    names = {u.id: u.name for u in page.settings.portal_users}
    return _render("admin.html", frame, "admin", page=page, charts=charts, names=names,
                   legend=Markup(legend(texts("chart.written"), texts("chart.failed"))))  # noqa: S704


def render_user(page: UserPage, frame: Frame) -> str:
    """Every user's own page: Webex login and logout, what the app keeps, delete it."""
    for url in (page.webex_login_url, page.webex_logout_url):
        if url is not None and not (url.startswith("https://") or (url.startswith("/") and not url.startswith("//"))):
            raise ValueError("the Webex login and logout links must be https or paths on the gateway")
    return _render("user.html", frame, "user", page=page)


def render_privacy(page: PrivacyPage, frame: Frame) -> str:
    """The privacy table in plain words."""
    return _render("privacy.html", frame, "privacy", page=page)
