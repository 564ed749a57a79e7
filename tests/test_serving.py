"""One process serves a database: a second one is refused before it touches it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gatewayproc import GatewayProcess
from test_cli import gateway, one_clear_line

from gateway.app import build_gateway
from gateway.errors import StoreError
from gateway.store.crypto import generate_master_key
from gateway.testing import make_config


async def test_a_second_serving_gateway_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    first, second = build_gateway(config), build_gateway(config)
    await first.open()
    try:
        with pytest.raises(StoreError, match=rf"another gateway process \(pid {os.getpid()}\) is serving"):
            await second.open()
        assert not second.started
        # a command (purge, replay, rotation) works beside the server: it takes no claim
        command = build_gateway(config)
        await command.open(deliver=False, background=False)
        assert await command.store.events.count("pending") == 0
        await command.close()
    finally:
        await first.close()
    await second.open()  # the claim went with the first gateway
    assert second.started
    await second.close()


async def test_a_refused_gateway_does_not_migrate_the_served_database(tmp_path: Path) -> None:
    """The claim comes before the store opens: a refused process never runs migrations."""
    config = make_config(tmp_path)
    first = build_gateway(config)
    await first.open()
    try:
        # as if the running server were an older release, one migration behind
        await first.store.db.w.submit(lambda c: c.execute("UPDATE meta SET value='1' WHERE key='schema_version'"))
        with pytest.raises(StoreError, match="another gateway process"):
            await build_gateway(config).open()
        assert await first.store.db.one("SELECT value FROM meta WHERE key='schema_version'") == ("1",)
    finally:
        await first.close()


def test_a_second_gateway_serve_on_the_same_database_stops_with_one_line(tmp_path: Path) -> None:
    env = {"GATEWAY_MASTER_KEY": generate_master_key()}
    proc = GatewayProcess(tmp_path, env)
    proc.start()
    try:
        out = gateway("serve", env={**env, "GATEWAY_DATABASE": str(tmp_path / "gateway.db"),
                                    "GATEWAY_LISTEN": "127.0.0.1:1"})
        assert out.returncode == 1
        one_clear_line(out)
        assert f"another gateway process (pid {proc.proc.pid}) is serving this database" in out.stderr
    finally:
        assert proc.stop() == 0
    proc.start()  # after a clean stop the same database serves again
    proc.kill()
    proc.start()  # and after kill -9: the kernel released the lock
    assert proc.stop() == 0
