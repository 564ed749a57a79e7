"""Retention: ``gateway purge`` deletes call records past the period, in every plugin, and
the deleted data leaves the database files."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from privacy_flows import CALLER, OTHER, cli_env, gateway_cli, needles, raw_files

from gateway import CallEvent, CallState, Direction, hookimpl


def event(i: int, number: str) -> CallEvent:
    return CallEvent(event_id=f"old{i}", call_id=f"call{i}", direction=Direction.INBOUND,
                     state=CallState.RINGING, occurred_at=datetime.now(timezone.utc), remote_number=number)


async def test_purge_deletes_expired_records_everywhere_and_reports_without_personal_data(demo):
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    eight_days_ago = datetime.now(timezone.utc) - timedelta(days=8)
    await demo.gw.ingest.store(connection, [event(i, CALLER) for i in range(5)], received_at=eight_days_ago)
    await demo.gw.ingest.store(connection, [event(99, OTHER)])
    store = demo.gw.contexts["demo"].storage("acme")
    await store.put("crm-call", "old-call", {"crm_id": "CRM-7781"}, call_record=True)
    await demo.recorder.wait_for(6)
    await demo.gw.store.checkpoint()
    con = sqlite3.connect(demo.gw.store.path)
    expired = [r[0] for r in con.execute("SELECT payload FROM events WHERE received_at < ?",
                                         (int(datetime.now(timezone.utc).timestamp() * 1000) - 86400000,))]
    con.close()
    assert len(expired) == 5 and all(blob[8:40] in raw_files(demo) for blob in expired)

    out = gateway_cli("purge", env=cli_env(demo))
    assert out.returncode == 0, out.stderr
    assert "purged 5/5 call records" in out.stderr  # not a terminal: a line per batch
    assert "5 events" in out.stdout and "5 deliveries" in out.stdout
    for text in (out.stdout, out.stderr):
        assert CALLER not in text and CALLER[1:] not in text and "CRM-7781" not in text

    kept = await demo.admin("POST", "/tenants/acme/subjects/export", {"phone": OTHER}, expect=200)
    assert len(kept["gateway"]["call_events"]) == 1
    gone = await demo.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER}, expect=200)
    assert gone["gateway"]["call_events"] == []
    # the plugin's call record created "now" is within retention; the demo holds no other data
    assert await store.get("crm-call", "old-call") == {"crm_id": "CRM-7781"}
    # nothing of the purged rows stays in the files: not even their ciphertext
    after = raw_files(demo)
    for blob in expired:
        assert blob[8:40] not in after
    for needle in needles(CALLER):
        assert needle not in after


class Holder:
    """A plugin that keeps call data of its own and purges it through the retention hook."""

    def __init__(self) -> None:
        self.cutoffs: list[datetime] = []

    @hookimpl
    def purge_expired(self, cutoff: datetime) -> Any:
        async def purge() -> int:
            self.cutoffs.append(cutoff)
            return 3
        return purge()


async def test_retention_calls_every_plugins_hook_with_the_configured_period(gateway_harness):
    holder = Holder()
    h = await gateway_harness(plugins=[("holder", holder)], env={"GATEWAY_RETENTION_DAYS": "2"})
    counts = await h.gw.retention.purge()
    assert counts["plugin_records"] == 3
    (cutoff,) = holder.cutoffs
    assert abs((datetime.now(timezone.utc) - cutoff) - timedelta(days=2)) < timedelta(minutes=1)


async def test_purge_with_nothing_to_do_says_so(demo):
    out = gateway_cli("purge", env=cli_env(demo))
    assert out.returncode == 0, out.stderr
    assert "0 events" in out.stdout and out.stderr == ""
