"""Settings from ``GATEWAY_*`` environment variables and an optional TOML file.

The environment wins over the file. Any setting ``X`` may instead be given as ``X_FILE``, a
path whose content (stripped) is the value: the usual way to pass secrets to a container.
Plugin settings are ``GATEWAY_<PLUGIN>_<NAME>`` or a ``[plugins.<name>]`` table.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

MAX_RETENTION_DAYS = 7.0
_SECRET_WORDS = ("SECRET", "TOKEN", "KEY", "PASSWORD")

#: The core's settings: environment name -> (TOML name, default, description).
CORE_SETTINGS: dict[str, tuple[str, str | None, str]] = {
    "GATEWAY_LISTEN": ("listen", "127.0.0.1:8080", "host:port to listen on"),
    "GATEWAY_DATABASE": ("database", "./data/gateway.db",
                         "SQLite database path, or a postgresql:// URL for several replicas"),
    "GATEWAY_MASTER_KEY": ("master_key", None, "current master key (base64, `gateway keys generate`)"),
    "GATEWAY_MASTER_KEY_PREVIOUS": ("master_key_previous", None,
                                    "comma-separated older master keys, readable until `gateway keys rotate`"),
    "GATEWAY_ADMIN_TOKEN": ("admin_token", None,
                            "comma-separated admin bearer tokens; `tenant:TOKEN` scopes one to a tenant"),
    "GATEWAY_PUBLIC_URL": ("public_url", None, "URL providers reach the gateway at (default: http://LISTEN)"),
    "GATEWAY_MAX_BODY": ("max_body", str(256 * 1024), "largest accepted webhook body in bytes"),
    "GATEWAY_LOG_LEVEL": ("log_level", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    "GATEWAY_PLUGINS_DISABLED": ("plugins_disabled", "", "comma-separated plugin names not to load"),
    "GATEWAY_RETENTION_DAYS": ("retention_days", "7", "days call records are kept (at most 7)"),
    "GATEWAY_DELIVERY_HORIZON": ("delivery_horizon", "86400",
                                 "seconds after receipt that a failing delivery is retried before it is dead-lettered"),
    "GATEWAY_DELIVERY_CONCURRENCY": ("delivery_concurrency", "64", "deliveries in flight at once"),
    "GATEWAY_RETRY_BASE": ("retry_base", "1", "seconds before the first retry; doubles per attempt"),
    "GATEWAY_RETRY_CAP": ("retry_cap", "300", "longest wait between two retries, in seconds"),
    "GATEWAY_IDLE_TIMEOUT": ("idle_timeout", "75",
                             "seconds an idle connection, or one still sending its request head, is kept"),
    "GATEWAY_BODY_TIMEOUT": ("body_timeout", "30", "seconds a request may take to send its body"),
}


#: ``GATEWAY_DATABASE`` prefixes that name a PostgreSQL server instead of a SQLite file.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(database: str) -> bool:
    """``GATEWAY_DATABASE`` names a PostgreSQL server (a URL), not a SQLite file."""
    return database.startswith(POSTGRES_SCHEMES)


#: Query parameters of a database URL that hold a secret (asyncpg reads both).
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def public_dsn(database: str) -> str:
    """``GATEWAY_DATABASE`` as it may be shown: a URL's password, in the address or in the
    query, replaced by ``***``; a URL that cannot be parsed is not shown at all."""
    if "://" not in database:
        return database
    try:
        parts = urlsplit(database)
        query = "&".join(_public_param(pair) for pair in parts.query.split("&") if pair)
        if parts.password is None:
            return urlunsplit(parts._replace(query=query))
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{f'[{host}]' if ':' in host else host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return "<a database URL that cannot be parsed>"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _public_param(pair: str) -> str:
    name = pair.split("=", 1)[0]
    return f"{name}=***" if name.lower() in _SECRET_PARAMS else pair


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def _read_value(env: Mapping[str, str], name: str) -> str | None:
    if name in env:
        return env[name]
    path = env.get(name + "_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return None


@dataclass
class Config:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    database: str = "./data/gateway.db"
    master_key: str | None = None
    master_key_previous: str | None = None
    admin_tokens: dict[str, str | None] = field(default_factory=dict)  # token -> tenant or None
    public_url: str = "http://127.0.0.1:8080"
    max_body: int = 256 * 1024
    log_level: str = "INFO"
    plugins_disabled: tuple[str, ...] = ()
    retention_days: float = 7.0
    delivery_horizon: float = 86400.0
    delivery_concurrency: int = 64
    retry_base: float = 1.0
    retry_cap: float = 300.0
    idle_timeout: float = 75.0
    body_timeout: float = 30.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    file_plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, path: str | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        file_data: dict[str, Any] = {}
        if path:
            try:
                file_data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"config file cannot be read: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file is not valid TOML: {exc}") from None
        raw: dict[str, str | None] = {}
        for name, (toml_name, default, _doc) in CORE_SETTINGS.items():
            value = _read_value(env, name)
            if value is None and toml_name in file_data:
                value = str(file_data[toml_name])
            raw[name] = default if value is None else value
        plugins = file_data.get("plugins", {})
        if not isinstance(plugins, dict):
            raise ConfigError("[plugins] in the config file must be a table")
        return cls._from_raw(raw, env, plugins)

    @classmethod
    def _from_raw(cls, raw: dict[str, str | None], env: dict[str, str],
                  plugins: dict[str, Any]) -> Config:
        listen = raw["GATEWAY_LISTEN"] or ""
        host, sep, port_text = listen.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError("GATEWAY_LISTEN must be host:port, e.g. 127.0.0.1:8080")
        port = int(port_text)
        tokens: dict[str, str | None] = {}
        for item in (raw["GATEWAY_ADMIN_TOKEN"] or "").split(","):
            item = item.strip()
            if not item:
                continue
            tenant, colon, token = item.rpartition(":")
            token = token if colon else item
            if len(token) < 16:
                raise ConfigError("GATEWAY_ADMIN_TOKEN: each token needs at least 16 characters")
            tokens[token] = tenant if colon else None
        retention = _number(raw, "GATEWAY_RETENTION_DAYS")
        if retention > MAX_RETENTION_DAYS or retention <= 0:
            raise ConfigError(
                f"GATEWAY_RETENTION_DAYS must be above 0 and at most {MAX_RETENTION_DAYS:g} "
                "(the privacy policy promises deletion after 7 days)")
        level = (raw["GATEWAY_LOG_LEVEL"] or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError("GATEWAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        max_body = int(_number(raw, "GATEWAY_MAX_BODY"))
        if max_body < 1024:
            raise ConfigError("GATEWAY_MAX_BODY must be at least 1024 bytes")
        public = (raw["GATEWAY_PUBLIC_URL"] or f"http://{host}:{port}").rstrip("/")
        if not public.startswith(("http://", "https://")):
            raise ConfigError("GATEWAY_PUBLIC_URL must start with http:// or https://")
        return cls(
            listen_host=host.strip("[]"), listen_port=port,
            database=raw["GATEWAY_DATABASE"] or "./data/gateway.db",
            master_key=raw["GATEWAY_MASTER_KEY"] or None,
            master_key_previous=raw["GATEWAY_MASTER_KEY_PREVIOUS"] or None,
            admin_tokens=tokens, public_url=public, max_body=max_body, log_level=level,
            plugins_disabled=tuple(p.strip() for p in (raw["GATEWAY_PLUGINS_DISABLED"] or "").split(",") if p.strip()),
            retention_days=retention,
            delivery_horizon=_number(raw, "GATEWAY_DELIVERY_HORIZON"),
            delivery_concurrency=max(1, int(_number(raw, "GATEWAY_DELIVERY_CONCURRENCY"))),
            retry_base=max(0.001, _number(raw, "GATEWAY_RETRY_BASE")),
            retry_cap=max(0.001, _number(raw, "GATEWAY_RETRY_CAP")),
            idle_timeout=_positive(raw, "GATEWAY_IDLE_TIMEOUT"),
            body_timeout=_positive(raw, "GATEWAY_BODY_TIMEOUT"),
            env=env, file_plugins=plugins,
        )

    def plugin(self, name: str) -> dict[str, str]:
        """A plugin's settings: ``[plugins.<name>]`` overridden by ``GATEWAY_<NAME>_*``.

        Keys are lower-case without the prefix (``GATEWAY_PLACETEL_API_URL`` -> ``api_url``);
        ``..._FILE`` variables are read from their file.
        """
        out = {str(k).lower(): str(v) for k, v in (self.file_plugins.get(name) or {}).items()}
        prefix = f"GATEWAY_{name.upper().replace('-', '_')}_"
        for key in self.env:
            if key.startswith(prefix):
                short = key[len(prefix):]
                if short.endswith("_FILE"):
                    short = short[:-5]
                value = _read_value(self.env, prefix + short)
                if value is not None:
                    out[short.lower()] = value
        return out

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret replaced by ``***``."""
        out: dict[str, Any] = {
            "listen": f"{self.listen_host}:{self.listen_port}", "database": public_dsn(self.database),
            "master_key": "***" if self.master_key else None,
            "master_key_previous": "***" if self.master_key_previous else None,
            "admin_tokens": [f"{t}:***" if t else "***" for t in self.admin_tokens.values()],
            "public_url": self.public_url, "max_body": self.max_body, "log_level": self.log_level,
            "plugins_disabled": list(self.plugins_disabled), "retention_days": self.retention_days,
            "delivery_horizon": self.delivery_horizon, "delivery_concurrency": self.delivery_concurrency,
            "retry_base": self.retry_base, "retry_cap": self.retry_cap,
            "idle_timeout": self.idle_timeout, "body_timeout": self.body_timeout,
        }
        return out

    def redacted_plugin(self, name: str) -> dict[str, str]:
        return {k: ("***" if _is_secret(k) else v) for k, v in self.plugin(name).items()}


def _number(raw: dict[str, str | None], name: str) -> float:
    try:
        return float(raw[name] or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None


def _positive(raw: dict[str, str | None], name: str) -> float:
    value = _number(raw, name)
    if not 0 < value <= 86400:
        raise ConfigError(f"{name} must be a number of seconds above 0")
    return value
