"""``gateway breach-report``: per tenant, kinds of data and how many people and records, as counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
from privacy_flows import CALLER, EMAIL, NAME, OTHER, call, cli_env, gateway_cli

from gateway import TelephonyUser
from gateway.store.crypto import generate_master_key


async def test_breach_report_counts_people_and_records_in_the_window_without_plaintext(demo):
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    await demo.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23"))
    await call(demo, "e1", "c1")
    await call(demo, "e2", "c1", "ended")
    await call(demo, "e3", "c2", number=OTHER)
    await demo.recorder.wait_for(3)
    now = datetime.now(timezone.utc)
    window = ("--since", (now - timedelta(hours=1)).isoformat(), "--until", (now + timedelta(hours=1)).isoformat())
    env = cli_env(demo)

    out = gateway_cli("breach-report", *window, "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    (acme,) = orjson.loads(out.stdout)["tenants"]
    assert acme["tenant"] == "acme"
    assert acme["people"] == {"callers": 2, "telephony_users": 1}
    assert acme["records"]["events"] == 3 and acme["records"]["users_with_contact_data"] == 1
    assert "events" in acme["kinds"] and "users_with_contact_data" in acme["kinds"]

    text = gateway_cli("breach-report", *window, "--format", "text", env=env)
    assert text.returncode == 0, text.stderr
    assert "Tenant acme:" in text.stdout and "2 distinct callers" in text.stdout
    assert "3 call events" in text.stdout
    for output in (out.stdout, text.stdout):
        for value in (CALLER, CALLER[1:], OTHER, EMAIL, NAME):
            assert value not in output

    earlier = gateway_cli("breach-report", "--since", "2020-01-01", "--until", "2020-01-02",
                          "--format", "json", env=env)
    (empty,) = orjson.loads(earlier.stdout)["tenants"]
    assert empty["records"]["events"] == 0 and empty["people"]["callers"] == 0


def test_breach_report_refuses_a_bad_window(tmp_path):
    env = {"GATEWAY_DATABASE": str(tmp_path / "db"), "GATEWAY_MASTER_KEY": generate_master_key()}
    for args, needle in ((("--since", "yesterday", "--until", "2024-01-01"), "--since"),
                         (("--since", "2024-01-02", "--until", "2024-01-01"), "until")):
        out = gateway_cli("breach-report", *args, env=env)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert needle in out.stderr
