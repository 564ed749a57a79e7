"""Reconciliation's core: which window a source reads, when it runs, back-off, the gate between
webhooks and a decision, and the matching the sources share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import gateway.reconcile as rec
from gateway import (
    CallSpan,
    Connection,
    Direction,
    PluginContext,
    ReconcileResult,
    RetryableError,
    Source,
    match_calls,
    time_index,
    utcnow,
)
from gateway.testing import SourcePlugin
from gateway.metrics import REGISTRY

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SLACK = timedelta(seconds=180)


def span(key: str, lo: int, hi: int, remote: str = "+4922112345678", **kw: Any) -> CallSpan:
    return CallSpan(key, remote, kw.pop("direction", Direction.INBOUND), T0 + timedelta(seconds=lo),
                    T0 + timedelta(seconds=hi), **kw)


def test_a_listed_call_no_received_call_could_be_is_missing() -> None:
    listed = [span("a", 0, 30), span("b", 600, 630), span("c", 0, 30, remote="+4930123456"),
              span("d", 0, 30, direction=Direction.OUTBOUND), span("e", 0, 30, local="+4922199998560")]
    known = [span("k1", 5, 40, local="+4922100000000")]
    m = match_calls(listed, known, SLACK)
    assert m.matched == {"a": "k1"} and m.ambiguous == []
    # later, another number, the other direction, another line of the company
    assert m.missing == ["b", "c", "d", "e"]


def test_two_calls_a_minute_apart_and_one_received_is_ambiguous_not_missing() -> None:
    m = match_calls([span("first", 0, 10), span("second", 60, 70)], [span("got", 62, 75)], SLACK)
    assert m.matched == {"second": "got"} and m.ambiguous == ["first"] and m.missing == []


def test_an_identity_wins_over_time() -> None:
    listed = [span("7", 0, 10, ident="7"), span("8", 20, 30, ident="8")]
    known = [span("reconciled-8", 20, 30, ident="8"), span("hook", 1, 11)]
    m = match_calls(listed, known, SLACK)
    assert m.matched == {"7": "hook", "8": "reconciled-8"}


def test_time_indexes_cover_every_hour_of_a_window() -> None:
    assert rec.time_indexes(T0 - timedelta(minutes=5), T0 + timedelta(hours=1, minutes=1)) == [
        "t|2026-03-02T08", "t|2026-03-02T09", "t|2026-03-02T10"]
    assert time_index(T0.astimezone(timezone(timedelta(hours=1)))) == "t|2026-03-02T09"


async def test_the_gate_lets_webhooks_pass_together_and_a_decision_alone() -> None:
    gate = rec._Gate()
    order: list[str] = []
    webhook = gate.shared()
    await webhook.__aenter__()
    async with gate.shared():  # webhooks do not wait for each other
        order.append("second webhook")

    async def decide() -> None:
        async with gate.exclusive():
            order.append("decision")
            await asyncio.sleep(0.05)
        order.append("decided")

    async def late_webhook() -> None:
        async with gate.shared():
            order.append("late webhook")

    deciding = asyncio.create_task(decide())
    await asyncio.sleep(0.02)
    assert order == ["second webhook"]  # the decision waits for the webhook in progress
    late = asyncio.create_task(late_webhook())
    await asyncio.sleep(0.02)
    assert order == ["second webhook"]  # a waiting decision goes first
    await webhook.__aexit__(None, None, None)
    await asyncio.gather(deciding, late)
    assert order == ["second webhook", "decision", "decided", "late webhook"]


class ListingSource(Source):
    """A telephone system with a call list: records the windows it is asked for."""

    name = "listing"

    def __init__(self) -> None:
        self.windows: list[tuple[datetime, datetime]] = []
        self.fail: BaseException | None = None
        self.wrote = 0

    async def connect(self, ctx: PluginContext, connection: Connection) -> Mapping[str, Any]:
        return {}

    async def reconcile(self, ctx: PluginContext, connection: Connection, since: datetime, until: datetime,
                        progress: Callable[[str], None]) -> ReconcileResult:
        self.windows.append((since, until))
        progress("listing read")
        if self.fail is not None:
            raise self.fail
        return ReconcileResult(listed=2, received=1, created=self.wrote)


@pytest.fixture
async def listing(gateway_harness: Any) -> Any:
    plugin = SourcePlugin(ListingSource())
    h = await gateway_harness(plugins=[("listing", plugin)], env={"GATEWAY_RETENTION_DAYS": "2"})
    await h.create_tenant("acme")
    h.conn = await h.gw.tenancy.connection((await h.connect("acme", "listing"))["id"])
    h.source = plugin.source
    return h


async def state(h: Any) -> dict[str, Any]:
    return await h.gw.reconciliation.state(h.conn)


async def put(h: Any, **values: Any) -> None:
    await h.context("listing").storage("acme").put("reconcile", h.conn.id, {**await state(h), **values})


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


async def test_windows_follow_each_other_and_end_before_now(listing: Any) -> None:
    h = listing
    origin = (await state(h))["origin"]  # set when the connection was made
    assert abs(origin - ms(utcnow())) < 5000
    await put(h, origin=ms(utcnow() - timedelta(hours=1)), until=ms(utcnow() - timedelta(hours=1)))
    lines: list[str] = []
    assert (await h.gw.reconciliation.run(h.conn, progress=lines.append)).listed == 2
    [(since, until)] = h.source.windows
    assert since == datetime.fromtimestamp((await state(h))["origin"] / 1000, timezone.utc)
    assert utcnow() - until >= rec.SETTLE  # calls that just ended may still have a webhook coming
    assert (await state(h))["until"] == ms(until)
    await h.gw.reconciliation.run(h.conn)
    assert ms(h.source.windows[1][0]) == ms(until)  # the next window begins where this one ended
    assert lines[0].startswith("window ") and lines[1] == "listing read"


async def test_windows_never_reach_before_the_origin_the_retention_or_an_erasure(
        listing: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h = listing
    await put(h, origin=ms(utcnow() - timedelta(days=30)), until=ms(utcnow() - timedelta(days=30)))
    await h.gw.reconciliation.run(h.conn, since=utcnow() - timedelta(days=20))
    since, _ = h.source.windows[-1]
    retention = utcnow() - timedelta(days=2)
    assert retention + timedelta(hours=2) < since < retention + timedelta(hours=3, seconds=5)  # a margin

    await put(h, origin=ms(utcnow() - timedelta(hours=5)))
    await h.gw.reconciliation.run(h.conn, since=utcnow() - timedelta(days=1))
    assert abs(h.source.windows[-1][0] - (utcnow() - timedelta(hours=5))) < timedelta(seconds=5)

    await h.admin("POST", "/tenants/acme/subjects/erase", {"phone": "+4922112345678"}, expect=200)
    erased = utcnow()
    await asyncio.sleep(0.01)
    h.source.windows.clear()
    await h.gw.reconciliation.run(h.conn, since=utcnow() - timedelta(hours=1))
    assert h.source.windows == []  # the window would begin at the erasure: nothing to read yet
    await put(h, until=ms(utcnow() - timedelta(hours=1)))
    monkeypatch.setattr(rec, "SETTLE", timedelta(0))
    await h.gw.reconciliation.run(h.conn)
    assert h.source.windows[-1][0] >= erased - timedelta(seconds=1)


async def test_a_failure_backs_off_at_least_as_long_as_the_vendor_asked(listing: Any) -> None:
    h = listing
    hour_ago = ms(utcnow() - timedelta(hours=1))
    await put(h, origin=hour_ago, until=hour_ago)
    failed = REGISTRY.get_sample_value("gateway_reconciliations_total", {"plugin": "listing", "outcome": "failed"}) or 0
    h.source.fail = RetryableError("busy", retry_after=600)
    with pytest.raises(rec.ReconcileFailed) as raised:
        await h.gw.reconciliation.run(h.conn)
    assert "RetryableError" in str(raised.value)
    first = await state(h)
    assert first["failures"] == 1 and first["next_try"] >= ms(utcnow() + timedelta(seconds=590))
    h.source.fail = ValueError("no")
    with pytest.raises(rec.ReconcileFailed):
        await h.gw.reconciliation.run(h.conn)
    second = await state(h)
    assert second["failures"] == 2 and second["until"] == first["until"]  # the window is read again
    wait = (second["next_try"] - second["last_try"]) / 1000
    assert rec.BACKOFF_BASE * 2 - 1 <= wait <= rec.BACKOFF_BASE * 2 + 1
    assert REGISTRY.get_sample_value("gateway_reconciliations_total",
                                     {"plugin": "listing", "outcome": "failed"}) == failed + 2
    status = await h.gw.reconciliation.status(h.conn)
    assert status is not None and status.failing and status.failures == 2
    shown = await h.admin("GET", f"/tenants/acme/connections/{h.conn.id}", expect=200)
    assert shown["reconciliation"] == {"last_success": None, "failing": True, "failures": 2}

    now = utcnow()
    assert not rec.Reconciliation.due(second, now, 900)
    assert rec.Reconciliation.due({**second, "next_try": ms(now) - 1}, now, 900)
    assert rec.Reconciliation.due({**second, "requested": True}, now, 900)
    h.source.fail = None
    await h.gw.reconciliation.run(h.conn)
    assert (await state(h))["failures"] == 0


async def test_the_task_runs_everything_first_then_what_is_due(listing: Any) -> None:
    h = listing
    view = h.context("listing").reconcile
    assert await view.run_due(900) == 1  # the first round after start-up
    assert await view.run_due(900) == 0
    await view.request(h.conn)  # a subscription was re-activated
    assert await view.run_due(900) == 1
    await put(h, last_try=ms(utcnow() - timedelta(seconds=901)))
    assert await view.run_due(900) == 1
    assert REGISTRY.get_sample_value("gateway_reconcile_failing_connections", {"plugin": "listing"}) == 0
    oldest = REGISTRY.get_sample_value("gateway_reconcile_oldest_success_timestamp_seconds", {"plugin": "listing"})
    assert oldest is not None and abs(oldest - utcnow().timestamp()) < 5
    await h.gw.tenancy.update_connection(h.conn.id, status="broken", reason="api_key_rejected")
    await view.request(h.conn)
    assert await view.run_due(900) == 0  # a broken connection waits for its credentials


async def test_a_since_beyond_what_was_read_leaves_the_gap_to_be_read(listing: Any) -> None:
    h = listing
    read_until = utcnow() - timedelta(hours=3)
    await put(h, origin=ms(utcnow() - timedelta(hours=5)), until=ms(read_until))
    await h.gw.reconciliation.run(h.conn, since=utcnow() - timedelta(hours=1))
    assert (await state(h))["until"] == ms(read_until)  # the two hours before --since are not read yet
    await h.gw.reconciliation.run(h.conn)
    assert ms(h.source.windows[-1][0]) == ms(read_until)
    assert (await state(h))["until"] == ms(h.source.windows[-1][1])


async def test_one_process_at_a_time_per_connection(listing: Any) -> None:
    h = listing
    async with h.context("listing").storage("acme").lease(f"reconcile:{h.conn.id}"):
        with pytest.raises(rec.ReconcileBusy):
            await h.gw.reconciliation.run(h.conn)


async def test_reconciliation_records_come_and_go_with_the_connection(listing: Any) -> None:
    h = listing
    assert await h.context("listing").storage("acme").get("reconcile", h.conn.id) is not None
    await h.gw.tenancy.disconnect(h.conn.id)
    assert await h.context("listing").storage("acme").get("reconcile", h.conn.id) is None


async def test_a_source_without_a_call_list_has_no_reconciliation(demo: Any) -> None:
    conn = await demo.gw.tenancy.connection(demo.connection_id)
    assert await demo.context("demo").storage("acme").get("reconcile", conn.id) is None
    assert await demo.gw.reconciliation.status(conn) is None
    shown = await demo.admin("GET", f"/tenants/acme/connections/{conn.id}", expect=200)
    assert shown["reconciliation"] is None
    with pytest.raises(Exception, match="no call list"):
        await demo.gw.reconciliation.run(conn)
