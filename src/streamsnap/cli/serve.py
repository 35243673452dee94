"""`streamsnap serve`, the server launcher, and `streamsnap config`, a start for its config file."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamsnap import __version__
from streamsnap.config import HttpSettings, SettingsError, TlsSettings, declarations, load_settings, sample_config


def _choices(path: str) -> list[str]:
    """The values a `Literal` setting allows, as config.py declares them (a flag offers the same)."""
    return [str(choice) for choice in typing.get_args(declarations()[path].kind)]


def add_parsers(commands: Any) -> None:
    """Add `serve` and `config` to the subcommands."""
    _serve_parser(commands)
    _config_parser(commands)


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the server",
        description="Serve the WCS WebSocket protocol, the browser client and its example page. "
        "Settings come from defaults, then --config, then STREAMSNAP_* environment variables, then flags.",
    )
    serve.set_defaults(run=run)
    serve.add_argument("--config", type=Path, help="TOML file of settings (names as in docs/configuration.md)")
    serve.add_argument("--check", action="store_true",
                       help="read the settings (--config, STREAMSNAP_* variables, flags), print every problem, one "
                       "a line, or 'settings OK', and exit (status 2 if any problem) without serving")
    serve.add_argument("--host", help=f"address to listen on (default {HttpSettings.host})")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {HttpSettings.port})")
    serve.add_argument("--ice-address", action="append", dest="ice_addresses", metavar="IP",
                       help="IPv4 address to offer as ICE candidate (repeat; default: every interface)")
    serve.add_argument("--ice-server", action="append", dest="ice_servers", metavar="URL",
                       help="STUN/TURN url (repeat)")
    serve.add_argument("--public-ip", metavar="IP",
                       help="address to announce in place of local candidates (behind 1:1 NAT)")
    serve.add_argument("--tls-cert", metavar="PEM", help="certificate file: serve https + wss on --tls-port too")
    serve.add_argument("--tls-key", metavar="PEM", help="private key file of --tls-cert")
    serve.add_argument("--tls-self-signed", action="store_true", default=None,
                       help="serve https + wss with a throwaway self-signed certificate (for trying from a LAN)")
    serve.add_argument("--tls-port", type=int, help=f"https + wss port (default {TlsSettings.port})")
    serve.add_argument("--rest-port", type=int, help="also serve /rest-api/ alone on this port (WCS uses 8081)")
    serve.add_argument("--thumbnail-interval", type=float, metavar="SECONDS",
                       help="write a thumbnail of every live stream this often (default: off)")
    serve.add_argument("--thumbnail-dir", metavar="DIR", help="where thumbnails go")
    serve.add_argument("--log-level", choices=_choices("log.level"))
    serve.add_argument("--log-format", choices=_choices("log.format"))
    cluster = serve.add_argument_group("cluster", "several nodes, one namespace of streams, coordinated through Redis")
    cluster.add_argument("--redis", metavar="URL", help="join the cluster on this Redis, e.g. redis://127.0.0.1:6379/0 "
                         "(the secret comes from $STREAMSNAP_CLUSTER_SECRET or the config file)")
    cluster.add_argument("--node-id", metavar="NAME", help="this node's name in the cluster (default: the host name)")
    cluster.add_argument("--advertise-url", metavar="URL", help="where other nodes reach this one's cluster listener")
    cluster.add_argument("--cluster-port", type=int, metavar="PORT", help="port of the cluster listener (default: any)")
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="run N processes sharing --port, one node each (needs --redis)")


def _config_parser(commands: Any) -> None:
    config = commands.add_parser(
        "config", help="print a sample config file",
        description="Print every setting of serve as a TOML file: each at its default, commented out, with one "
        "line of help, the values it allows and its environment variable. A start for `serve --config FILE`.",
    )
    config.set_defaults(run=_print_sample)
    config.add_argument("--sample", action="store_true", required=True,
                        help="the sample file (streamsnap.example.toml in the source tree is this output)")


def _print_sample(args: argparse.Namespace) -> int:
    # TOML is UTF-8 whatever the terminal's locale (the help texts have a few non-ASCII characters).
    sys.stdout.buffer.write(sample_config().encode())
    sys.stdout.buffer.flush()
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags of `serve` give, by flat name (None: the flag was not given)."""
    return {
        "host": args.host, "port": args.port, "ice_addresses": args.ice_addresses,
        "ice_servers": args.ice_servers, "log_level": args.log_level, "log_format": args.log_format,
        "public_ip": args.public_ip, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
        "tls_self_signed": args.tls_self_signed, "tls_port": args.tls_port, "rest_port": args.rest_port,
        "thumbnail_interval": args.thumbnail_interval, "thumbnail_dir": args.thumbnail_dir,
        "redis_url": args.redis, "node_name": args.node_id, "advertise_url": args.advertise_url,
        "cluster_port": args.cluster_port, "workers": args.workers,
    }


def _check(args: argparse.Namespace) -> int:
    """`serve --check`: every problem of the settings `run` would read, or where the good ones come from."""
    from streamsnap.cli.problems import setting_variables, settings_problems

    overrides = _overrides(args)
    problems = settings_problems(args.config, overrides, os.environ)
    for problem in problems:
        print(f"streamsnap: {problem}", file=sys.stderr)
    if problems:
        return 2
    sources = ["defaults"]
    if args.config is not None:
        sources.append(f"config file {args.config}")
    if variables := setting_variables(os.environ):
        sources.append("environment " + ", ".join(variables))
    if flags := [name for name, value in overrides.items() if value is not None]:
        sources.append("flags for " + ", ".join(flags))
    print("settings OK: " + " < ".join(sources))
    return 0


EXAMPLE_PAGE = "/client/examples/demo/streaming/stream-snapshot/stream-snapshot.html"


def banner(log_format: str) -> Callable[..., None]:
    """How the start-up lines are printed on stdout: as they read with text logs; with `log.format = "json"`,
    one JSON object a line, as the log lines are (the same fields, plus what the line is about)."""
    if log_format != "json":
        return lambda message, **fields: print(message, flush=True)
    import json
    import logging

    from streamsnap.logs import JsonFormatter

    formatter = JsonFormatter()

    def say(message: str, **fields: str) -> None:
        record = logging.LogRecord("streamsnap.serve", logging.INFO, __file__, 0, message, None, None)
        print(json.dumps({**json.loads(formatter.format(record)), **fields}, ensure_ascii=False), flush=True)
    return say


def run(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; return the exit status."""
    if args.check:
        return _check(args)
    from streamsnap.logs import configure_logging
    from streamsnap.server.listeners import Server
    from streamsnap.server.node import ServerError

    try:
        settings = load_settings(args.config, _overrides(args))
        configure_logging(settings.log.level, settings.log.format)
    except (SettingsError, ValueError) as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 2
    from streamsnap.server.workers import WORKER_ENV, supervise

    worker = os.environ.get(WORKER_ENV)
    if settings.node.workers > 1 and worker is None:
        return supervise(settings, args.config)
    server = Server(settings, reuse_port=worker is not None)

    say = banner(settings.log.format)

    async def serve() -> None:
        await server.start()
        try:
            for listener in server.listeners:
                say(f"streamsnap {__version__}: {listener.role} on {listener.url}", listener=listener.role,
                    url=listener.url)
            if server.certificate is not None:
                say(f"self-signed certificate, SHA-256 {server.certificate.fingerprint}",
                    sha256=server.certificate.fingerprint)
            if server.certificate_file is not None:
                say(f"self-signed certificate written to {server.certificate_file} (for --cacert)",
                    certificate_file=str(server.certificate_file))
            say(f"example page: {EXAMPLE_PAGE}", path=EXAMPLE_PAGE)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await server.stop()

    try:
        if settings.node.event_loop == "uvloop":
            import uvloop

            uvloop.run(serve())
        else:
            asyncio.run(serve())
    except ServerError as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 1
    return 0
