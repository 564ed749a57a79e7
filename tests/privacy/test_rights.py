"""Data-subject rights through the admin API and the CLI: export, erase, rectify, restrict, object."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from demo_secret import SECRET
from privacy_flows import CALLER, EMAIL, NAME, OTHER, admin_headers, call, cli_env, gateway_cli

from gateway import Subject, TelephonyUser, hookimpl
from gateway.testing import ADMIN_TOKEN, Harness

ACME_TOKEN = "acme:acme-controller-token-0123"
OTHER_TOKEN = "other:other-controller-token-0123"


class NotesPlugin:
    """A plugin holding one note per phone number, answering the data-subject hooks."""

    def __init__(self) -> None:
        self.notes = {CALLER: "prefers mornings"}

    @hookimpl
    def subject_export(self, tenant: str, subject: Subject) -> Any:
        note = self.notes.get(subject.value)
        return {"note": note} if note else None

    @hookimpl
    def subject_erase(self, tenant: str, subject: Subject) -> Any:
        async def erase() -> int:
            return 1 if self.notes.pop(subject.value, None) else 0
        return erase()


@pytest.fixture
async def acme(gateway_harness: Any) -> Harness:
    notes = NotesPlugin()
    h = await gateway_harness(plugins=[("notes", notes)],
                              env={"GATEWAY_ADMIN_TOKEN": f"{ADMIN_TOKEN},{ACME_TOKEN},{OTHER_TOKEN}"})
    await h.create_tenant("acme")
    await h.create_tenant("other")
    h.connection_id = (await h.connect("acme", "demo", {"secret": SECRET}))["id"]  # type: ignore[attr-defined]
    connection = await h.gw.tenancy.connection(h.connection_id)  # type: ignore[attr-defined]
    await h.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (OTHER,)))
    h.notes = notes  # type: ignore[attr-defined]
    return h


async def subject(h: Harness, op: str, body: dict[str, Any], expect: int = 200,
                  tenant: str = "acme") -> Any:
    return await h.admin("POST", f"/tenants/{tenant}/subjects/{op}", body, expect=expect)


async def test_export_holds_everything_about_the_person_and_nothing_else(acme):
    await call(acme, "e1", "c1", "ringing")
    await call(acme, "e2", "c1", "ended")
    await call(acme, "e3", "c2", "ringing", number="+4940111222333", user="u1")
    await acme.recorder.wait_for(3)
    doc = await subject(acme, "export", {"phone": "0221 12345678"})  # national format is normalised
    assert doc["subject"] == {"phone": CALLER}
    assert [e["event_id"] for e in doc["gateway"]["call_events"]] == ["e1", "e2"]
    assert all(e["remote_number"] == CALLER and e["received_at"] for e in doc["gateway"]["call_events"])
    assert doc["plugins"] == {"notes": {"note": "prefers mornings"}}
    assert "+4940111222333" not in orjson.dumps(doc).decode()
    # by e-mail: the telephony user and the calls they took; the local number finds them too
    by_email = await subject(acme, "export", {"email": EMAIL.upper()})
    assert by_email["gateway"]["telephony_users"][0]["name"] == NAME
    assert [e["event_id"] for e in by_email["gateway"]["call_events"]] == ["e3"]
    by_number = await subject(acme, "export", {"phone": OTHER})
    assert [u["email"] for u in by_number["gateway"]["telephony_users"]] == [EMAIL]


async def test_erase_removes_the_person_everywhere_and_keeps_the_others(acme):
    await call(acme, "e1", "c1")
    await call(acme, "e2", "c2", number="+4940111222333")
    await acme.recorder.wait_for(2)
    done = await subject(acme, "erase", {"phone": CALLER})
    assert done["erased"]["events"] == 1 and done["erased"]["deliveries"] == 1
    assert done["erased"]["plugins"] == {"notes": 1} and done["incomplete"] == []
    after = await subject(acme, "export", {"phone": CALLER})
    assert after["gateway"]["call_events"] == [] and after["plugins"] == {}
    kept = await subject(acme, "export", {"phone": "+4940111222333"})
    assert len(kept["gateway"]["call_events"]) == 1
    gone = await subject(acme, "erase", {"email": EMAIL})
    assert gone["erased"]["telephony_users"] == 1
    users = await acme.admin("GET", f"/tenants/acme/connections/{acme.connection_id}/users", expect=200)
    assert users["users"] == []


@pytest.mark.parametrize("kind", ["restrict", "object"])
async def test_restricted_person_is_acknowledged_but_not_forwarded_until_lifted(acme, kind):
    await subject(acme, kind, {"phone": CALLER})
    await call(acme, "r1", "c1")  # acknowledged: 200
    await call(acme, "o1", "c2", number="+4940111222333")
    delivered = await acme.recorder.wait_for(1)
    assert [e.event_id for e in delivered] == ["o1"]
    doc = await subject(acme, "export", {"phone": CALLER})
    assert doc["restriction"] == kind
    assert doc["gateway"]["call_events"] == []  # stored without its content
    assert len(doc["gateway"]["restricted_call_events"]) == 1
    await subject(acme, "unrestrict", {"phone": CALLER})
    await call(acme, "r2", "c3")
    assert [e.event_id for e in await acme.recorder.wait_for(2)] == ["o1", "r2"]
    assert (await subject(acme, "export", {"phone": CALLER}))["restriction"] is None


async def test_restriction_by_email_holds_back_the_users_calls_and_erasure_lifts_it(acme):
    await subject(acme, "restrict", {"email": EMAIL})
    await call(acme, "u1-call", "c1", user="u1", number="+4940111222333")
    await call(acme, "plain", "c2", number="+4940111222444")
    assert [e.event_id for e in await acme.recorder.wait_for(1)] == ["plain"]
    await subject(acme, "erase", {"email": EMAIL})
    assert (await subject(acme, "export", {"email": EMAIL}))["restriction"] is None


async def test_rectify_corrects_the_users_stored_data(acme):
    done = await subject(acme, "rectify", {"email": EMAIL, "changes": {"name": "Anna Berg", "extension": "24"}})
    assert done == {"rectified": 1, "fields": ["extension", "name"]}
    users = await acme.admin("GET", f"/tenants/acme/connections/{acme.connection_id}/users", expect=200)
    assert users["users"][0]["name"] == "Anna Berg" and users["users"][0]["extension"] == "24"
    await subject(acme, "rectify", {"email": "nobody@example.com", "changes": {"name": "X"}}, expect=404)


@pytest.mark.parametrize("body", [{}, {"phone": CALLER, "email": EMAIL}, {"phone": 4922112345678},
                                  {"email": "not-an-address"}, {"phone": "anonymous"}])
async def test_bad_subject_is_a_clear_400_that_does_not_echo(acme, body):
    resp = await acme.client.post("/admin/v1/tenants/acme/subjects/export", json=body, headers=acme.headers)
    assert resp.status == 400
    assert CALLER not in await resp.text() and EMAIL not in await resp.text()


async def test_rectify_refuses_fields_other_than_name_email_extension(acme):
    await subject(acme, "rectify", {"email": EMAIL, "changes": {"status": "active"}}, expect=400)
    await subject(acme, "rectify", {"email": EMAIL, "changes": {"name": 7}}, expect=400)


async def test_a_controller_reaches_only_its_own_tenant(acme):
    url = "/admin/v1/tenants/acme/subjects/export"
    own = await acme.client.post(url, json={"phone": CALLER}, headers=admin_headers(ACME_TOKEN.split(":")[1]))
    assert own.status == 200
    foreign = await acme.client.post(url, json={"phone": CALLER}, headers=admin_headers(OTHER_TOKEN.split(":")[1]))
    assert foreign.status == 403
    nobody = await acme.client.post(url, json={"phone": CALLER})
    assert nobody.status == 401
    await subject(acme, "export", {"phone": CALLER}, tenant="nope", expect=404)


async def test_cli_exports_and_erases(acme):
    await call(acme, "e1", "c1")
    await acme.recorder.wait_for(1)
    env = cli_env(acme)
    out = gateway_cli("subject", "export", "--tenant", "acme", "--phone", CALLER, env=env)
    assert out.returncode == 0, out.stderr
    assert [e["event_id"] for e in orjson.loads(out.stdout)["gateway"]["call_events"]] == ["e1"]
    out = gateway_cli("subject", "erase", "--tenant", "acme", "--phone", CALLER, env=env)
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["erased"]["events"] == 1
    assert (await subject(acme, "export", {"phone": CALLER}))["gateway"]["call_events"] == []


def test_cli_refuses_a_request_without_a_person(tmp_path):
    out = gateway_cli("subject", "export", "--tenant", "acme", env={})
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    out = gateway_cli("subject", "export", "--tenant", "acme", "--email", "nope",
                      env={"GATEWAY_DATABASE": str(tmp_path / "db")})
    assert out.returncode == 1 and out.stderr.startswith("gateway: ") and "Traceback" not in out.stderr
