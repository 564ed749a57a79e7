"""The ``gateway`` command. Wrong usage or configuration: one line on stderr, non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .config import Config, is_postgres, public_dsn
from .errors import ConfigError, GatewayError
from .privacy.rights import OPERATIONS

EXIT_USAGE = 2
EXIT_ERROR = 1
#: How long ``gateway reconcile`` waits for the server's run of a connection to finish (seconds).
RECONCILE_WAIT = 120.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage dump
        sys.stderr.write(f"gateway: {message} (see `gateway --help`)\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> _Parser:
    p = _Parser(prog="gateway", description="Telephony to CRM webhook gateway")
    p.add_argument("--config", help="TOML configuration file")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--dev", action="store_true",
                       help="development mode: generate a master key and admin token next to the database")
    sub.add_parser("plugins", help="list loaded plugins, their versions and hooks")
    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    config_sub.add_parser("check", help="print the effective configuration, secrets redacted")
    keys = sub.add_parser("keys", help="master keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    keys_sub.add_parser("generate", help="print a new master key")
    keys_sub.add_parser("rotate", help="re-wrap every tenant key under the current master key")
    dead = sub.add_parser("deadletters", help="deliveries given up on")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True, parser_class=_Parser)
    dl = dead_sub.add_parser("list", help="list dead letters")
    dl.add_argument("--tenant")
    dr = dead_sub.add_parser("replay", help="queue dead letters again")
    dr.add_argument("ids", nargs="+", type=int)
    sub.add_parser("purge", help="delete call records past the retention period, now")
    rec = sub.add_parser("reconcile", help="compare telephone systems' call lists with what was received; "
                                           "write the missing calls")
    rec.add_argument("--connection", help="only this connection (default: every one whose system has a call list)")
    rec.add_argument("--since", help="ISO-8601 date or date-time (UTC if no zone) to read from; bounded by the "
                                     "connection's first reconciliation, the last erasure and the retention period")
    subject = sub.add_parser("subject", help="data-subject requests of a tenant's controller")
    subject.add_argument("operation", choices=OPERATIONS)
    subject.add_argument("--tenant", required=True)
    who = subject.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone")
    who.add_argument("--email")
    subject.add_argument("--name", help="rectify: the corrected name")
    subject.add_argument("--new-email", help="rectify: the corrected e-mail")
    subject.add_argument("--extension", help="rectify: the corrected extension")
    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    al = audit_sub.add_parser("list", help="print entries as JSON lines")
    al.add_argument("--tenant")
    al.add_argument("--after", type=int, default=0, help="only entries after this sequence number")
    av = audit_sub.add_parser("verify", help="check the hash chain and its anchor; exit 1 naming the first broken entry")
    av.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                    help="seq and hash of an 'audit log head' log line: the chain must still hold that entry")
    move = sub.add_parser("migrate", help="copy this SQLite installation into an empty PostgreSQL database")
    move.add_argument("--to", required=True, metavar="postgresql://...",
                      help="the target database (same master keys: nothing is re-encrypted)")
    breach = sub.add_parser("breach-report", help="what was held in a window, per tenant, as counts")
    breach.add_argument("--since", required=True, help="ISO-8601 date or date-time (UTC if no zone)")
    breach.add_argument("--until", required=True, help="ISO-8601 date or date-time (UTC if no zone)")
    breach.add_argument("--format", choices=("json", "text"), default="text")
    return p


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only from the first byte (never chmod after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _dev_secrets(config: Config) -> None:
    """Create (once) and use a development master key and admin token beside the database."""
    folder = Path("data" if "://" in config.database else config.database).resolve().parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.master_key:
        from .store.crypto import generate_master_key
        key_file = folder / "dev-master.key"
        if not key_file.exists():
            _write_private(key_file, generate_master_key() + "\n")
        config.master_key = key_file.read_text().strip()
    if not config.admin_tokens:
        token_file = folder / "dev-admin.token"
        if not token_file.exists():
            _write_private(token_file, secrets.token_urlsafe(24) + "\n")
        config.admin_tokens = {token_file.read_text().strip(): None}
        print(f"development admin token in {token_file}", file=sys.stderr)
    print("WARNING: development mode: the master key is kept next to the database; "
          "never use --dev in production", file=sys.stderr)


def _database_folder(config: Config) -> None:
    """The database's folder must exist: a missing one is a wrong path or an unmounted volume,
    and creating it would put the data where nobody backs it up. (A database server's URL
    names no folder.)"""
    if "://" in config.database:
        return
    folder = Path(config.database).parent
    if not folder.is_dir():
        raise ConfigError(f"the database folder {folder} does not exist (GATEWAY_DATABASE); "
                          "create it or mount the volume")


def _private_files(config: Config) -> None:
    """Database files left readable by others by an older release: owner-only, like new ones."""
    for suffix in ("", "-wal", "-shm", ".serving"):
        path = Path(config.database + suffix)
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import logs
    from .app import create_app, server_options

    if args.dev:
        _dev_secrets(config)
    _database_folder(config)
    _private_files(config)
    logs.setup(config.log_level)
    # The store's writer thread and the event loop share the GIL; with the default 5 ms
    # switch interval the loop waits behind every stretch of binding and fsync bookkeeping.
    sys.setswitchinterval(0.0005)
    app = create_app(config)

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, **server_options(config))
        await runner.setup()  # opens the store: a bad key or schema fails here, before listening
        site = web.TCPSite(runner, config.listen_host, config.listen_port, backlog=1024)
        await site.start()
        # What start-up made (plugins, phone number metadata, caches) lives as long as the
        # process: keep it out of the collector's scans, and collect young cycles less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        print(f"gateway listening on http://{config.listen_host}:{config.listen_port} "
              f"(database {public_dsn(config.database)})", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
    return 0


def cmd_plugins(config: Config, args: argparse.Namespace) -> int:
    from .plugins import load_plugins, make_manager

    infos = load_plugins(make_manager(), config.plugins_disabled)
    if not infos:
        print("no plugins loaded")
    for info in infos:
        print(f"{info.name} {info.version}: {', '.join(info.hooks) or '(no hooks)'}")
    return 0


def cmd_config(config: Config, args: argparse.Namespace) -> int:
    from . import settings
    from .plugins import collect, load_plugins, make_manager
    from .runtime import load_plugin_settings

    pm = make_manager()
    infos = load_plugins(pm, config.plugins_disabled)
    declared = load_plugin_settings(config, collect(pm).settings)  # a bad value fails here
    out = config.redacted()
    out["plugins"] = {info.name: settings.redacted(declared[info.name]) if info.name in declared
                      else config.redacted_plugin(info.name) for info in infos}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


def _with_gateway(config: Config, body: Callable[[Any], Any]) -> Any:
    from .app import build_gateway

    _database_folder(config)

    async def run() -> Any:
        gw = build_gateway(config)
        await gw.open(deliver=False, background=False)
        try:
            return await body(gw)
        finally:
            await gw.close()
    return asyncio.run(run())


def cmd_keys(config: Config, args: argparse.Namespace) -> int:
    if args.keys_command == "generate":
        from .store.crypto import generate_master_key
        print(generate_master_key())
        return 0

    def progress(done: int, total: int) -> None:
        print(f"re-wrapped {done}/{total} tenant keys", file=sys.stderr, flush=True)

    async def rotate(gw: Any) -> int:
        return int(await gw.tenancy.rotate_keys(progress))

    n = _with_gateway(config, rotate)
    print(f"rotation complete: {n} tenant keys re-wrapped under master key "
          f"{_current_key_id(config)}")
    return 0


def _current_key_id(config: Config) -> str:
    from .store.crypto import MasterKeyring
    return MasterKeyring.from_text(config.master_key or "").current_id


def cmd_deadletters(config: Config, args: argparse.Namespace) -> int:
    from .delivery import RESCAN_INTERVAL

    async def body(gw: Any) -> int:
        if args.dead_command == "list":
            for d in await gw.deadletters.list(args.tenant):
                print(orjson.dumps({"id": d.id, "tenant": d.tenant, "sink": d.sink,
                                    "attempts": d.attempts, "reason": d.reason}).decode())
            return 0
        for delivery_id in args.ids:
            await gw.deadletters.replay(delivery_id)
            print(f"replayed {delivery_id} (the serving gateway picks it up within {RESCAN_INTERVAL:.0f} s)")
        return 0
    return int(_with_gateway(config, body))


class _Progress:
    """Purge progress on stderr: a bar redrawn in place on a terminal, else a line per batch."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        share = self.done / self.total if self.total else 1.0
        if self.tty:
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\rpurging [{bar:<30}] {self.done}/{self.total} call records")
        else:
            sys.stderr.write(f"purged {self.done}/{self.total} call records\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self.done:
            sys.stderr.write("\n")


def cmd_purge(config: Config, args: argparse.Namespace) -> int:
    async def body(gw: Any) -> int:
        now = datetime.now(timezone.utc)
        cutoff = gw.retention.cutoff(now)
        progress = _Progress(await gw.retention.expired(now))
        counts = await gw.retention.purge(now=now, progress=progress)
        progress.finish()
        summary = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())
        print(f"purged call records received before {cutoff.isoformat(timespec='seconds')}: {summary}")
        return 0
    return int(_with_gateway(config, body))


def cmd_reconcile(config: Config, args: argparse.Namespace) -> int:
    """Reconcile by hand, with progress on stderr. Runs in its own process: what it writes is
    delivered by the serving gateway's rescan."""
    from .delivery import RESCAN_INTERVAL
    from .privacy.breach import parse_time
    from .reconcile import ReconcileBusy, ReconcileFailed, can_reconcile

    since = parse_time(args.since, "--since") if args.since else None

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    async def body(gw: Any) -> int:
        if args.connection:
            chosen = [await gw.tenancy.connection(args.connection)]
            gw.reconciliation.source(chosen[0])  # a clear error for a system without a call list
        else:
            chosen = [c for c in await gw.tenancy.connections() if can_reconcile(gw.sources.get(c.plugin))]
        failed = written = 0
        for conn in chosen:
            print(f"reconciling {conn.plugin} connection {conn.id} (tenant {conn.tenant})", file=sys.stderr,
                  flush=True)
            try:
                result = await gw.reconciliation.run(conn, since=since, progress=progress, wait=RECONCILE_WAIT)
            except (ReconcileBusy, ReconcileFailed) as exc:
                print(f"gateway: {conn.id}: {exc}", file=sys.stderr)
                failed += 1
                continue
            written += result.created + result.completed
            print(f"{conn.id}: {result.line()}")
        if written:
            print(f"the serving gateway delivers the calls written within {RESCAN_INTERVAL:.0f} s")
        return EXIT_ERROR if failed else 0
    return int(_with_gateway(config, body))


def cmd_subject(config: Config, args: argparse.Namespace) -> int:
    from .privacy import Subject, rights

    subject = Subject.parse(phone=args.phone, email=args.email)
    changes = {name: value for name, value in (("name", args.name), ("email", args.new_email),
                                               ("extension", args.extension)) if value is not None}

    async def body(gw: Any) -> int:
        result = await rights.run(gw, args.operation, args.tenant, subject, changes or None)
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        if result.get("incomplete"):
            print(f"gateway: plugins failed: {', '.join(result['incomplete'])}", file=sys.stderr)
            return EXIT_ERROR
        return 0
    return int(_with_gateway(config, body))


def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    from .audit import parse_anchor, verify

    given = [parse_anchor(text) for text in getattr(args, "anchor", [])]

    async def body(gw: Any) -> int:
        if args.audit_command == "list":
            for entry in await gw.audit.entries(after=args.after, tenant=args.tenant):
                print(orjson.dumps(entry.to_dict()).decode())
            return 0
        stored = await gw.audit.anchor()
        verdict = verify(await gw.audit.entries(), [*given, *([stored] if stored else [])])
        if not verdict.ok:
            print(f"gateway: {verdict.line()}", file=sys.stderr)
            return EXIT_ERROR
        print(verdict.line())
        return 0
    return int(_with_gateway(config, body))


def cmd_breach(config: Config, args: argparse.Namespace) -> int:
    from .privacy import breach

    since = breach.parse_time(args.since, "--since")
    until = breach.parse_time(args.until, "--until")

    async def body(gw: Any) -> int:
        doc = await breach.report(gw, since, until)
        if args.format == "json":
            print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            sys.stdout.write(breach.as_text(doc))
        return 0
    return int(_with_gateway(config, body))


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    """Copy the SQLite installation (``GATEWAY_DATABASE``) into an empty PostgreSQL database,
    ciphertexts as they are, while no gateway serves the SQLite one; then count both sides."""
    from .store.crypto import MasterKeyring
    from .store.postgres.move import copy_sqlite
    from .store.sqlite import SQLiteDatabase

    if not is_postgres(args.to):
        print("gateway: --to must be a postgresql:// URL (see `gateway --help`)", file=sys.stderr)
        return EXIT_USAGE
    if is_postgres(config.database):
        raise GatewayError("GATEWAY_DATABASE must name the SQLite database to copy from")
    if not config.master_key:
        raise GatewayError("no master key: set GATEWAY_MASTER_KEY to the key of the SQLite installation")
    keyring = MasterKeyring.from_text(config.master_key, config.master_key_previous)

    def progress(table: str, done: int, total: int) -> None:
        if done or not total:
            print(f"copied {done}/{total} rows of {table}", file=sys.stderr, flush=True)

    async def run() -> dict[str, int]:
        source = SQLiteDatabase(config.database, keyring)
        if os.path.isfile(config.database):
            source.claim_serving()  # no gateway changes it while it is copied
        try:
            return await copy_sqlite(config.database, args.to, keyring, progress)
        finally:
            await source.close()

    counts = asyncio.run(run())
    print(f"copied {sum(counts.values())} rows of {len(counts)} tables to {public_dsn(args.to)}; "
          "verified: the row counts of both databases match. Serve it with "
          "GATEWAY_DATABASE set to that URL and the same master keys.")
    return 0


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "serve": cmd_serve, "plugins": cmd_plugins, "config": cmd_config, "keys": cmd_keys,
    "deadletters": cmd_deadletters, "purge": cmd_purge, "reconcile": cmd_reconcile, "subject": cmd_subject,
    "audit": cmd_audit, "breach-report": cmd_breach, "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    # Everything the gateway creates (database, WAL, keys, locks) holds secrets or personal
    # data: owner-only from the start, whatever umask the shell or container brought.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    try:
        config = Config.load(os.environ, args.config)
        return COMMANDS[args.command](config, args)
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"gateway: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return EXIT_ERROR
