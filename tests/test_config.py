"""Configuration: environment over file, secrets from files, plugin sections, clear errors."""

from __future__ import annotations

import pytest

from gateway.config import Config, public_dsn
from gateway.errors import ConfigError


def test_defaults():
    c = Config.load({})
    assert (c.listen_host, c.listen_port, c.database) == ("127.0.0.1", 8080, "./data/gateway.db")
    assert c.public_url == "http://127.0.0.1:8080" and c.max_body == 256 * 1024 and c.retention_days == 7


def test_environment_wins_over_the_file_and_files_hold_secrets(tmp_path):
    (tmp_path / "gw.toml").write_text('listen = "0.0.0.0:9000"\ndatabase = "/from/file.db"\n'
                                      '[plugins.placetel]\napi_url = "https://file.test/v2"\nregion = "AT"\n')
    (tmp_path / "token").write_text("acme:file-token-0123456789\n")
    c = Config.load({"GATEWAY_DATABASE": "/from/env.db", "GATEWAY_ADMIN_TOKEN_FILE": str(tmp_path / "token"),
                     "GATEWAY_PLACETEL_API_URL": "https://env.test/v2"}, str(tmp_path / "gw.toml"))
    assert c.listen_port == 9000 and c.database == "/from/env.db"
    assert c.admin_tokens == {"file-token-0123456789": "acme"}
    assert c.plugin("placetel") == {"api_url": "https://env.test/v2", "region": "AT"}


def test_plugin_secrets_from_files_and_redaction(tmp_path):
    (tmp_path / "s").write_text("plugin-secret-value\n")
    c = Config.load({"GATEWAY_WEBEX_CLIENT_SECRET_FILE": str(tmp_path / "s"), "GATEWAY_WEBEX_CLIENT_ID": "id"})
    assert c.plugin("webex") == {"client_secret": "plugin-secret-value", "client_id": "id"}
    assert c.redacted_plugin("webex") == {"client_secret": "***", "client_id": "id"}


@pytest.mark.parametrize("env", [
    {"GATEWAY_RETENTION_DAYS": "7.5"}, {"GATEWAY_RETENTION_DAYS": "0"}, {"GATEWAY_RETENTION_DAYS": "week"},
    {"GATEWAY_LISTEN": "8080"}, {"GATEWAY_LISTEN": "host:99999"}, {"GATEWAY_MAX_BODY": "10"},
    {"GATEWAY_PUBLIC_URL": "ftp://x"}, {"GATEWAY_ADMIN_TOKEN": "short"},
])
def test_bad_values_are_config_errors(env):
    with pytest.raises(ConfigError):
        Config.load(env)


def test_shorter_retention_is_allowed():
    assert Config.load({"GATEWAY_RETENTION_DAYS": "2"}).retention_days == 2


def test_a_database_url_is_shown_without_its_passwords():
    assert public_dsn("postgresql://u:hunter2@db:5432/gw") == "postgresql://u:***@db:5432/gw"
    shown = public_dsn("postgresql://u@db/gw?sslmode=require&password=hunter2&sslpassword=s3cret")
    assert shown == "postgresql://u@db/gw?sslmode=require&password=***&sslpassword=***"
    assert public_dsn("postgresql://db/gw") == "postgresql://db/gw" and public_dsn("data/gw.db") == "data/gw.db"
    for broken in ("postgresql://u:hunter2@db:port/gw", "postgresql://[::1/gw?password=hunter2"):
        assert "hunter2" not in public_dsn(broken) and "cannot be parsed" in public_dsn(broken)
