"""The ``gateway`` command: clear one-line errors, redacted config, keys, a real serve."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import orjson
import pytest
from gatewayproc import GatewayProcess, clean_env

from gateway.store.crypto import generate_master_key


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          env=clean_env(env or {}), timeout=60)


def one_clear_line(out: subprocess.CompletedProcess[str]) -> None:
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("gateway: ")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [(), ("frobnicate",), ("keys",), ("deadletters", "replay", "x"),
                                  ("serve", "--nope")])
def test_wrong_usage_is_one_line_and_exit_2(args):
    out = gateway(*args)
    assert out.returncode == 2
    one_clear_line(out)


@pytest.mark.parametrize("env,needle", [
    ({"GATEWAY_RETENTION_DAYS": "8"}, "GATEWAY_RETENTION_DAYS"),
    ({"GATEWAY_LISTEN": "nonsense"}, "GATEWAY_LISTEN"),
    ({"GATEWAY_ADMIN_TOKEN": "short"}, "GATEWAY_ADMIN_TOKEN"),
    ({"GATEWAY_MASTER_KEY_FILE": "/nonexistent/key"}, "GATEWAY_MASTER_KEY_FILE"),
    ({"GATEWAY_LOG_LEVEL": "LOUD"}, "GATEWAY_LOG_LEVEL"),
])
def test_bad_configuration_is_one_line_and_exit_1(env, needle):
    out = gateway("config", "check", env=env)
    assert out.returncode == 1
    one_clear_line(out)
    assert needle in out.stderr


def test_bad_config_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = [unclosed")
    out = gateway("--config", str(bad), "config", "check")
    assert out.returncode == 1
    one_clear_line(out)
    out = gateway("--config", str(tmp_path / "missing.toml"), "config", "check")
    assert out.returncode == 1
    one_clear_line(out)


def test_serve_without_master_key_fails_with_one_line(tmp_path):
    out = gateway("serve", env={"GATEWAY_DATABASE": str(tmp_path / "db")})
    assert out.returncode == 1
    one_clear_line(out)
    assert "GATEWAY_MASTER_KEY" in out.stderr


def test_config_check_redacts_secrets_and_reads_files_and_toml(tmp_path):
    key = generate_master_key()
    (tmp_path / "key").write_text(key + "\n")
    (tmp_path / "gw.toml").write_text('database = "/tmp/x.db"\n[plugins.demo]\napi_url = "https://pbx.test"\n')
    out = gateway("--config", str(tmp_path / "gw.toml"), "config", "check", env={
        "GATEWAY_MASTER_KEY_FILE": str(tmp_path / "key"), "GATEWAY_ADMIN_TOKEN": "acme:tenant-token-0123456789",
        "GATEWAY_DEMO_CLIENT_SECRET": "very-secret-value", "GATEWAY_LISTEN": "0.0.0.0:9000"})
    assert out.returncode == 0, out.stderr
    for secret in (key, "tenant-token-0123456789", "very-secret-value"):
        assert secret not in out.stdout
    shown = orjson.loads(out.stdout)
    assert shown["master_key"] == "***" and shown["admin_tokens"] == ["acme:***"]
    assert shown["database"] == "/tmp/x.db" and shown["listen"] == "0.0.0.0:9000"
    assert shown["plugins"]["demo"] == {"api_url": "https://pbx.test", "client_secret": "***"}


def test_keys_generate_prints_a_usable_key():
    out = gateway("keys", "generate")
    assert out.returncode == 0
    key = out.stdout.strip()
    assert gateway("config", "check", env={"GATEWAY_MASTER_KEY": key}).returncode == 0
    assert gateway("keys", "generate").stdout.strip() != key


def test_keys_rotate_reports_progress_and_old_key_can_then_go(tmp_path):
    old, new = generate_master_key(), generate_master_key()
    db = str(tmp_path / "db.sqlite")
    proc = GatewayProcess(tmp_path, {"GATEWAY_MASTER_KEY": old, "GATEWAY_DATABASE": db,
                                     "GATEWAY_ADMIN_TOKEN": "operator-token-0123456789"})
    proc.start()
    try:
        for tenant in ("a", "b"):
            req = urllib.request.Request(proc.url + "/admin/v1/tenants", method="POST",
                                         data=orjson.dumps({"id": tenant}),
                                         headers={"Authorization": "Bearer operator-token-0123456789",
                                                  "Content-Type": "application/json"})
            assert urllib.request.urlopen(req).status == 201
        # rotate while the gateway keeps serving
        out = gateway("keys", "rotate", env={"GATEWAY_MASTER_KEY": new, "GATEWAY_MASTER_KEY_PREVIOUS": old,
                                             "GATEWAY_DATABASE": db})
        assert out.returncode == 0, out.stderr
        assert "re-wrapped 2/2 tenant keys" in out.stderr and "2 tenant keys re-wrapped" in out.stdout
        assert urllib.request.urlopen(proc.url + "/healthz").status == 200
    finally:
        proc.stop()
    out = gateway("keys", "rotate", env={"GATEWAY_MASTER_KEY": new, "GATEWAY_DATABASE": db})
    assert out.returncode == 0 and "0 tenant keys" in out.stdout


def test_serve_dev_generates_a_key_and_says_where_it_listens(tmp_path):
    proc = GatewayProcess(tmp_path, {}, args=("--dev",))
    proc.start()
    try:
        with urllib.request.urlopen(proc.url + "/healthz") as resp:
            assert orjson.loads(resp.read()) == {"status": "ok"}
    finally:
        assert proc.stop() == 0
    log = proc.log.read_text()
    assert f"gateway listening on http://127.0.0.1:{proc.port}" in log
    assert (tmp_path / "dev-master.key").exists() and (tmp_path / "dev-admin.token").exists()
    assert (tmp_path / "dev-master.key").read_text().strip() not in log


def test_serve_with_a_missing_database_folder_names_it(tmp_path):
    missing = tmp_path / "not-mounted"
    out = gateway("serve", env={"GATEWAY_MASTER_KEY": generate_master_key(),
                                "GATEWAY_DATABASE": str(missing / "gateway.db")})
    assert out.returncode == 1
    one_clear_line(out)
    assert str(missing) in out.stderr and "GATEWAY_DATABASE" in out.stderr
    assert not missing.exists()


@pytest.mark.parametrize("left_by_older_release", [False, True])
def test_database_and_development_secrets_are_owner_only_from_the_start(tmp_path, left_by_older_release):
    import os
    import stat

    if left_by_older_release:  # an empty database file, readable by everyone
        (tmp_path / "gateway.db").write_bytes(b"")
        (tmp_path / "gateway.db").chmod(0o644)
    proc = GatewayProcess(tmp_path, {}, args=("--dev",))
    old_umask = os.umask(0o022)  # the child inherits a permissive umask
    try:
        proc.start()
        with urllib.request.urlopen(proc.url + "/healthz", timeout=5):
            pass
    finally:
        os.umask(old_umask)
        proc.stop()
    files = [p for p in tmp_path.iterdir() if p.name.startswith(("gateway.db", "dev-"))]
    assert {p.name for p in files} >= {"gateway.db", "dev-master.key", "dev-admin.token"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
