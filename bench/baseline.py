"""The baseline: a bare aiohttp app that checks the same HMAC and answers 200.

This is what a hand-rolled receiver does at best; the gateway is measured against it.
"""

from __future__ import annotations

import hashlib
import hmac
import sys

from aiohttp import web


def make_app(secret: bytes, header: str, algo: str) -> web.Application:
    digest = getattr(hashlib, algo)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get(header, "").strip().lower().encode()
        expected = hmac.new(secret, body, digest).hexdigest().encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/{plugin}/{connection_id}", hook)
    return app


if __name__ == "__main__":
    port, secret, header, algo = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
    web.run_app(make_app(secret, header, algo), host="127.0.0.1", port=port, print=None,
                access_log=None, backlog=1024)
