"""The pluggy entry point ``webex``: hook implementations wiring the plugin into callgate."""

from __future__ import annotations

from collections.abc import Callable

from gateway import Source, hookimpl

from . import routes, tasks
from .settings import WebexSettings
from .source import WebexSource

SOURCE = WebexSource()


@hookimpl
def register_sources(register: Callable[[Source], None]) -> None:
    register(SOURCE)


@hookimpl
def register_routes(register: Callable[..., None]) -> None:
    routes.register_all(register)


@hookimpl
def register_tasks(register: Callable[..., None]) -> None:
    tasks.register_all(register)


@hookimpl
def declare_settings() -> type[WebexSettings]:
    return WebexSettings
