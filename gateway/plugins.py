"""The plugin manager: entry-point discovery, the disabled list, the registries.

Built-in plugins are found through the ``gateway.plugins`` entry-point group exactly like a
stranger's; the core never imports one by name.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .sinks import Sink
from .sources import Source

ENTRY_POINT_GROUP = "gateway.plugins"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]


@dataclass(frozen=True)
class RouteSpec:
    plugin: str
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    area: str = "apps"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    interval: float
    func: Callable[..., Awaitable[Any]]


@dataclass
class Registry:
    """What the plugins registered; the core owns it."""

    sources: dict[str, Source] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    tasks: list[TaskSpec] = field(default_factory=list)


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("gateway")
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(pm: pluggy.PluginManager, disabled: Iterable[str] = (),
                 extra: Iterable[tuple[str, object]] = ()) -> list[PluginInfo]:
    """Load every plugin of the entry-point group except the disabled ones.

    A plugin that fails to import stops start-up with a :class:`PluginError` naming it.
    ``extra`` adds (name, module-or-object) pairs, for tests that register a plugin in-process.
    """
    blocked = {name.strip() for name in disabled if name.strip()}
    infos: list[PluginInfo] = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in blocked or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} failed to import: {type(exc).__name__}: {exc}") from exc
        version = ep.dist.version if ep.dist is not None else "unknown"
        _register(pm, ep.name, plugin)
        infos.append(PluginInfo(ep.name, version, _hooks_of(pm, plugin)))
    for name, plugin in extra:
        if name in blocked:
            continue
        _register(pm, name, plugin)
        infos.append(PluginInfo(name, "local", _hooks_of(pm, plugin)))
    return infos


def _register(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        raise PluginError(f"plugin {name!r} breaks the hook contract: {exc}") from exc


def _hooks_of(pm: pluggy.PluginManager, plugin: object) -> tuple[str, ...]:
    return tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call the registration hooks and check what came back."""
    reg = Registry()

    def add_source(source: Source) -> None:
        if not isinstance(source, Source) or not source.name:
            raise PluginError(f"register_sources got {type(source).__name__}, not a named Source")
        if source.name in reg.sources:
            raise PluginError(f"two sources are named {source.name!r}")
        reg.sources[source.name] = source

    def add_sink(sink: Sink) -> None:
        if not isinstance(sink, Sink) or not sink.name:
            raise PluginError(f"register_sinks got {type(sink).__name__}, not a named Sink")
        if sink.name in reg.sinks:
            raise PluginError(f"two sinks are named {sink.name!r}")
        reg.sinks[sink.name] = sink

    def add_route(*, plugin: str, method: str, path: str, handler: Callable[..., Awaitable[Any]],
                  area: str = "apps") -> None:
        if area not in {"apps", "hooks", "admin"} or not path.startswith("/"):
            raise PluginError(f"plugin {plugin!r} registered a route with a bad area or path")
        reg.routes.append(RouteSpec(plugin, method.upper(), path, handler, area))

    def add_task(*, name: str, interval: float, func: Callable[..., Awaitable[Any]]) -> None:
        if interval <= 0:
            raise PluginError(f"task {name!r} needs a positive interval")
        reg.tasks.append(TaskSpec(name, interval, func))

    pm.hook.register_sources(register=add_source)
    pm.hook.register_sinks(register=add_sink)
    pm.hook.register_routes(register=add_route)
    pm.hook.register_tasks(register=add_task)
    return reg


async def await_all(results: Iterable[Any]) -> list[Any]:
    """Await the awaitables among hook results (pluggy itself does not await)."""
    out = []
    for result in results:
        if inspect.isawaitable(result):
            result = await result
        out.append(result)
    return out
