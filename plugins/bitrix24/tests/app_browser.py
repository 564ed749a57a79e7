"""Browser-test helpers: Debian's Chromium driven by Playwright, apps served from a thread.

Playwright's browser downloads are impossible here, so the browser is the system's
``/usr/bin/chromium`` (``CALLGATE_CHROMIUM`` to override); never run ``playwright install``.

Chromium is started once per test session (:func:`start_chromium`) and each test connects
Playwright's sync API to it over the DevTools protocol. Playwright's sync API keeps its event
loop marked as running in the main thread for as long as it is started, which breaks every
asyncio test after it; started and stopped around each test, it leaves the rest of the suite
alone. The server under test runs in its own thread with its own event loop
(:class:`ServedApp`); ``ServedApp.run`` runs a coroutine there, e.g. to look into a gateway
the test started.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

CHROMIUM = os.environ.get("CALLGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
#: Where the screenshots go: a temporary folder, or this folder when set (``make screenshots``
#: sets it to ``docs/app``).
SCREENSHOTS_ENV = "CALLGATE_SCREENSHOTS"
#: The browser window: inside it, the portal's frame for the app is about 1,050 px wide.
WINDOW_WIDTH = 1280

T = TypeVar("T")
_ENDPOINT = re.compile(r"DevTools listening on (ws://\S+)")


def start_chromium(profile: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start headless Chromium with a fresh profile; (process, DevTools WebSocket address)."""
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_ARGS, "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen = (seen + line)[-4000:]
        found = _ENDPOINT.search(line.decode(errors="replace"))
        if found:
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, found.group(1)
    proc.kill()
    proc.wait()
    raise RuntimeError("chromium did not start: " + seen.decode(errors="replace")[-500:])


def _drain(stream: Any) -> None:
    """Keep reading Chromium's log so a full pipe never blocks it."""
    for _ in iter(stream.readline, b""):
        pass


def stop_chromium(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ServedApp:
    """An aiohttp application served on 127.0.0.1 from a thread of its own."""

    def __init__(self, factory: Callable[[], web.Application | Awaitable[web.Application]], port: int = 0) -> None:
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="served-app", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = port

    def __enter__(self) -> ServedApp:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        made = self._factory()
        app = await made if isinstance(made, Awaitable) else made
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the port the OS chose
        assert server is not None and server.sockets
        self.port = int(server.sockets[0].getsockname()[1])

    @property
    def app(self) -> web.Application:
        assert self._runner is not None
        return self._runner.app

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """``http://host:port/path``; any ``*.localhost`` host reaches the same server under
        another origin (Chromium resolves them to the loopback address itself)."""
        return f"http://{host}:{self.port}{path}"

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)


def free_port() -> int:
    """A port nobody listens on now (for a server that must know its address before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fit_window(page: Any) -> None:
    """Make the window as tall as the page. Chromium's full-page screenshots lay out a frame
    from another origin (the app inside the portal) wrongly, so the window itself grows."""
    height = page.evaluate("() => document.body.scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": max(300, int(height))})


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """Save a PNG of the whole of ``page`` as ``folder/name.png``; the path, for the test to show."""
    path = folder / f"{name}.png"
    fit_window(page)
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path
