"""The whole plugin contract. Every hook is documented here and in ``docs/plugins.md``.

Rules (pluggy's and ours): hooks are called with keyword arguments only; an implementation may
accept any subset of a hook's arguments; hooks grow only by adding arguments. pluggy does not
await: a hook that does I/O may be ``async def`` (or return an awaitable) and the core awaits
the result in one place. ``gateway`` is always the running :class:`gateway.Gateway`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .models import Connection, TelephonyUser
    from .privacy import Subject
    from .runtime import Gateway
    from .sinks import Sink
    from .sources import OriginateResult, Source

hookspec = pluggy.HookspecMarker("gateway")


@hookspec
def register_sources(register: Callable[[Source], None]) -> None:
    """Register telephone systems.

    Arguments: ``register(source)`` takes an instance of a :class:`gateway.Source` subclass;
    its ``name`` must be unique and becomes the path segment of ``/hooks/{name}/{connection}``.
    Return: nothing (``None``); the core owns the registry.
    """


@hookspec
def register_sinks(register: Callable[[Sink], None]) -> None:
    """Register CRMs.

    Arguments: ``register(sink)`` takes an instance of a :class:`gateway.Sink` subclass with a
    unique ``name``; tenants bind to it by that name.
    Return: nothing (``None``).
    """


@hookspec
def register_routes(register: Callable[..., None]) -> None:
    """Add HTTP routes under the plugin's own prefix.

    Arguments: ``register(plugin=..., method=..., path=..., handler=..., area="apps")`` where
    ``handler`` is an aiohttp handler ``async def h(request) -> web.Response`` and ``path``
    starts with ``/``. ``area`` chooses the prefix: ``"apps"`` mounts at
    ``/apps/{plugin}{path}`` (browsers, OAuth redirects, install pages), ``"hooks"`` at
    ``/hooks/{plugin}{path}`` (vendor callbacks that are not per connection), ``"admin"`` at
    ``/admin/v1/plugins/{plugin}{path}`` behind the admin bearer token. The running gateway is
    ``request.app[gateway.GATEWAY]``.
    Return: nothing (``None``).
    """


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Add periodic background work (token refresh, webhook health checks, user sync).

    Arguments: ``register(name=..., interval=..., func=...)``: ``func(gateway)`` is a coroutine
    function run every ``interval`` seconds inside ``gateway serve``; an exception is logged
    by type and the task runs again at the next interval.
    Return: nothing (``None``).
    """


@hookspec
def startup(gateway: Gateway) -> Any:
    """The gateway has opened its store and HTTP client and is about to serve.

    Arguments: ``gateway``. Return: ``None`` or an awaitable the core awaits before serving.
    """


@hookspec
def shutdown(gateway: Gateway) -> Any:
    """The gateway stopped accepting requests and is about to close the store.

    Arguments: ``gateway``. Return: ``None`` or an awaitable, awaited before the store closes.
    """


@hookspec
def purge_expired(gateway: Gateway, cutoff: datetime) -> Any:
    """Retention: delete what the plugin holds about calls older than ``cutoff`` (UTC).

    Records stored with ``call_record=True`` are purged by the core already; implement this
    only for data kept elsewhere. Arguments: ``gateway``, ``cutoff``.
    Return: the number of records deleted, ``None`` when the plugin holds nothing of the kind,
    or an awaitable of either.
    """


@hookspec
def subject_export(gateway: Gateway, tenant: str, subject: Subject) -> Any:
    """Data-subject access: everything the plugin holds about one person of one tenant.

    Arguments: ``gateway``, ``tenant``; ``subject`` names the person by phone number (E.164)
    or e-mail.
    Return: a JSON-ready dict to include in the export under the plugin's name, ``None`` when
    the plugin holds nothing about the person, or an awaitable of either.
    """


@hookspec
def subject_erase(gateway: Gateway, tenant: str, subject: Subject) -> Any:
    """Data-subject erasure: delete everything the plugin holds about one person.

    Arguments: ``gateway``, ``tenant``, ``subject`` as for :func:`subject_export`. Return: the number of records deleted, ``None``
    when the plugin holds nothing, or an awaitable of either.
    """


@hookspec
def tenant_removed(gateway: Gateway, tenant: str) -> Any:
    """A tenant uninstalled or its subscription ended: forget everything of it.

    Called before the core crypto-shreds the tenant (its records, users, connections and
    events are deleted by the core). Revoke what the plugin holds at vendors, best effort.
    Arguments: ``gateway``, ``tenant``. Return: ``None`` or an awaitable.
    """


@hookspec(firstresult=True)
def originate_call(
    gateway: Gateway,
    connection: Connection,
    user: TelephonyUser,
    number: str,
    crm_call_id: str | None,
) -> Any:
    """Click-to-call: make the telephone system ring ``user`` and then dial ``number``.

    Arguments: ``gateway``; ``connection``, the tenant's connection whose directory knows
    ``user``; ``number``; ``crm_call_id``. Only the plugin that owns
    ``connection.plugin`` answers. ``number`` is E.164 where it parses; ``crm_call_id`` is the
    CRM's id of the call it already registered, if any.
    Return: ``None`` when ``connection`` is not this plugin's; otherwise an awaitable of a
    :class:`gateway.OriginateResult`. Raise :class:`gateway.BadRequest` for an unusable
    user or number and :class:`gateway.UpstreamError` when the telephone system refuses.
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in list(globals().items())
    if callable(value) and hasattr(value, "gateway_spec")
)
