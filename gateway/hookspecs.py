"""The whole plugin contract. Every hook is documented here and in ``docs/plugins.md``.

Rules (pluggy's and ours): hooks are called with keyword arguments only; an implementation may
accept any subset of a hook's arguments; hooks grow only by adding arguments. pluggy does not
await: a hook that does I/O may be ``async def`` (or return an awaitable) and the core awaits
the result. ``context`` is always the calling plugin's own :class:`gateway.PluginContext`: its
storage, settings, URLs and the core's services, bound to the plugin's name.

Each hook is called once per plugin (the core passes each its own context); a plugin that raises
never keeps the others from running, and the core reports which plugin failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .context import PluginContext
    from .models import Connection
    from .privacy import Subject
    from .sinks import Sink
    from .sources import Source

hookspec = pluggy.HookspecMarker("gateway")


@hookspec
def register_sources(register: Callable[[Source], None]) -> None:
    """Register the plugin's telephone system.

    Arguments: ``register(source)`` takes an instance of a :class:`gateway.Source` subclass
    whose ``name`` is the plugin's name; it becomes the path segment of
    ``/hooks/{name}/{connection_id}``. At most one source per plugin.
    Return: nothing (``None``); the core owns the registry.
    """


@hookspec
def register_sinks(register: Callable[[Sink], None]) -> None:
    """Register the plugin's CRM.

    Arguments: ``register(sink)`` takes an instance of a :class:`gateway.Sink` subclass whose
    ``name`` is the plugin's name; tenants bind to it by that name. At most one sink per plugin.
    Return: nothing (``None``).
    """


@hookspec
def register_routes(register: Callable[..., None]) -> None:
    """Add HTTP routes under the plugin's own prefix.

    Arguments: ``register(method=..., path=..., handler=..., area="apps")`` where ``handler`` is
    an aiohttp handler ``async def h(request) -> web.Response`` and ``path`` starts with ``/``.
    ``area`` chooses the prefix: ``"apps"`` mounts at ``/apps/{plugin}{path}`` (browsers, OAuth
    redirects, install pages), ``"hooks"`` at ``/hooks/{plugin}{path}`` (vendor callbacks that
    are not per connection), ``"admin"`` at ``/admin/v1/plugins/{plugin}{path}`` behind the admin
    bearer token (``request[gateway.ADMIN_SCOPE]`` is the token's tenant, ``None`` for the
    operator). The core knows which plugin registers: a plugin cannot mount under another's
    prefix. The handler finds its plugin's context as ``request[gateway.CONTEXT]``.
    Return: nothing (``None``).
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Add periodic background work (token refresh, webhook health checks, user sync).

    Arguments: ``register(name=..., interval=..., func=...)``: ``func(context)`` is a coroutine
    function run every ``interval`` seconds inside ``gateway serve``; an exception is logged by
    type and the task runs again at the next interval.
    Return: nothing (``None``).
    """


@hookspec
def declare_settings() -> Any:
    """Declare the plugin's operator settings.

    Arguments: none. Return: a dataclass type (frozen), one field per setting, each field's type
    one of ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``, ``frozenset[str]`` or any
    of them ``| None``; mark secrets with :func:`gateway.setting` (``secret=True``). The core
    reads ``GATEWAY_<PLUGIN>_<FIELD>`` and ``[plugins.<name>]`` into it at start-up, refuses
    unknown names and bad values with one line, and hands the instance to the plugin as
    ``context.settings``. ``None``: the plugin has no settings.
    """


@hookspec
def startup(context: PluginContext) -> Any:
    """The gateway has opened its store and HTTP client and is about to serve.

    Arguments: ``context``. Return: ``None`` or an awaitable the core awaits before serving.
    A plugin that raises stops start-up (with its name in the error).
    """


@hookspec
def shutdown(context: PluginContext) -> Any:
    """The gateway stopped accepting requests and is about to close the store.

    Arguments: ``context``. Return: ``None`` or an awaitable, awaited before the store closes.
    """


@hookspec
def purge_expired(context: PluginContext, cutoff: datetime) -> Any:
    """Retention: delete what the plugin holds about calls older than ``cutoff`` (UTC).

    Records stored with ``call_record=True`` are purged by the core already; implement this
    only for data kept elsewhere. Arguments: ``context``, ``cutoff``.
    Return: the number of records deleted, ``None`` when the plugin holds nothing of the kind,
    or an awaitable of either.
    """


@hookspec
def subject_export(context: PluginContext, tenant: str, subject: Subject) -> Any:
    """Data-subject access: what the plugin holds about one person beyond what the core finds.

    The core already exports the plugin's records stored with ``phones=`` naming the person's
    number; implement this only for data the core cannot find that way.
    Arguments: ``context``, ``tenant``; ``subject`` names the person by phone number (E.164)
    or e-mail.
    Return: a JSON-ready dict to include in the export under the plugin's name, ``None`` when
    the plugin holds nothing more about the person, or an awaitable of either.
    """


@hookspec
def subject_erase(context: PluginContext, tenant: str, subject: Subject) -> Any:
    """Data-subject erasure: delete what the plugin holds about one person beyond what the core
    deletes (records stored with ``phones=`` naming the person's number are erased by the core).

    Arguments: ``context``, ``tenant``, ``subject`` as for :func:`subject_export`.
    Return: the number of records deleted, ``None`` when the plugin holds nothing more, or an
    awaitable of either. Raise when the erasure failed: the controller is told it is incomplete.
    """


@hookspec
def tenant_removed(context: PluginContext, tenant: str) -> Any:
    """A tenant uninstalled or its subscription ended: forget everything of it.

    Called before the core crypto-shreds the tenant (its records, users, connections and events
    are deleted by the core). Revoke what the plugin holds at vendors, drop in-memory state.
    Arguments: ``context``, ``tenant``. Return: ``None`` or an awaitable.
    """


@hookspec
def user_logged_out(context: PluginContext, connection: Connection, user_id: str) -> Any:
    """A telephony user logged out (their name and e-mail are already deleted by the core):
    forget what the plugin keeps about them (caches of CRM matches, tokens).

    Arguments: ``context``; ``connection``, whose directory held the user; ``user_id``, the
    source's id of the user. Return: ``None`` or an awaitable.
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in list(globals().items())
    if callable(value) and hasattr(value, "gateway_spec")
)
