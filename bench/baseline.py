"""The baselines: bare aiohttp apps that check the same HMAC and answer 200.

``bare`` is what a hand-rolled receiver does at best; the gateway is measured against it.
``durable`` is the floor of durable acknowledgement: the same check, then the body encrypted
(AES-GCM) and committed to SQLite (WAL, ``synchronous=FULL``) by one writer thread in group
commits, and only then 200. It does nothing else (no parsing, no lookups, no deliveries), so
its ratio to ``bare`` bounds what any receiver that makes events durable before answering can
reach in Python on the same machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Journal:
    """Group commit in its simplest form: whatever queued while the last commit ran goes next."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, hook TEXT, body BLOB)")
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.queue: list[tuple[tuple[str, bytes], asyncio.Future[None]]] = []
        self.flushing = False

    def _commit(self, rows: list[tuple[str, bytes]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO inbox (hook, body) VALUES (?, ?)", rows)
        self.conn.execute("COMMIT")

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            batch, self.queue = self.queue, []
            await loop.run_in_executor(self.executor, self._commit, [row for row, _ in batch])
            for _, fut in batch:
                fut.set_result(None)
        self.flushing = False

    async def append(self, hook: str, body: bytes) -> None:
        nonce = os.urandom(12)
        fut = asyncio.get_running_loop().create_future()
        self.queue.append(((hook, nonce + self.aead.encrypt(nonce, body, hook.encode())), fut))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await fut


def make_app(secret: bytes, header: str, algo: str, journal: Journal | None = None) -> web.Application:
    digest = getattr(hashlib, algo)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get(header, "").strip().lower().encode()
        expected = hmac.new(secret, body, digest).hexdigest().encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=401)
        if journal is not None:
            await journal.append(request.match_info["connection_id"], body)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks/{plugin}/{connection_id}", hook)
    return app


if __name__ == "__main__":
    # baseline.py PORT SECRET HEADER ALGO [DATABASE]: with DATABASE, the durable floor.
    port, secret, header, algo = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
    journal = Journal(sys.argv[5]) if len(sys.argv) > 5 else None
    web.run_app(make_app(secret, header, algo, journal), host="127.0.0.1", port=port, print=None,
                access_log=None, backlog=1024)
