"""Sample page data for the app's tests and screenshots: a small company with Placetel and Webex."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway_bitrix24.app.views import (
    AdminPage,
    Bucket,
    CallCounts,
    ConnectionStatus,
    FailedDelivery,
    MappingRow,
    PlacetelSection,
    PortalUser,
    SettingsSection,
    StatusSection,
    TelephonyAccount,
    UserPage,
    WebexUser,
)

NOW = datetime(2026, 11, 28, 14, 30, tzinfo=timezone.utc)
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
PORTAL = "example.bitrix24.de"
KEY = b"k" * 32

PORTAL_USERS = (PortalUser(1, "Anna Schmidt"), PortalUser(7, "Jonas Weber"), PortalUser(12, "Mia Fischer"),
                PortalUser(15, "Lukas Becker"))
DAILY = (31, 44, 38, 0, 12, 52, 47)
DAILY_FAILED = (0, 2, 0, 0, 0, 3, 1)


def buckets(counts: tuple[int, ...], failed: tuple[int, ...], step: timedelta) -> tuple[Bucket, ...]:
    start = NOW.replace(minute=0) - step * (len(counts) - 1)
    return tuple(Bucket(start + step * i, w, f) for i, (w, f) in enumerate(zip(counts, failed, strict=True)))


def status(*, failed: bool = True) -> StatusSection:
    hours = [(NOW.hour - 23 + i) % 24 for i in range(24)]
    hourly = tuple(max(0, 9 - abs(h - 11)) if 7 <= h <= 18 else 0 for h in hours)
    return StatusSection(
        now=NOW,
        connections=(ConnectionStatus("Placetel", "Placetel · Zentrale", NOW - timedelta(minutes=4),
                                      reconciled=NOW - timedelta(minutes=9)),
                     ConnectionStatus("Webex", "Webex Calling", NOW - timedelta(hours=2), "ok",
                                      reconcile_failing=True)),
        last_24h=CallCounts(61, 1), last_7d=CallCounts(sum(DAILY), sum(DAILY_FAILED)),
        daily=buckets(DAILY, DAILY_FAILED, timedelta(days=1)),
        hourly=buckets(hourly, tuple(1 if h == 11 else 0 for h in hours), timedelta(hours=1)),
        failed=(FailedDelivery("4711", NOW - timedelta(hours=3), "ended", "ERROR_CORE"),
                FailedDelivery("4712", NOW - timedelta(hours=3), "recording", "QUERY_LIMIT_EXCEEDED"))
        if failed else ())


def admin_page(*, connected: bool = True, failed: bool = True) -> AdminPage:
    return AdminPage(
        placetel=PlacetelSection(True, "https://gateway.example.eu/hooks/placetel/c_8f2k1x",
                                 "pt-7Q2vX9mL4sK8") if connected else PlacetelSection(False),
        webex_users=(WebexUser("Jonas Weber", "jonas.weber@example.de", "207"),
                     WebexUser("Mia Fischer", "mia.fischer@example.de", None)),
        settings=SettingsSection(1, crm_create=True, show_card=True, log_internal=False, portal_users=PORTAL_USERS),
        mapping=(MappingRow("c1.u1", "Placetel", "Anna Schmidt", "anna.schmidt@example.de", "201", 1, "email"),
                 MappingRow("c1.u2", "Placetel", "Empfang", None, "200", 15, "manual"),
                 MappingRow("c2.u9", "Webex", "Jonas Weber", "jonas.weber@example.de", "207", 7, "extension"),
                 MappingRow("c2.u10", "Webex", "Lager", None, "230", None)),
        status=status(failed=failed))


def user_page(*, logged_in: bool = True) -> UserPage:
    return UserPage(
        name="Jonas Weber", webex_logged_in=logged_in, webex_login_url="/apps/webex/login?t=xyz",
        webex_logout_url="/apps/webex/logout?t=xyz",
        accounts=(TelephonyAccount("Webex", "Jonas Weber", "jonas.weber@example.de", "207"),) if logged_in else (),
        mapped=False, call_records=23 if logged_in else 0, retention_days=7)
