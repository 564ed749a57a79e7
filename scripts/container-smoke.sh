#!/usr/bin/env bash
# Container smoke test: build the Containerfile for real and run the image.
#
# CI reaches no container registry, so the base image is made here: a minimal Debian
# (debootstrap, from the machine's own apt mirror) with python3 and python3-venv, imported
# into buildah (vfs storage, chroot isolation, in a private storage root). The image is built
# against it with `--build-arg BASE=localhost/callgate-base`, then:
#   - a start-up without master key and one with a bad setting exit 1 with one line;
#   - the image runs as a non-root user and holds no compiler, no pip and no test code;
#   - the gateway serves on a free loopback port (chroot isolation shares the host's network),
#     /healthz and /readyz answer, the image's own HEALTHCHECK command passes;
#   - a tenant and a Placetel connection are created through the admin API (against a fake
#     Placetel Web API on loopback) and a signed IncomingCall notification is accepted (200);
#   - SIGTERM stops the gateway cleanly; the database is in the /data volume, owned by the
#     container's user, and `gateway keys rotate` re-wraps the tenant's key under a new key.
# Everything it made (containers, images, storage, processes) is removed on exit. The
# debootstrap'd base is cached as a tarball in $CALLGATE_SMOKE_CACHE (/var/cache/callgate-smoke),
# with pip's download cache, so a second run skips the slow part.
#
# Needs root and apt (it installs buildah and debootstrap); where the machine cannot run it
# (not root, no apt-get, buildah cannot start a container) it says so loudly and exits 0.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CALLGATE_SMOKE_CACHE:-/var/cache/callgate-smoke}
BASE_PACKAGES=python3,python3-venv,ca-certificates
IMAGE=localhost/callgate:smoke
BASE_IMAGE=localhost/callgate-base
START=$SECONDS

exec 3>&2  # messages go here even from a trap that fires inside a redirected step
say() { printf '[container-smoke %3ds] %s\n' "$((SECONDS - START))" "$*" >&3; }
fail() { say "FAIL: $*"; exit 1; }
skip() {
    printf '\n%s\n%s\n%s\n\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" \
        "!!! CONTAINER SMOKE TEST SKIPPED: $*" \
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 0
}

[ "$(id -u)" = 0 ] || skip "not root (it installs packages and runs buildah as root)"
command -v apt-get >/dev/null || skip "no apt-get on this machine"
command -v python3 >/dev/null || fail "python3 is needed on the host (fake Placetel API, HTTP checks)"

# --- tools -----------------------------------------------------------------------------------
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- workspace and cleanup -------------------------------------------------------------------
mkdir -p "$CACHE/pip"
WORK=$(mktemp -d /var/tmp/callgate-smoke.XXXXXX)
mkdir "$WORK/tmp"
export BUILDAH_ISOLATION=chroot TMPDIR="$WORK/tmp"
B=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/runroot")
PIDS=()

# A long step runs in the background so that an interrupt reaches the trap at once.
long() { "$@" & local pid=$!; PIDS+=("$pid"); wait "$pid"; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -d "$WORK/storage" ]; then
        "${B[@]}" rm --all >/dev/null 2>&1
        "${B[@]}" rmi --all --force >/dev/null 2>&1
    fi
    # Anything buildah left mounted under the workspace must not be deleted through.
    grep -o " $WORK/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf --one-file-system "$WORK"
    if [ "$rc" = 0 ]; then say "PASS (${SECONDS}s)"; else say "FAILED with exit $rc; see the messages above"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the base image: debootstrap'd Debian, cached as a tarball ---------------------------------
# shellcheck disable=SC1091
. /etc/os-release
SUITE=${CALLGATE_SMOKE_SUITE:-${VERSION_CODENAME:-bookworm}}
ARCH=$(dpkg --print-architecture)

apt_mirror() {
    # The first Debian archive URI in apt's sources (one-line or deb822) that carries $SUITE.
    [ ${#sources[@]} -gt 0 ] || return 0
    awk -v suite="$SUITE" '
        function stanza() {
            if (types ~ /deb( |$)/ && suites ~ (" " suite "( |$)") && uri != "") found = uri
            types = ""; suites = ""; uri = ""
        }
        FNR == 1 { stanza(); if (found != "") exit }
        /^[[:space:]]*deb[[:space:]]/ {
            line = $0; sub(/\[[^]]*\]/, "", line); split(line, f)
            if (f[3] == suite && f[2] ~ /^https?:/) { found = f[2]; exit }
        }
        /^[[:space:]]*$/ { stanza(); if (found != "") exit }
        /^Types:/  { types = $0 }
        /^Suites:/ { suites = $0 " " }
        /^URIs:/   { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { uri = $i; break } }
        END { if (found == "") stanza(); if (found != "") print found }
    ' "${sources[@]}"
}
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sources+=("$f")
done

TARBALL="$CACHE/base-$SUITE-$ARCH-$(echo "$BASE_PACKAGES" | md5sum | cut -c1-8).tar"
if [ -s "$TARBALL" ]; then
    say "base: cached $TARBALL"
else
    MIRROR=${CALLGATE_SMOKE_MIRROR:-$(apt_mirror)}
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    say "base: debootstrap $SUITE ($ARCH) from $MIRROR with $BASE_PACKAGES"
    rootfs="$WORK/rootfs"
    long debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
    tar -C "$rootfs" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$TARBALL.$$.tmp" .
    mv "$TARBALL.$$.tmp" "$TARBALL"
    rm -rf --one-file-system "$rootfs"
fi

say "base: importing into buildah as $BASE_IMAGE"
ctr=$("${B[@]}" from scratch)
mnt=$("${B[@]}" mount "$ctr")
tar -C "$mnt" --numeric-owner -xf "$TARBALL"
"${B[@]}" umount "$ctr" >/dev/null
"${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh "$ctr"
"${B[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
probe=$("${B[@]}" from "$BASE_IMAGE")
if ! out=$("${B[@]}" run "$probe" -- /bin/true 2>&1); then
    skip "buildah cannot run a container here: $(echo "$out" | tail -n1)"
fi
"${B[@]}" rm "$probe" >/dev/null

# --- build -------------------------------------------------------------------------------------
# pip inside the build gets the machine's pip settings (index, find-links, certificates) as
# one /etc/pip.conf, with every local path they name mounted read-only at the same place.
pip_conf="$WORK/pip.conf"
{
    echo "[global]"
    { python3 -m pip config list 2>/dev/null || true; } | awk '
        match($0, /^[^.]*\.[^=]+=/) {
            key = substr($0, 1, RLENGTH - 1); sub(/^[^.]*\./, "", key)
            val = substr($0, RLENGTH + 1); gsub(/^'\''|'\''$/, "", val)
            if ($0 ~ /^:env:/ || !(key in seen)) { seen[key] = val }
            if (!(key in order)) { order[key] = ++n; keys[n] = key }
        }
        END { for (i = 1; i <= n; i++) print keys[i] " = " seen[keys[i]] }'
} >"$pip_conf"
mounts=(-v "$pip_conf:/etc/pip.conf:ro" -v "$CACHE/pip:/root/.cache/pip")
[ -d /etc/ssl/certs ] && mounts+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
for word in $(sed -n 's/^[^=]*= //p' "$pip_conf"); do
    case $word in
        file://*) path=$(dirname "${word#file://}") ;;  # a local index: its pages link to ../files
        *) path=$word ;;
    esac
    case $path in
        /etc/ssl/certs/*) ;;
        /*) [ -e "$path" ] && mounts+=(-v "$path:$path:ro") ;;
    esac
done
say "build: $IMAGE (pip settings: $(grep -c = "$pip_conf") from this machine)"
long "${B[@]}" bud --quiet --format docker --layers=false --build-arg BASE="$BASE_IMAGE" "${mounts[@]}" \
    -f "$ROOT/Containerfile" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; fail "buildah bud"; }

# --- the image's configuration -------------------------------------------------------------------
"${B[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$WORK/healthcheck.json" <<'EOF' || fail "image configuration"
import json, sys
c = json.load(open(sys.argv[1]))["Docker"]["config"]
env = dict(e.split("=", 1) for e in c.get("Env") or [])
problems = []
if c.get("User") in (None, "", "root", "0"):
    problems.append(f"runs as {c.get('User')!r}, not a non-root user")
if "/data" not in (c.get("Volumes") or {}):
    problems.append("no /data volume")
if env.get("GATEWAY_DATABASE") != "/data/gateway.db" or env.get("GATEWAY_LISTEN") != "0.0.0.0:8080":
    problems.append("GATEWAY_DATABASE / GATEWAY_LISTEN defaults missing")
if "8080/tcp" not in (c.get("ExposedPorts") or {}):
    problems.append("port 8080 not exposed")
test = (c.get("Healthcheck") or {}).get("Test") or []
if not test or "/healthz" not in " ".join(test):
    problems.append("no HEALTHCHECK on /healthz")
if problems:
    sys.exit("image: " + "; ".join(problems))
json.dump(test, open(sys.argv[2], "w"))
EOF
HEALTHCHECK=$(cat "$WORK/healthcheck.json")
say "image: non-root user, /data volume, listen and database defaults, HEALTHCHECK: ok"

gw=$("${B[@]}" from "$IMAGE")
in_ctr() { "${B[@]}" run "$gw" -- "$@"; }

# --- start-up errors: one clear line, exit 1 ------------------------------------------------------
expect_one_line_error() {  # $1: what, $2: text the line must hold, rest: env for `gateway serve`
    local what=$1 want=$2; shift 2
    local out rc err
    # buildah reports a failed command itself, so stderr and status are taken inside.
    out=$(in_ctr sh -c '"$@" 2>&1 >/dev/null; echo "exit=$?"' sh env "$@" gateway serve)
    rc=${out##*exit=}
    err=${out%$'\n'exit=*}
    [ "$rc" = 1 ] || fail "$what: exit $rc, expected 1 (output: $err)"
    [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "$what: expected one line on stderr, got: $err"
    case $err in *"$want"*) ;; *) fail "$what: the line does not mention $want: $err" ;; esac
    say "start-up error ($what): exit 1, one line: $err"
}
expect_one_line_error "no master key" GATEWAY_MASTER_KEY -u GATEWAY_MASTER_KEY
KEY=$(in_ctr gateway keys generate)
expect_one_line_error "bad configuration" GATEWAY_RETENTION_DAYS GATEWAY_MASTER_KEY="$KEY" GATEWAY_RETENTION_DAYS=30

# --- what is (not) in the image ---------------------------------------------------------------------
uid=$(in_ctr id -u)
[ "$uid" != 0 ] || fail "the container runs as root"
in_ctr sh -c 'for c in gcc cc g++ make pip pip3; do command -v $c && exit 1; done; exit 0' >/dev/null \
    || fail "a compiler or pip is in the runtime image"
read -r -d '' check_dists <<'EOF' || true
import importlib.metadata as md, pathlib, sys
names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
need = {"callgate", "callgate-placetel", "callgate-webex", "callgate-bitrix24"}
bad = {n for n in names if n in {"pytest", "hypothesis", "aioresponses", "pip", "setuptools"}
       or "demo" in n or "example" in n}
tests = [str(p) for p in pathlib.Path(sys.prefix).rglob("tests")
         if p.parent.name in {"site-packages", "gateway"} or p.parent.name.startswith("gateway_")]
if need - names or bad or tests:
    sys.exit(f"missing {sorted(need - names)}, unwanted {sorted(bad)}, test code {tests}")
EOF
in_ctr python3 -c "$check_dists" || fail "the installed distributions"
in_ctr gateway plugins >"$WORK/plugins.txt" || fail "gateway plugins"
for p in placetel webex bitrix24; do
    grep -q "^$p " "$WORK/plugins.txt" || fail "plugin $p not loaded: $(cat "$WORK/plugins.txt")"
done
say "image contents: uid $uid, no compiler, no pip, no tests; plugins placetel, webex, bitrix24 load"

# --- serve -------------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cat >"$WORK/fake_placetel.py" <<'EOF'
"""A fake Placetel Web API v2 on loopback: the calls a connect makes, answered with JSON."""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    ("GET", "/v2/me"): {"id": 1, "name": "Smoke Test GmbH"},
    ("GET", "/v2/sip_users"): [],
    ("GET", "/v2/users"): [],
    ("PUT", "/v2/subscriptions"): {"id": "sub-smoke-1"},
}

class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = ANSWERS.get((self.command, self.path.split("?")[0]))
        data = json.dumps(body if body is not None else {"error": "not found"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_PUT = do_POST = do_DELETE = _answer
    def log_message(self, fmt, *args):
        sys.stderr.write("fake placetel: " + fmt % args + "\n")

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
FAKE_PORT=$(free_port)
python3 "$WORK/fake_placetel.py" "$FAKE_PORT" 2>"$WORK/fake_placetel.log" &
PIDS+=($!)

PORT=$(free_port)
TOKEN=smoke-admin-token-$RANDOM$RANDOM$RANDOM
mkdir -p "$WORK/data"
chown "$uid" "$WORK/data"
chmod 0700 "$WORK/data"
# Configuration comes from the environment only (here: the container's config).
"${B[@]}" config --env GATEWAY_LISTEN="127.0.0.1:$PORT" --env GATEWAY_MASTER_KEY="$KEY" \
    --env GATEWAY_ADMIN_TOKEN="$TOKEN" --env GATEWAY_PUBLIC_URL="http://127.0.0.1:$PORT" \
    --env GATEWAY_PLACETEL_API_URL="http://127.0.0.1:$FAKE_PORT/v2" "$gw"
# buildah 1.28 (chroot) mounts an anonymous volume for the image's VOLUME over an explicit
# -v of the same path, so the working container forgets the declaration (the image keeps it).
"${B[@]}" config --volume /data- "$gw"
say "serve: gateway on 127.0.0.1:$PORT, fake Placetel API on 127.0.0.1:$FAKE_PORT, /data from the host"
"${B[@]}" run -v "$WORK/data:/data" "$gw" -- gateway serve >"$WORK/gateway.out" 2>"$WORK/gateway.err" &
GW_PID=$!
PIDS+=("$GW_PID")

cat >"$WORK/client.py" <<'EOF'
"""Talk to the containerised gateway like a provider and an operator would."""
import hashlib, hmac, json, sys, time, urllib.error, urllib.request

base, token, gw_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])

def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()

def admin(method, path, payload):
    return call(method, "/admin/v1" + path, json.dumps(payload).encode(),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

def expect(what, got, want, body=b""):
    if got != want:
        sys.exit(f"{what}: HTTP {got}, expected {want}: {body[:300]!r}")
    print(f"  {what}: {got}", file=sys.stderr)

deadline = time.monotonic() + 90
while True:
    try:
        status, body = call("GET", "/healthz")
        if status == 200:
            break
    except OSError:
        pass
    try:
        import os; os.kill(gw_pid, 0)
    except OSError:
        sys.exit("the gateway exited before it answered /healthz")
    if time.monotonic() > deadline:
        sys.exit("no answer on /healthz within 90 s")
    time.sleep(0.3)
expect("GET /healthz", status, 200, body)
status, body = call("GET", "/readyz")
expect("GET /readyz", status, 200, body)
ready = json.loads(body)
if not ready.get("store") or "placetel" not in ready.get("plugins", []):
    sys.exit(f"/readyz: {ready}")

status, body = admin("POST", "/tenants", {"id": "smoke"})
expect("POST /admin/v1/tenants", status, 201, body)
secret = "smoke-notify-secret"
status, body = admin("POST", "/tenants/smoke/connections",
                     {"plugin": "placetel", "settings": {"api_key": "smoke-api-key", "secret": secret}})
expect("POST /admin/v1/tenants/smoke/connections (placetel)", status, 201, body)
conn = json.loads(body)["id"]

notify = (b"event=IncomingCall&from=022129191999&to=022199998560"
          b"&call_id=5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0ke5m0k&direction=in")
form = {"Content-Type": "application/x-www-form-urlencoded"}
status, body = call("POST", f"/hooks/placetel/{conn}", notify,
                    {**form, "X-PLACETEL-SIGNATURE": "0" * 64})
expect("IncomingCall with a wrong signature", status, 401, body)
signature = hmac.new(secret.encode(), notify, hashlib.sha256).hexdigest()
status, body = call("POST", f"/hooks/placetel/{conn}", notify, {**form, "X-PLACETEL-SIGNATURE": signature})
expect("signed IncomingCall", status, 200, body)

status, body = call("GET", "/metrics")
expect("GET /metrics", status, 200, body)
if b"placetel" not in body:
    sys.exit("/metrics does not count the Placetel webhook")
EOF
python3 "$WORK/client.py" "http://127.0.0.1:$PORT" "$TOKEN" "$GW_PID" \
    || { tail -n 30 "$WORK/gateway.err" "$WORK/gateway.out" >&2; fail "talking to the gateway in the container"; }
grep -q 'GET /v2/me' "$WORK/fake_placetel.log" || fail "the connect did not reach the fake Placetel API"

# The image's own HEALTHCHECK command, run inside the container next to the gateway.
hc=$(python3 -c 'import json, sys; t = json.loads(sys.argv[1]); print(t[0])' "$HEALTHCHECK")
if [ "$hc" = CMD ]; then
    mapfile -t hc_argv < <(python3 -c 'import json, sys; print(*json.loads(sys.argv[1])[1:], sep="\n")' "$HEALTHCHECK")
else  # CMD-SHELL
    hc_argv=(/bin/sh -c "$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])[1])' "$HEALTHCHECK")")
fi
in_ctr "${hc_argv[@]}" || fail "the image's HEALTHCHECK command failed against the running gateway"
say "HEALTHCHECK command passes inside the container"

# Logs: every line on stdout is a JSON object; nothing secret or personal in them.
python3 - "$WORK/gateway.out" <<'EOF' || fail "the gateway's log lines"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l.strip()]
records = [json.loads(l) for l in lines]
if not records or not all({"level", "message"} <= r.keys() for r in records):
    sys.exit(f"expected JSON log lines with level and message, got {lines[:3]}")
EOF
if grep -q -e 'smoke-notify-secret' -e "$TOKEN" -e "$KEY" -e '022129191999' "$WORK/gateway.out" "$WORK/gateway.err"; then
    fail "the gateway's output holds a secret or a phone number"
fi
say "logs: $(grep -c . "$WORK/gateway.out") JSON lines on stdout, no secrets or numbers"

# --- stop, then read the volume again -----------------------------------------------------------------
# buildah run answers SIGTERM by killing its command, so the gateway (the container's main
# process, as under docker stop) gets SIGTERM directly and must stop cleanly, exit 0.
gateway_pid=$(python3 - "$GW_PID" <<'EOF'
import os, sys
children = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    children.setdefault(ppid, []).append((int(pid), comm))
todo = [int(sys.argv[1])]
while todo:
    for pid, comm in children.get(todo.pop(), []):
        if comm == "gateway":
            print(pid)
            sys.exit()
        todo.append(pid)
EOF
)
[ -n "$gateway_pid" ] || fail "cannot find the gateway process under buildah run"
kill -TERM "$gateway_pid"
for _ in $(seq 1 100); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$GW_PID" 2>/dev/null; then fail "the gateway did not stop on SIGTERM within 20 s"; fi
rc=0; wait "$GW_PID" || rc=$?
[ "$rc" = 0 ] || fail "the gateway exited $rc on SIGTERM: $(tail -n 3 "$WORK/gateway.err")"
say "serve: stopped cleanly on SIGTERM"
[ -s "$WORK/data/gateway.db" ] || fail "no database in the /data volume"
[ "$(stat -c %u "$WORK/data/gateway.db")" = "$uid" ] || fail "the database is not owned by the container user"
# Key rotation on the volume, as docs/operations.md describes it: new key current, old previous.
NEW_KEY=$(in_ctr gateway keys generate)
out=$("${B[@]}" run -v "$WORK/data:/data" -e GATEWAY_MASTER_KEY="$NEW_KEY" \
    -e GATEWAY_MASTER_KEY_PREVIOUS="$KEY" "$gw" -- gateway keys rotate 2>/dev/null) \
    || fail "gateway keys rotate on the volume"
case $out in *" 1 tenant keys"*) ;; *) fail "keys rotate did not re-wrap the smoke tenant's key: $out" ;; esac
say "volume: database persisted in /data, owned by uid $uid; $out"
