"""The ``gateway`` command. Wrong usage or configuration: one line on stderr, non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from .config import Config
from .errors import GatewayError

EXIT_USAGE = 2
EXIT_ERROR = 1


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
    return p


def _dev_secrets(config: Config) -> None:
    """Create (once) and use a development master key and admin token beside the database."""
    folder = Path(config.database).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    if not config.master_key:
        from .store.crypto import generate_master_key
        key_file = folder / "dev-master.key"
        if not key_file.exists():
            key_file.write_text(generate_master_key() + "\n")
            key_file.chmod(0o600)
        config.master_key = key_file.read_text().strip()
    if not config.admin_tokens:
        token_file = folder / "dev-admin.token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(24) + "\n")
            token_file.chmod(0o600)
        config.admin_tokens = {token_file.read_text().strip(): None}
        print(f"development admin token in {token_file}", file=sys.stderr)
    print("WARNING: development mode: the master key is kept next to the database; "
          "never use --dev in production", file=sys.stderr)


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from aiohttp import web

    from . import logs
    from .app import create_app

    if args.dev:
        _dev_secrets(config)
    logs.setup(config.log_level)
    app = create_app(config)

    async def run() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()  # opens the store: a bad key or schema fails here, before listening
        site = web.TCPSite(runner, config.listen_host, config.listen_port, backlog=1024)
        await site.start()
        print(f"gateway listening on http://{config.listen_host}:{config.listen_port} "
              f"(database {config.database})", file=sys.stderr, flush=True)
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
    from .plugins import load_plugins, make_manager

    out = config.redacted()
    out["plugins"] = {info.name: config.redacted_plugin(info.name)
                      for info in load_plugins(make_manager(), config.plugins_disabled)}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


def _with_gateway(config: Config, body: Callable[[Any], Any]) -> Any:
    from .app import build_gateway

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

    async def rotate(gw: Any) -> int:
        def progress(done: int, total: int) -> None:
            print(f"re-wrapped {done}/{total} tenant keys", file=sys.stderr, flush=True)
        return int(await gw.store.rotate_keys(progress))

    n = _with_gateway(config, rotate)
    print(f"rotation complete: {n} tenant keys re-wrapped under master key "
          f"{_current_key_id(config)}")
    return 0


def _current_key_id(config: Config) -> str:
    from .store.crypto import MasterKeyring
    return MasterKeyring.from_text(config.master_key or "").current_id


def cmd_deadletters(config: Config, args: argparse.Namespace) -> int:
    async def body(gw: Any) -> int:
        if args.dead_command == "list":
            for d in await gw.store.dead_letters(args.tenant):
                print(orjson.dumps({"id": d.id, "tenant": d.tenant, "sink": d.sink,
                                    "attempts": d.attempts, "reason": d.reason}).decode())
            return 0
        for delivery_id in args.ids:
            await gw.store.replay_dead_letter(delivery_id)
            print(f"replayed {delivery_id} (delivered by the running gateway at its next start)")
        return 0
    return int(_with_gateway(config, body))


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "serve": cmd_serve, "plugins": cmd_plugins, "config": cmd_config, "keys": cmd_keys,
    "deadletters": cmd_deadletters,
}


def main(argv: Sequence[str] | None = None) -> int:
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
        print(f"gateway: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return EXIT_ERROR
