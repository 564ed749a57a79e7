"""Plugin settings declared as a typed structure, read and checked once at start-up.

A plugin declares a frozen dataclass through the ``declare_settings`` hook; each field is one
setting (``GATEWAY_<PLUGIN>_<FIELD>`` or ``[plugins.<name>] field = ...``), its type says how
the text is read, :func:`setting` marks secrets and documents it. A bad value, or a setting
the plugin does not declare, stops start-up with one line naming it (never its value).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def setting(default: Any = dataclasses.MISSING, *, secret: bool = False, help: str = "") -> Any:
    """A settings field: ``api_url: str = setting("https://...", help="...")``.

    ``secret=True`` keeps the value out of ``gateway config check`` and every message. A field
    without a default is required: start-up stops when it is missing.
    """
    metadata = {"secret": secret, "help": help}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or frozenset default, settings are immutable")
    return dataclasses.field(default=default, metadata=metadata)


def is_secret(field: dataclasses.Field[Any]) -> bool:
    return bool(field.metadata.get("secret"))


def _convert(plugin: str, name: str, text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if not text.strip():
            return None
        return _convert(plugin, name, text, inner[0])
    problem = f"plugin {plugin}: setting {name}"
    if kind is str:
        return text.strip()
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{problem} must be true or false")
    if kind in (int, float):
        try:
            value = kind(text.strip())
        except ValueError:
            raise ConfigError(f"{problem} must be a number") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{problem} must be a finite number")
        return value
    if origin in (tuple, frozenset) and args and args[0] is str:
        items = [item.strip() for item in text.replace(";", ",").split(",") if item.strip()]
        return tuple(items) if origin is tuple else frozenset(items)
    raise TypeError(f"{problem}: unsupported type {kind!r}")


def parse(plugin: str, schema: type[Any], raw: Mapping[str, str]) -> Any:
    """The settings instance from ``raw`` (lower-case names): typed, validated, complete."""
    if not dataclasses.is_dataclass(schema):
        raise ConfigError(f"plugin {plugin}: declare_settings must return a dataclass")
    hints = typing.get_type_hints(schema)
    # fields with init=False are derived by the plugin (__post_init__), not settings
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"plugin {plugin}: unknown setting {unknown[0]} "
                          f"(known: {', '.join(sorted(fields)) or 'none'})")
    values = {name: _convert(plugin, name, raw[name], hints[name]) for name in fields if name in raw}
    missing = [f.name for f in fields.values() if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"plugin {plugin}: setting {missing[0]} is required")
    try:
        return schema(**values)
    except (ValueError, TypeError) as exc:
        # the plugin's own check (__post_init__): its message names the setting, not the value
        raise ConfigError(f"plugin {plugin}: {exc}") from None


def redacted(settings: Any) -> dict[str, Any]:
    """The settings as shown by ``gateway config check``: secrets as ``***``."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        if not field.init:
            continue
        value = getattr(settings, field.name)
        if is_secret(field):
            out[field.name] = "***" if value else value
        elif isinstance(value, (tuple, frozenset)):
            out[field.name] = sorted(value) if isinstance(value, frozenset) else list(value)
        else:
            out[field.name] = value
    return out


__all__ = ["is_secret", "parse", "redacted", "setting"]
