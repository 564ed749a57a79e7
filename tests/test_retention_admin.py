"""Retention on demand inside the serving gateway: POST /admin/v1/retention/purge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gateway import CallEvent, CallState, Direction
from gateway.testing import ADMIN_TOKEN


async def test_purge_route_deletes_expired_call_records_only(demo):
    conn = await demo.gw.tenancy.connection(demo.connection_id)
    old = datetime.now(timezone.utc) - timedelta(days=8)
    for n, received in ((1, old), (2, old), (3, datetime.now(timezone.utc))):
        ev = CallEvent(event_id=f"p{n}", call_id=f"c{n}", direction=Direction.INBOUND,
                       state=CallState.RINGING, occurred_at=received, remote_number="+4922112345678")
        await demo.gw.ingest.store(conn, [ev], received_at=received)
    body = await demo.admin("POST", "/retention/purge", expect=200)
    assert body["deleted"]["events"] == 2
    rows = await demo.gw.store.db.all("SELECT COUNT(*) FROM events")
    assert rows[0][0] == 1
    again = await demo.admin("POST", "/retention/purge", expect=200)
    assert again["deleted"]["events"] == 0


async def test_purge_route_is_for_the_operator_only(gateway_harness):
    h = await gateway_harness(env={"GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},acme:tenant-token-0123456789"})
    await h.create_tenant("acme")
    resp = await h.client.post("/admin/v1/retention/purge",
                               headers={"Authorization": "Bearer tenant-token-0123456789"})
    assert resp.status == 403
    assert (await h.client.post("/admin/v1/retention/purge")).status == 401
