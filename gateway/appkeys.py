"""Typed application keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .runtime import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
