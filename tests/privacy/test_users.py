"""Telephony user data: name and e-mail go at logout, all of it at end of subscription."""

from __future__ import annotations

import sqlite3

from privacy_flows import EMAIL, NAME, OTHER, raw_files

from gateway import TelephonyUser


def user_blobs(path: str) -> list[bytes]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT data FROM telephony_users")]
    finally:
        con.close()


async def test_logout_deletes_name_and_email_at_once_also_from_the_files(demo):
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    await demo.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (OTHER,)))
    await demo.gw.store.checkpoint()
    (before,) = user_blobs(demo.gw.store.path)
    assert before[8:40] in raw_files(demo)

    await demo.gw.directory.logout(connection, "u1")
    user = await demo.gw.directory.get(connection, "u1")
    assert user is not None and user.status == "logged_out"
    assert user.name is None and user.email is None
    assert await demo.gw.directory.find("acme", email=EMAIL) == []
    found = await demo.admin("POST", "/tenants/acme/subjects/export", {"email": EMAIL}, expect=200)
    assert found["gateway"]["telephony_users"] == []
    assert before[8:40] not in raw_files(demo)  # the old ciphertext left the main file and the WAL


async def test_end_of_subscription_deletes_all_user_data(demo):
    connection = await demo.gw.tenancy.connection(demo.connection_id)
    await demo.gw.directory.put(connection, TelephonyUser("u1", NAME, EMAIL, "23", (OTHER,)))
    await demo.gw.store.checkpoint()
    (before,) = user_blobs(demo.gw.store.path)
    await demo.admin("DELETE", "/tenants/acme", expect=200)
    assert user_blobs(demo.gw.store.path) == []
    assert before[8:40] not in raw_files(demo)
    await demo.admin("POST", "/tenants/acme/subjects/export", {"email": EMAIL}, expect=404)
