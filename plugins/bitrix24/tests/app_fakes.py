"""The vendors around the app, as one local aiohttp server: a Bitrix24 portal (its REST API,
its OAuth server and a page that opens the app in a frame the way Bitrix24 does), the Placetel
Web API and the Webex API with its login page. The gateway under test is real; only what it
calls over HTTP is played here, with state where the gateway relies on it.

Sample company: portal users Anna Schmidt (1, the administrator, extension 201), Jonas Weber
(7, extension 207), Mia Fischer (12) and Lukas Becker (15); Placetel users Anna Schmidt (201),
Empfang (200) and Lager (230); Jonas logs in to Webex.
"""

from __future__ import annotations

import itertools
import re
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"
CLIENT_ID = "local.5c8bb1b0891cf2.87252039"
CLIENT_SECRET = "bitrix24-client-secret-0123456789abcdef"
ADMIN_AUTH, USER_AUTH, EXPIRED_AUTH = "admin-auth-4f1c", "user-auth-9a2e", "expired-auth-77d0"
APP_ACCESS, APP_REFRESH = "app-access-token-1", "app-refresh-token-1"
PLACETEL_KEY = "placetel-api-key-3f9c1e0a7b"
WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET = "webex-client-id", "webex-client-secret-0123456789"
JONAS_WEBEX = "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9qb25hcw"
CALLER = "+4922112345678"
OUR_LINE = "022199998560"

PEOPLE = [
    {"ID": "1", "NAME": "Anna", "LAST_NAME": "Schmidt", "EMAIL": "anna.schmidt@example.de",
     "UF_PHONE_INNER": "201", "ACTIVE": True},
    {"ID": "7", "NAME": "Jonas", "LAST_NAME": "Weber", "EMAIL": "jonas.weber@example.de",
     "UF_PHONE_INNER": "207", "ACTIVE": True},
    {"ID": "12", "NAME": "Mia", "LAST_NAME": "Fischer", "EMAIL": "mia.fischer@example.de",
     "UF_PHONE_INNER": "", "ACTIVE": True},
    {"ID": "15", "NAME": "Lukas", "LAST_NAME": "Becker", "EMAIL": "lukas.becker@example.de",
     "UF_PHONE_INNER": "", "ACTIVE": True},
]
SIP_USERS = [
    {"id": 4711, "sipuid": "777anna@fpbx.de", "name": "Anna Schmidt", "did": 201, "webuser_id": 815},
    {"id": 4712, "sipuid": "777empfang@fpbx.de", "name": "Empfang", "did": 200, "webuser_id": None},
    {"id": 4713, "sipuid": "777lager@fpbx.de", "name": "Lager", "did": 230, "webuser_id": None},
]
WEB_USERS = [{"id": 815, "email": "anna.schmidt@example.de", "first_name": "Anna", "last_name": "Schmidt",
              "primary_sip_user_id": 4711}]
#: the Webex organisation the tenant's connection is tied to (the operator sets ``org_id``)
WEBEX_ORG = "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi9hY21l"
JONAS_PROFILE = {"id": JONAS_WEBEX, "emails": ["jonas.weber@example.de"], "displayName": "Jonas Weber",
                 "orgId": WEBEX_ORG, "extension": "207",
                 "phoneNumbers": [{"type": "work", "value": "+49 221 9999 207"}], "type": "person"}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _ok(result: Any) -> web.Response:
    return _json({"result": result, "time": {"start": 1773130778, "finish": 1773130779.1, "duration": 0.1}})


class Vendors:
    """State and handlers of the fake vendors; ``base`` is set once it is served."""

    def __init__(self) -> None:
        self.base = ""
        self.gateway = ""  #: the gateway's address, for the portal page's frame
        self.sessions: dict[str, tuple[int, bool]] = {ADMIN_AUTH: (1, True), USER_AUTH: (7, False)}
        self.rest: list[tuple[str, dict[str, Any]]] = []  #: REST calls with the app's token, in order
        self.refuse_numbers: set[str] = set()  #: register refuses calls from these numbers
        self.placetel_keys = {PLACETEL_KEY}
        self.placetel: list[tuple[str, str]] = []  #: Placetel requests (method, path)
        self.webhooks: dict[str, dict[str, Any]] = {}  #: Webex webhooks
        self.webex_tokens: set[str] = set()
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/portal", self.portal_page)
        app.router.add_get("/oauth/token/", self.oauth)
        app.router.add_post("/rest/{method}", self.rest_call)
        app.router.add_route("*", "/placetel/v2/{tail:.*}", self.placetel_api)
        app.router.add_get("/webex/v1/authorize", self.webex_authorize)
        app.router.add_route("*", "/webex/v1/{tail:.*}", self.webex_api)
        return app

    def registered(self) -> list[dict[str, Any]]:
        return [p for m, p in self.rest if m == "telephony.externalCall.register"]

    # --- Bitrix24 -----------------------------------------------------------------------

    async def oauth(self, request: web.Request) -> web.Response:
        q = request.query
        if (q.get("client_id"), q.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return _json({"error": "invalid_client"}, 401)
        return _json({"access_token": APP_ACCESS, "refresh_token": APP_REFRESH, "expires_in": 3600,
                      "client_endpoint": f"{self.base}/rest/", "domain": "oauth.bitrix.info",
                      "member_id": MEMBER, "user_id": 1, "scope": "telephony,crm,user", "status": "L"})

    async def rest_call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await request.json()
        auth = params.pop("auth", "")
        if method == "profile":
            if auth == EXPIRED_AUTH:
                return _json({"error": "expired_token", "error_description": "The access token expired"}, 401)
            if auth not in self.sessions:
                return _json({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, 401)
            uid, admin = self.sessions[auth]
            person = next(p for p in PEOPLE if p["ID"] == str(uid))
            return _ok({"ID": str(uid), "ADMIN": admin, "NAME": person["NAME"], "LAST_NAME": person["LAST_NAME"]})
        if auth != APP_ACCESS:
            return _json({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, 401)
        self.rest.append((method, params))
        if method == "batch":
            return _ok(self.batch(params))
        result, error = self.method(method, params)
        return _ok(result) if error is None else _json(error, 400)

    def method(self, method: str, params: dict[str, Any]) -> tuple[Any, dict[str, str] | None]:
        if method == "user.get":
            return self.user_get(params), None
        if method == "event.bind":
            return True, None
        if method == "telephony.externalCall.register":
            if params.get("PHONE_NUMBER") in self.refuse_numbers:
                return None, {"error": "ERROR_CORE", "error_description": "User is not found or is not active"}
            return {"CALL_ID": f"externalCall.{next(self._ids)}.1773130779", "CRM_CREATED_LEAD": None,
                    "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 797}, None
        if method in ("telephony.externalCall.finish", "telephony.externalCall.attachRecord"):
            return {"CALL_ID": params.get("CALL_ID")}, None
        return None, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found"}

    def user_get(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        found = PEOPLE
        flt = params.get("FILTER") if isinstance(params.get("FILTER"), dict) else {}
        if "ID" in params:
            found = [p for p in found if p["ID"] == str(params["ID"])]
        if flt.get("UF_PHONE_INNER"):
            found = [p for p in found if p["UF_PHONE_INNER"] == str(flt["UF_PHONE_INNER"])]
        if flt.get("EMAIL"):
            found = [p for p in found if p["EMAIL"] == str(flt["EMAIL"]).lower()]
        start = int(params.get("start") or 0)
        return found[start:start + 50]

    def batch(self, params: dict[str, Any]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, command in params["cmd"].items():
            method, _, query = command.partition("?")
            args = dict(parse_qsl(query, keep_blank_values=True))
            for name, value in args.items():
                ref = re.fullmatch(r"\$result\[(\w+)\]\[(\w+)\]", value)
                if ref:
                    args[name] = results[ref.group(1)][ref.group(2)]
            self.rest.append((method, args))
            result, error = self.method(method, args)
            if error is not None:
                errors[key] = error
                if params.get("halt"):
                    break
            else:
                results[key] = result
        return {"result": results or [], "result_error": errors or [], "result_total": [], "result_next": []}

    async def portal_page(self, request: web.Request) -> web.Response:
        """A page like a Bitrix24 portal: it POSTs the app's opening fields into a frame."""
        q = request.query
        fields = {"AUTH_ID": q.get("auth", ADMIN_AUTH), "AUTH_EXPIRES": "3600", "REFRESH_ID": "portal-refresh-1",
                  "member_id": q.get("member", MEMBER), "status": "L", "PLACEMENT": "DEFAULT",
                  "PLACEMENT_OPTIONS": "{}"}
        query = urlencode({"DOMAIN": q.get("domain", f"127.0.0.1:{request.url.port}"), "PROTOCOL": "0",
                           "LANG": q.get("lang", "en"), "APP_SID": "frame-sid-1"})
        target = f"{self.gateway}/apps/bitrix24{q.get('path', '/')}?{query}"
        html = PORTAL_PAGE.format(action=escape(target), fields="".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()))
        return web.Response(text=html, content_type="text/html")

    # --- Placetel -----------------------------------------------------------------------

    async def placetel_api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        self.placetel.append((request.method, path))
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.placetel_keys:
            return _json({"error": "unauthorized"}, 401)
        if path == "/me":
            return _json({"id": 1, "name": "Beispiel GmbH"})
        if path == "/subscriptions" and request.method == "PUT":
            return _json({"id": "sub-1", "url": (await request.json())["url"]})
        if path.startswith("/subscriptions/") and request.method == "DELETE":
            return web.Response(status=204)
        if path in ("/sip_users", "/users"):
            first_page = request.query.get("page", "1") == "1"
            return _json((SIP_USERS if path == "/sip_users" else WEB_USERS) if first_page else [])
        return _json({"error": "not found"}, 404)

    # --- Webex --------------------------------------------------------------------------

    async def webex_authorize(self, request: web.Request) -> web.Response:
        """Webex's login page, where the person has just logged in: back to the gateway."""
        back = request.query["redirect_uri"] + "?" + urlencode({"code": "webex-code-1", "state": request.query["state"]})
        return web.Response(status=302, headers={"Location": back})

    async def webex_api(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        if path == "/access_token":
            form = await request.post()
            if (form.get("client_id"), form.get("client_secret")) != (WEBEX_CLIENT_ID, WEBEX_CLIENT_SECRET):
                return _json({"message": "bad client"}, 401)
            token = f"webex-access-{next(self._ids)}"
            self.webex_tokens.add(token)
            return _json({"access_token": token, "expires_in": 1209600, "refresh_token": "webex-refresh",
                          "refresh_token_expires_in": 7776000, "token_type": "Bearer",
                          "scope": "spark:calls_read spark:calls_write spark:people_read spark:kms"})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.webex_tokens:
            return _json({"message": "token expired"}, 401)
        if path == "/people/me":
            return _json(JONAS_PROFILE)
        if path == "/webhooks" and request.method == "POST":
            hook = {**await request.json(), "id": f"WH-{next(self._ids)}", "status": "active"}
            self.webhooks[hook["id"]] = hook
            return _json(hook)
        if path == "/webhooks" and request.method == "GET":
            return _json({"items": list(self.webhooks.values())})
        hook_id = path.removeprefix("/webhooks/")
        if request.method == "DELETE" and hook_id in self.webhooks:
            del self.webhooks[hook_id]
            return web.Response(status=204)
        return _json({"message": "not found"}, 404)


PORTAL_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Bitrix24</title><style>
body{{margin:0;font-family:"Open Sans",Helvetica,Arial,sans-serif;background:#eef2f4}}
.bar{{height:56px;background:#2fc6f6;color:#fff;display:flex;align-items:center;padding:0 20px;font-weight:700;font-size:20px}}
.bar span{{font-weight:400;font-size:14px;margin-left:auto}}
.wrap{{display:flex}} .menu{{width:200px;padding:16px 0;color:#525c69;font-size:14px}}
.menu p{{margin:0;padding:8px 24px}} .menu .on{{background:#fff;font-weight:600}}
.content{{flex:1;padding:16px 20px 20px 0}} h1{{font-size:22px;color:#333;font-weight:400;margin:4px 0 12px}}
iframe{{width:100%;height:600px;border:0;background:#fff;border-radius:8px;display:block}}
</style></head><body>
<div class="bar">Bitrix<span>beispiel.bitrix24.de</span></div>
<div class="wrap"><nav class="menu"><p>Feed</p><p>Tasks</p><p>CRM</p><p>Telephony</p><p class="on">Applications</p></nav>
<div class="content"><h1>callgate telephony</h1>
<form id="open" method="post" target="app" action="{action}">{fields}</form>
<iframe name="app" id="app" title="callgate telephony"></iframe></div></div>
<script>
window.addEventListener("message", function (e) {{
  var app = document.getElementById("app");
  if (e.data && e.data.bx24 === "fitWindow") {{
    app.style.height = (e.data.height + 4) + "px";
    app.setAttribute("data-fits", String(Number(app.getAttribute("data-fits") || 0) + 1));
  }}
  if (e.data && e.data.bx24 === "installFinish") {{ document.body.setAttribute("data-installed", "1"); }}
}});
document.getElementById("open").submit();
</script></body></html>
"""
