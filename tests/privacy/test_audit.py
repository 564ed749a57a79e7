"""The audit log: processing operations recorded without personal data, in a hash chain that
``gateway audit verify`` checks."""

from __future__ import annotations

import logging
import sqlite3

import orjson
import pytest
from demo_secret import SECRET
from privacy_flows import CALLER, EMAIL, NAME, call, cli_env, gateway_cli

from gateway import BadRequest, TelephonyUser
from gateway.testing import ADMIN_TOKEN


def entries(out: str) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines()]


async def test_operations_are_audited_without_personal_data_and_the_chain_verifies(demo):
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    await demo.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23"))
    await demo.gw.audit.record("user.login", tenant="acme", connection=connection.id, plugin="demo")
    await demo.gw.directory.logout(connection, "u1")
    await call(demo, "e1", "c1")
    await demo.admin("POST", "/tenants/acme/subjects/export", {"phone": CALLER}, expect=200)
    await demo.admin("POST", "/tenants/acme/subjects/restrict", {"email": EMAIL}, expect=200)
    refused = await demo.client.get("/admin/v1/tenants", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert refused.status == 401
    await demo.admin("DELETE", f"/tenants/acme/connections/{demo.connection_id}", expect=200)
    await demo.gw.store.audit.flush()

    env = cli_env(demo)
    listed = gateway_cli("audit", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    log = entries(listed.stdout)
    actions = [e["action"] for e in log]
    for action in ("tenant.installed", "connection.created", "user.login", "user.logout",
                   "subject.export", "subject.restrict", "connection.removed", "admin.access"):
        assert action in actions, action
    access = [e["details"] for e in log if e["action"] == "admin.access"]
    assert [e["details"] for e in log if e["action"] == "admin.refused"] == [{"count": 1, "interval": 60}]
    assert any(d["route"] == "/admin/v1/tenants/{tenant}/subjects/export" and d["status"] == 200
               and d["scope"] == "operator" for d in access)
    text = listed.stdout
    for secret in (CALLER, CALLER[1:], EMAIL, NAME, SECRET, ADMIN_TOKEN, "wrong-token", "acme"):
        assert secret not in text, secret

    verified = gateway_cli("audit", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert f"intact: {len(log)} entries" in verified.stdout

    only_acme = entries(gateway_cli("audit", "list", "--tenant", "acme", env=env).stdout)
    assert only_acme and {e["tenant_ref"] for e in only_acme} == {log[0]["tenant_ref"]}


async def test_an_altered_entry_is_named_by_verify(demo):
    await demo.admin("GET", "/tenants", expect=200)
    await demo.gw.store.audit.flush()
    con = sqlite3.connect(demo.gw.store.path)
    con.execute("UPDATE audit_log SET details = replace(details, '200', '204') WHERE action='admin.access'")
    broken = con.execute("SELECT MIN(seq) FROM audit_log WHERE details LIKE '%204%'").fetchone()[0]
    con.commit()
    con.close()
    out = gateway_cli("audit", "verify", env=cli_env(demo))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert f"broken at entry {broken}" in out.stderr and "altered" in out.stderr


async def test_a_removed_entry_is_named_by_verify(demo):
    await demo.admin("GET", "/tenants", expect=200)
    await demo.gw.audit.record("user.login", tenant="acme")
    con = sqlite3.connect(demo.gw.store.path)
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    con.commit()
    con.close()
    out = gateway_cli("audit", "verify", env=cli_env(demo))
    assert out.returncode == 1 and "broken at entry 3" in out.stderr


def cut_off_the_end(demo, entries: int, *, anchor_too: bool = False) -> None:
    """What someone with write access to the database file would do to hide the last entries."""
    con = sqlite3.connect(demo.gw.store.path)
    last = con.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0]
    con.execute("DELETE FROM audit_log WHERE seq > ?", (last - entries,))
    if anchor_too:
        con.execute("UPDATE audit_anchor SET seq = seq - ?, hash = (SELECT hash FROM audit_log "
                    "WHERE seq = audit_anchor.seq - ?)", (entries, entries))
    con.commit()
    con.close()


async def test_entries_cut_off_the_end_are_named_by_verify(demo):
    await demo.admin("GET", "/tenants", expect=200)
    await demo.gw.audit.record("user.login", tenant="acme")
    cut_off_the_end(demo, 2)
    out = gateway_cli("audit", "verify", env=cli_env(demo))
    assert out.returncode == 1 and "cut off the end" in out.stderr and out.stderr.count("\n") == 1


async def test_a_head_from_the_logs_finds_a_cut_that_also_moved_the_anchor(demo, caplog):
    caplog.set_level(logging.INFO, logger="gateway.audit")
    await demo.gw.audit.record("user.login", tenant="acme")
    await demo.gw.audit.log_head()  # what `gateway serve` logs every hour, at start and at stop
    (line,) = [r for r in caplog.records if r.getMessage() == "audit log head"][-1:]
    assert isinstance(line.seq, int) and len(line.hash) == 64  # an int and a word: never redacted
    anchor = f"{line.seq}:{line.hash}"
    cut_off_the_end(demo, 1, anchor_too=True)
    assert gateway_cli("audit", "verify", env=cli_env(demo)).returncode == 0  # the database alone agrees
    out = gateway_cli("audit", "verify", "--anchor", anchor, env=cli_env(demo))
    assert out.returncode == 1 and f"anchor names entry {line.seq}" in out.stderr
    for bad in ("12", "x:y", f"{line.seq}:{'g' * 64}"):
        out = gateway_cli("audit", "verify", "--anchor", bad, env=cli_env(demo))
        assert out.returncode == 1 and "SEQ:HASH" in out.stderr


async def test_entries_written_after_a_cut_leave_the_gap_visible(demo):
    await demo.gw.audit.record("user.login", tenant="acme")
    cut_off_the_end(demo, 2)
    await demo.gw.audit.record("user.logout", tenant="acme")  # the chain goes on after the anchor
    out = gateway_cli("audit", "verify", env=cli_env(demo))
    assert out.returncode == 1 and "entries missing" in out.stderr


async def test_authenticated_admin_access_is_written_before_the_answer(demo):
    await demo.admin("GET", "/tenants", expect=200)
    written = await demo.gw.store.audit.entries()  # the store itself: nothing queued is flushed
    assert written[-1].action == "admin.access" and written[-1].details["route"] == "/admin/v1/tenants"


async def test_a_scoped_controller_lists_only_its_own_entries(gateway_harness):
    h = await gateway_harness(env={"GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},acme:acme-token-0123456789"})
    await h.create_tenant("acme")
    await h.create_tenant("other")
    resp = await h.client.get("/admin/v1/audit", headers={"Authorization": "Bearer acme-token-0123456789"})
    assert resp.status == 200
    seen = (await resp.json())["entries"]
    everything = (await h.admin("GET", "/audit", expect=200))["entries"]
    assert 0 < len(seen) < len(everything)
    assert len({e["tenant_ref"] for e in seen}) == 1


async def test_plugins_cannot_audit_personal_data_in_the_clear(demo):
    before = len((await demo.admin("GET", "/audit", expect=200))["entries"])
    for personal in (f"called {CALLER}", CALLER, EMAIL, "0221 1234567", "https://example.com/x",
                     "token=abcdef", "x" * 200):
        with pytest.raises(BadRequest):  # refused, never stored altered
            await demo.gw.audit.record("crm.synced", tenant="acme", note=personal)
    entries = (await demo.admin("GET", "/audit", expect=200))["entries"]
    assert not [e for e in entries if e["action"] == "crm.synced"]
    assert len(entries) == before + 1  # only the listing's own access entry
    # ids by construction are kept exactly as given
    ids = {"member": "a223c6b3710f85df22e9377d6c4f7553", "session": "ec56f405-8573-4093-8d90-2669ff24c3b3",
           "key_id": "123456789012", "route": "/admin/v1/tenants/{tenant}", "day": "2026-11-29T20:16:30+00:00"}
    await demo.gw.audit.record("crm.synced", tenant="acme", **ids)
    entries = (await demo.admin("GET", "/audit", expect=200))["entries"]
    assert [e["details"] for e in entries if e["action"] == "crm.synced"] == [ids]
    for bad in ({"action": "Bad Action!"}, {"action": "ok", "weird key": 1}, {"action": "ok", "obj": [1]}):
        action = bad.pop("action")
        try:
            await demo.gw.audit.record(action, **bad)
        except Exception as exc:
            assert type(exc).__name__ == "BadRequest"
        else:
            raise AssertionError("accepted a bad audit entry")


async def test_refused_admin_requests_are_counted_not_audited_one_by_one(demo):
    from gateway import metrics

    await demo.gw.audit.flush()
    before = len(await demo.gw.audit.entries())
    refused_before = metrics.ADMIN_REFUSED._value.get()
    paths = ["/admin/v1/tenants", "/admin/v1/audit", "/admin/v1/no-such-route", "/admin/x/../v1/tenants"]
    for i in range(220):
        resp = await demo.client.get(paths[i % len(paths)], headers={"Authorization": f"Bearer wrong-{i:016d}"}
                                     if i % 2 else {})
        assert resp.status == 401  # unknown routes too: nothing to learn without a token
    await demo.gw.audit.flush()
    added = (await demo.gw.audit.entries())[before:]
    assert [(e.action, e.details["count"]) for e in added] == [("admin.refused", 1)]
    assert metrics.ADMIN_REFUSED._value.get() - refused_before == 220


async def test_audit_listing_limits_are_validated_and_capped(demo, monkeypatch):
    from gateway import admin

    for query in ("limit=-1", "limit=0", "limit=x", "after=-1", "limit=1e3", f"after={2**64}", "limit=%C2%B2"):
        resp = await demo.client.get(f"/admin/v1/audit?{query}", headers=demo.headers)
        assert resp.status == 400, query
    for i in range(4):
        await demo.admin("GET", "/tenants", expect=200)
    monkeypatch.setattr(admin, "MAX_AUDIT_PAGE", 3)
    assert len((await demo.admin("GET", "/audit?limit=100000", expect=200))["entries"]) == 3
