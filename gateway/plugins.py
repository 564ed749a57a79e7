"""The plugin manager: entry-point discovery, the disabled list, the registries, hook calls.

Built-in plugins are found through the ``gateway.plugins`` entry-point group exactly like a
stranger's; the core never imports one by name. Registration hooks are called once per plugin
with a ``register`` that knows which plugin is registering, so a plugin can only register under
its own name. Hooks that must reach every plugin (:meth:`PluginHost.call_each`) are called one
plugin at a time: one plugin failing never keeps the next from running, and the caller learns
which failed.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .sinks import Sink
from .sources import Source

if TYPE_CHECKING:
    from .context import PluginContext

log = logging.getLogger("gateway.plugins")

ENTRY_POINT_GROUP = "gateway.plugins"
AREAS = ("apps", "hooks", "admin")


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

    @property
    def prefix(self) -> str:
        """Where the route is mounted: always under its own plugin's name."""
        return {"apps": f"/apps/{self.plugin}", "hooks": f"/hooks/{self.plugin}",
                "admin": f"/admin/v1/plugins/{self.plugin}"}[self.area]


@dataclass(frozen=True)
class TaskSpec:
    plugin: str
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
    #: plugin name -> the settings dataclass it declared
    settings: dict[str, type[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class HookResults:
    """What a hook called in every plugin answered: non-``None`` answers by plugin, and the
    plugins that raised (by name, in call order)."""

    answers: dict[str, Any]
    failed: tuple[str, ...]


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


def _impls(pm: pluggy.PluginManager, hook: str) -> list[Any]:
    """A hook's implementations in pluggy's calling order (last registered first)."""
    return list(reversed(getattr(pm.hook, hook).get_hookimpls()))


def _call(impl: Any, kwargs: Mapping[str, Any]) -> Any:
    """Call one implementation with the arguments it asks for (an implementation may accept
    any subset of a hook's arguments)."""
    return impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})


def collect(pm: pluggy.PluginManager) -> Registry:
    """Call the registration hooks, one plugin at a time, and check what came back."""
    reg = Registry()
    for impl in _impls(pm, "register_sources"):
        _call(impl, {"register": _source_adder(reg, impl.plugin_name)})
    for impl in _impls(pm, "register_sinks"):
        _call(impl, {"register": _sink_adder(reg, impl.plugin_name)})
    for impl in _impls(pm, "register_routes"):
        _call(impl, {"register": _route_adder(reg, impl.plugin_name)})
    for impl in _impls(pm, "register_tasks"):
        _call(impl, {"register": _task_adder(reg, impl.plugin_name)})
    for impl in _impls(pm, "declare_settings"):
        schema = _call(impl, {})
        if schema is not None:
            reg.settings[impl.plugin_name] = schema
    return reg


def _named(kind: str, plugin: str, obj: Source | Sink) -> None:
    if obj.name != plugin:
        raise PluginError(f"plugin {plugin!r} registered a {kind} named {obj.name!r}: "
                          f"a plugin's {kind} carries the plugin's own name")


def _source_adder(reg: Registry, plugin: str) -> Callable[[Source], None]:
    def add(source: Source) -> None:
        if not isinstance(source, Source):
            raise PluginError(f"plugin {plugin!r}: register_sources got {type(source).__name__}, not a Source")
        _named("source", plugin, source)
        if source.name in reg.sources:
            raise PluginError(f"plugin {plugin!r} registered two sources")
        reg.sources[source.name] = source
    return add


def _sink_adder(reg: Registry, plugin: str) -> Callable[[Sink], None]:
    def add(sink: Sink) -> None:
        if not isinstance(sink, Sink):
            raise PluginError(f"plugin {plugin!r}: register_sinks got {type(sink).__name__}, not a Sink")
        _named("sink", plugin, sink)
        if sink.name in reg.sinks:
            raise PluginError(f"plugin {plugin!r} registered two sinks")
        reg.sinks[sink.name] = sink
    return add


def _route_adder(reg: Registry, plugin: str) -> Callable[..., None]:
    def add(*, method: str, path: str, handler: Callable[..., Awaitable[Any]], area: str = "apps") -> None:
        if area not in AREAS or not path.startswith("/") or ".." in path:
            raise PluginError(f"plugin {plugin!r} registered a route with a bad area or path")
        reg.routes.append(RouteSpec(plugin, method.upper(), path, handler, area))
    return add


def _task_adder(reg: Registry, plugin: str) -> Callable[..., None]:
    def add(*, name: str, interval: float, func: Callable[..., Awaitable[Any]]) -> None:
        if interval <= 0:
            raise PluginError(f"plugin {plugin!r}: task {name!r} needs a positive interval")
        reg.tasks.append(TaskSpec(plugin, name, interval, func))
    return add


class PluginHost:
    """Calls hooks on behalf of the core, each plugin with its own context."""

    def __init__(self, pm: pluggy.PluginManager, contexts: Mapping[str, PluginContext]) -> None:
        self.pm = pm
        self.contexts = contexts

    async def call_each(self, hook: str, **kwargs: Any) -> HookResults:
        """Call ``hook`` in every plugin that implements it, awaiting each answer; a plugin
        that raises is logged (by error type) and named in ``failed``, the others still run."""
        answers: dict[str, Any] = {}
        failed: list[str] = []
        for impl in _impls(self.pm, hook):
            plugin = impl.plugin_name
            try:
                result = _call(impl, {**kwargs, "context": self.contexts[plugin]})
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                log.warning("a plugin failed a hook", extra={"plugin": plugin, "hook": hook,
                                                             "error": type(exc).__name__})
                failed.append(plugin)
                continue
            if result is not None:
                answers[plugin] = result
        return HookResults(answers, tuple(failed))
