"""The `streamsnap` command: serve, publish, snapshot, token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from streamsnap import __version__
from streamsnap.config import Settings, SettingsError, load_settings


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the server",
        description="Serve the WCS WebSocket protocol, the browser client and its example page. "
        "Settings come from defaults, then --config, then STREAMSNAP_* environment variables, then flags.",
    )
    serve.add_argument("--config", type=Path, help="TOML file of settings (names as in the README table)")
    serve.add_argument("--host", help=f"address to listen on (default {Settings.host})")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {Settings.port})")
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
    serve.add_argument("--tls-port", type=int, help=f"https + wss port (default {Settings.tls_port})")
    serve.add_argument("--rest-port", type=int, help="also serve /rest-api/ alone on this port (WCS uses 8081)")
    serve.add_argument("--thumbnail-interval", type=float, metavar="SECONDS",
                       help="write a thumbnail of every live stream this often (default: off)")
    serve.add_argument("--thumbnail-dir", metavar="DIR", help="where thumbnails go")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", choices=["text", "json"])


TOKEN_ENV = "STREAMSNAP_TOKEN"


def _add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"access token, when the server requires one (default: ${TOKEN_ENV})")


def _publish_parser(commands: Any) -> None:
    publish = commands.add_parser(
        "publish", help="publish a test pattern or a video file",
        description="Publish a stream over WebRTC with aiortc, as a browser would, until interrupted.",
    )
    publish.add_argument("url", help="server WebSocket url, e.g. ws://127.0.0.1:8080/")
    publish.add_argument("name", help="stream name")
    source = publish.add_mutually_exclusive_group()
    source.add_argument("--pattern", action="store_true", help="moving test pattern with a frame counter (default)")
    source.add_argument("--file", type=Path, help="video file to loop (any format FFmpeg reads)")
    publish.add_argument("--codec", choices=["VP8", "H264"], help="video codec to insist on")
    publish.add_argument("--size", default="640x480", help="pattern size WIDTHxHEIGHT (default 640x480)")
    publish.add_argument("--duration", type=float, help="stop after this many seconds")
    _add_token_option(publish)


def _snapshot_parser(commands: Any) -> None:
    snapshot = commands.add_parser(
        "snapshot", help="save a picture of a live stream",
        description="Ask the server for a snapshot of a stream over the WCS protocol and write the PNG. "
        "Exits 1 with the server's info string when the snapshot fails.",
    )
    snapshot.add_argument("url", help="server WebSocket url, e.g. ws://127.0.0.1:8080/")
    snapshot.add_argument("name", help="stream name")
    snapshot.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    snapshot.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    _add_token_option(snapshot)


def _token_parser(commands: Any) -> None:
    token = commands.add_parser(
        "token", help="print an access token",
        description="Sign an access token with the server's auth_secret (from --config or "
        "STREAMSNAP_AUTH_SECRET) and print it, for clients of a server with access control on.",
    )
    token.add_argument("rights", nargs="+", choices=["publish", "snapshot", "manage"], help="what it allows")
    token.add_argument("--config", type=Path, help="TOML file of settings, as for serve")
    token.add_argument("--stream", action="append", dest="streams", metavar="PATTERN", default=[],
                       help="stream name pattern the rights cover, e.g. 'cam-*' (repeat; default: every stream)")
    token.add_argument("--ttl", type=float, default=3600.0,
                       help="seconds the token is valid (default 3600; 0: no expiry)")
    token.add_argument("--subject", help="the token's `sub`, shown in the server's logs")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="streamsnap", description="Still pictures of live WebRTC streams.")
    parser.add_argument("--version", action="version", version=f"streamsnap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _publish_parser(commands)
    _snapshot_parser(commands)
    _token_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from streamsnap.logs import configure_logging
    from streamsnap.web.server import Server, ServerError

    try:
        settings = load_settings(args.config, {
            "host": args.host, "port": args.port, "ice_addresses": args.ice_addresses,
            "ice_servers": args.ice_servers, "log_level": args.log_level, "log_format": args.log_format,
            "public_ip": args.public_ip, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
            "tls_self_signed": args.tls_self_signed, "tls_port": args.tls_port, "rest_port": args.rest_port,
            "thumbnail_interval": args.thumbnail_interval, "thumbnail_dir": args.thumbnail_dir,
        })
        configure_logging(settings.log_level, settings.log_format)
    except (SettingsError, ValueError) as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 2
    server = Server(settings)

    async def run() -> None:
        await server.start()
        try:
            for listener in server.listeners:
                print(f"streamsnap {__version__}: {listener.role} on "
                      f"{listener.scheme}://{settings.host}:{listener.port}/", flush=True)
            if server.certificate is not None:
                print(f"self-signed certificate, SHA-256 {server.certificate.fingerprint}", flush=True)
            print("example page: /client/examples/demo/streaming/stream-snapshot/stream-snapshot.html", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await server.stop()

    try:
        if settings.event_loop == "uvloop":
            import uvloop

            uvloop.run(run())
        else:
            asyncio.run(run())
    except ServerError as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 1
    return 0


async def _publish(args: argparse.Namespace) -> int:
    from aiortc.contrib.media import MediaPlayer

    from streamsnap.media.pattern import PatternTrack
    from streamsnap.wcsclient import PublishFailed, WcsClient

    player = None
    if args.file is not None:
        player = MediaPlayer(str(args.file), loop=True)
        if player.video is None:
            print(f"streamsnap: {args.file} has no video", file=sys.stderr)
            return 2
        track = player.video
    else:
        width, _, height = args.size.partition("x")
        track = PatternTrack(int(width), int(height))
    client = await WcsClient.connect(args.url, authToken=args.token)
    try:
        publication = await client.publish(args.name, [track], codec=args.codec)
        print(f"PUBLISHING {args.name}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ended = asyncio.ensure_future(client.wait_status(publication, "UNPUBLISHED", timeout=10**9))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ended, stopper}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            exc = ended.exception()
            print(f"{publication.status} {publication.info}".strip(), file=sys.stderr)
            return 1 if exc is not None else 0
        ended.cancel()
        stopper.cancel()
        await client.unpublish(publication)
        with contextlib.suppress(PublishFailed, TimeoutError):
            await client.wait_status(publication, "UNPUBLISHED", timeout=5)
        print(f"UNPUBLISHED {args.name}", flush=True)
        return 0
    except PublishFailed as exc:
        print(f"streamsnap: publish failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
        if player is not None and player.video is not None:
            player.video.stop()


async def _snapshot(args: argparse.Namespace) -> int:
    from streamsnap.wcsclient import SnapshotFailed, WcsClient

    client = await WcsClient.connect(args.url, authToken=args.token)
    try:
        picture = await client.snapshot(args.name, timeout=args.timeout)
    except SnapshotFailed as exc:
        print(f"streamsnap: snapshot failed: {exc.info}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"streamsnap: no answer within {args.timeout} s", file=sys.stderr)
        return 1
    finally:
        await client.close()
    args.output.write_bytes(picture.png)
    payload = picture.payload
    print(f"{args.output}: {payload.get('width')}x{payload.get('height')}, "
          f"frame age {payload.get('frameAgeMs')} ms")
    return 0


def _token(args: argparse.Namespace) -> int:
    from streamsnap.access import TokenPolicy

    try:
        settings = load_settings(args.config, {})
    except (SettingsError, ValueError) as exc:
        print(f"streamsnap: {exc}", file=sys.stderr)
        return 2
    if not settings.auth_secret:
        print("streamsnap: no auth_secret configured (set STREAMSNAP_AUTH_SECRET or use --config)", file=sys.stderr)
        return 2
    policy = TokenPolicy(settings.auth_secret, issuer=settings.auth_issuer)
    print(policy.issue(args.rights, streams=args.streams, subject=args.subject, ttl=args.ttl or None))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamsnap` command."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        return _token(args)
    from streamsnap.wcsclient import SessionRefused

    logging.basicConfig(level=logging.WARNING)
    runner = _publish if args.command == "publish" else _snapshot
    try:
        return asyncio.run(runner(args))
    except SessionRefused as exc:
        print(f"streamsnap: {args.url}: session refused: {exc.info}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"streamsnap: {args.url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
