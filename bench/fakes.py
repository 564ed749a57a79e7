"""Fake vendors on 127.0.0.1, in their own process: Placetel's Web API, Webex, Bitrix24.

``python -m bench.fakes PORT`` serves all three on one port:

- ``/placetel/v2/...``: ``me``, ``subscriptions``, ``sip_users``, ``users``, empty
  ``recordings``/``calls`` (enough to connect accounts and run the background round);
- ``/webex/v1/...``: the token endpoint, ``people/me`` and ``webhooks``; the secrets the
  gateway posts with each new webhook are recorded so the bench can sign deliveries;
- ``/oauth/token/`` and ``/rest/{method}``: a mock Bitrix24 (OAuth server and one REST
  endpoint for every portal; the portal is told apart by the access token in the body). It
  keeps Bitrix24's per-portal leaky bucket (2 requests/s drained, 50 queued, above that
  ``QUERY_LIMIT_EXCEEDED``), records the time each ``telephony.externalCall.register`` arrived
  (keyed by ``PHONE_NUMBER``) and reports the highest rate it saw per portal;
- ``GET /_bench/state``: all of that as JSON, for the bench.

Run in its own process so the load generator and the fakes never share one event loop.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

BUCKET_DRAIN = 2.0  # Bitrix24: requests per second per portal
BUCKET_SIZE = 50  # Bitrix24: queued requests above which it refuses


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class Fakes:
    def __init__(self, port: int) -> None:
        self.port = port
        self.webex_hooks: list[dict[str, str]] = []
        self.webex_tokens: dict[str, str] = {}  # access token -> person id
        self.b24_tokens: dict[str, str] = {}  # access token -> member id
        self.b24_times: dict[str, list[float]] = defaultdict(list)
        self.b24_level: dict[str, tuple[float, float]] = {}  # member -> (level, at)
        self.b24_max_level: dict[str, float] = defaultdict(float)
        self.b24_refused = 0
        self.b24_methods: dict[str, int] = defaultdict(int)
        self.registers: dict[str, float] = {}
        self.counter = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_route("*", "/placetel/v2/{tail:.*}", self.placetel)
        r.add_post("/webex/v1/access_token", self.webex_token)
        r.add_route("*", "/webex/v1/{tail:.*}", self.webex)
        r.add_get("/oauth/token/", self.b24_oauth)
        r.add_post("/rest/{method}", self.b24_rest)
        r.add_get("/_bench/state", self.state)
        r.add_post("/_bench/reset", self.reset)
        return app

    # --- Placetel ------------------------------------------------------------------------

    async def placetel(self, request: web.Request) -> web.Response:
        path, method = "/" + request.match_info["tail"], request.method
        await request.read()
        if (method, path) == ("GET", "/me"):
            return _json({"id": 1, "name": "Bench GmbH", "email": "admin@bench.test"})
        if (method, path) == ("PUT", "/subscriptions"):
            self.counter += 1
            return _json({"id": f"sub-{self.counter}", "url": "x"})
        if method == "DELETE" and path.startswith("/subscriptions"):
            return web.Response(status=204)
        if (method, path) == ("GET", "/sip_users"):
            return _json([{"id": 4711, "sipuid": "7777abcdefg@fpbx.de", "name": "Zentrale", "did": 23,
                           "callerid": "022199998560", "webuser_id": 815, "online": True}])
        if (method, path) == ("GET", "/users"):
            return _json([{"id": 815, "email": "agent@bench.test", "first_name": "Anna",
                           "last_name": "Agent", "primary_sip_user_id": 4711}])
        if method == "GET" and path in ("/recordings", "/calls"):
            return _json([])
        return _json({"error": "not found"}, 404)

    # --- Webex ---------------------------------------------------------------------------

    async def webex_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        code = str(form.get("code") or form.get("refresh_token") or "")
        person = base64.b64encode(f"ciscospark://us/PEOPLE/{uuid.uuid5(uuid.NAMESPACE_URL, code)}".encode())
        token = f"wx-at-{len(self.webex_tokens)}-{code}"
        self.webex_tokens[token] = person.decode().rstrip("=")
        return _json({"access_token": token, "expires_in": 1209600, "refresh_token": f"wx-rt-{code}",
                      "refresh_token_expires_in": 7776000, "token_type": "Bearer",
                      "scope": "spark:calls_read spark:calls_write spark:people_read "
                               "spark:recordings_read spark:kms"})

    async def webex(self, request: web.Request) -> web.Response:
        path, method = "/" + request.match_info["tail"], request.method
        raw = await request.read()
        person = self.webex_tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if person is None:
            return _json({"message": "token expired"}, 401)
        if (method, path) == ("GET", "/people/me"):
            return _json({"id": person, "emails": [f"{person[-12:]}@bench.test"], "displayName": "Bench Agent",
                          "orgId": "bench-org", "type": "person", "extension": "7209",
                          "phoneNumbers": [{"type": "work", "value": "+14085267209", "primary": True}]})
        if path == "/webhooks" and method == "POST":
            body = orjson.loads(raw)
            self.counter += 1
            hook = {"id": f"WH-{self.counter}", "secret": body["secret"], "resource": body["resource"],
                    "event": body["event"], "person": person}
            self.webex_hooks.append(hook)
            return _json({**body, "id": hook["id"], "status": "active", "ownedBy": "creator"})
        if path == "/webhooks" and method == "GET":
            return _json({"items": [h for h in self.webex_hooks if h["person"] == person]})
        if path.startswith("/webhooks/") and method == "DELETE":
            self.webex_hooks = [h for h in self.webex_hooks if h["id"] != path.rsplit("/", 1)[1]]
            return web.Response(status=204)
        return _json({"message": "not found"}, 404)

    # --- Bitrix24 ------------------------------------------------------------------------

    async def b24_oauth(self, request: web.Request) -> web.Response:
        refresh = request.query.get("refresh_token", "")
        member = refresh.removeprefix("rt-")
        self.counter += 1
        access = f"at-{member}-{self.counter}"
        self.b24_tokens[access] = member
        return _json({"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                      "member_id": member, "client_endpoint": f"http://127.0.0.1:{self.port}/rest/",
                      "server_endpoint": "https://oauth.bitrix.info/rest/", "domain": "oauth.bitrix.info",
                      "scope": "telephony,crm,user", "status": "L", "user_id": 1})

    def _admit(self, member: str, now: float) -> bool:
        """Bitrix24's leaky bucket for one portal: False when the request would be refused."""
        level, at = self.b24_level.get(member, (0.0, now))
        level = max(0.0, level - (now - at) * BUCKET_DRAIN)
        if level + 1 > BUCKET_SIZE:
            self.b24_level[member] = (level, now)
            return False
        self.b24_level[member] = (level + 1, now)
        self.b24_max_level[member] = max(self.b24_max_level[member], level + 1)
        return True

    async def b24_rest(self, request: web.Request) -> web.Response:
        now = time.time()
        method = request.match_info["method"]
        body = orjson.loads(await request.read() or b"{}")
        member = self.b24_tokens.get(str(body.get("auth", "")))
        if member is None:
            return _json({"error": "expired_token", "error_description": "The access token provided has expired."},
                         401)
        self.b24_methods[method] += 1
        self.b24_times[member].append(now)
        if not self._admit(member, now):
            self.b24_refused += 1
            return _json({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, 503)
        if method == "telephony.externalCall.register":
            self.registers.setdefault(str(body.get("PHONE_NUMBER")), now)
            self.counter += 1
            return _json({"result": {"CALL_ID": f"externalCall.{self.counter}", "CRM_CREATED_LEAD": None}})
        if method == "user.get":
            return _json({"result": []})
        return _json({"result": True})

    def _rates(self) -> dict[str, Any]:
        """Per portal: most requests in any sliding second, and the mean rate while active."""
        worst_window, worst_mean = 0, 0.0
        for times in self.b24_times.values():
            window: deque[float] = deque()
            for t in times:
                window.append(t)
                while window[0] <= t - 1.0:
                    window.popleft()
                worst_window = max(worst_window, len(window))
            if len(times) > 1:
                worst_mean = max(worst_mean, (len(times) - 1) / max(times[-1] - times[0], 1e-9))
        return {"portals": len(self.b24_times), "max_requests_in_1s": worst_window,
                "max_mean_rate": round(worst_mean, 3),
                "max_bucket_level": round(max(self.b24_max_level.values(), default=0.0), 2),
                "bucket": {"drain_per_s": BUCKET_DRAIN, "size": BUCKET_SIZE},
                "refused_query_limit": self.b24_refused, "methods": dict(self.b24_methods)}

    async def state(self, request: web.Request) -> web.Response:
        return _json({"webex_hooks": self.webex_hooks, "registers": self.registers,
                      "bitrix24": self._rates()})

    async def reset(self, request: web.Request) -> web.Response:
        """Forget Bitrix24 traffic (after setup, before the measured run)."""
        self.b24_times.clear()
        self.b24_level.clear()
        self.b24_max_level.clear()
        self.b24_methods.clear()
        self.b24_refused = 0
        self.registers.clear()
        return _json({"ok": True})


class FakesProcess:
    """``python -m bench.fakes`` as a child process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.fakes", str(self.port)],
                                     cwd=str(Path(__file__).parents[1]))
        for _ in range(200):
            try:
                self.state()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("fake vendors did not start")

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_bench/state", timeout=30) as resp:
            result: dict[str, Any] = orjson.loads(resp.read())
            return result

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/_bench/reset", method="POST"), timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


if __name__ == "__main__":
    port = int(sys.argv[1])
    web.run_app(Fakes(port).app(), host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)
