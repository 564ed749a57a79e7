"""Typed application and request keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .context import PluginContext
    from .runtime import Gateway

#: The running gateway: the core's own handlers use it; plugins get their context instead.
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
#: The plugin context of the plugin whose route handles the request.
CONTEXT: web.RequestKey[PluginContext] = web.RequestKey("plugin_context", object)  # type: ignore[arg-type]
