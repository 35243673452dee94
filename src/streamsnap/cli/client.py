"""`streamsnap publish` and `streamsnap snapshot`: a WebRTC test client of the WCS protocol.

Each command is one session with a server, as a browser would open it: `publish` sends a test
pattern or a video file with aiortc, `snapshot` asks for a picture and writes it as a file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamsnap.cli.arguments import bounded_int, seconds

TOKEN_ENV = "STREAMSNAP_TOKEN"


class UsageError(Exception):
    """A mistake in the command line found after parsing (exit status 2)."""


def _ws_url(text: str) -> str:
    """A ws:// or wss:// url with a host (argparse type)."""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https"):
        secure = "s" if parts.scheme == "https" else ""
        raise argparse.ArgumentTypeError(f"{text!r} is an http url; the signaling url starts with ws{secure}://")
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ws:// or wss:// url, e.g. ws://127.0.0.1:8080/")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number or out of range
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port") from None
    return text


def _stream_name(text: str) -> str:
    """A stream name, without the spaces around it (argparse type): an empty one is a mistake, not a request."""
    name = text.strip()
    if not name:
        raise argparse.ArgumentTypeError("the stream name is empty")
    return name


SHOWN_NAME_LENGTH = 40
"Characters of a stream name messages show (the server takes 256; the rest is left out)."


def shown(name: str) -> str:
    """`name` as messages show it: its first `SHOWN_NAME_LENGTH` characters, and "…" when there are more."""
    return name if len(name) <= SHOWN_NAME_LENGTH else name[:SHOWN_NAME_LENGTH] + "…"


PATTERN_SIDES = (16, 4096)


def _size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, even numbers within PATTERN_SIDES (argparse type)."""
    width, separator, height = text.lower().partition("x")
    if not separator or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, not {text!r}")
    low, high = PATTERN_SIDES
    sides = int(width), int(height)
    if not all(low <= side <= high and side % 2 == 0 for side in sides):
        raise argparse.ArgumentTypeError(f"{text}: width and height must be even numbers from {low} to {high}")
    return sides


def _add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"access token, when the server requires one (default: ${TOKEN_ENV})")


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    """The url and name arguments and the connection options of publish and snapshot."""
    parser.add_argument("url", type=_ws_url,
                        help="the server's signaling url: ws://HOST:PORT/ (any path), wss://HOST:PORT/ with TLS")
    parser.add_argument("name", type=_stream_name, help="stream name (spaces around it are left out)")
    _add_token_option(parser)
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cacert", type=Path, metavar="PEM",
                       help="trust the certificate(s) in this file for wss:// (e.g. the file a --tls-self-signed "
                       "server writes, named in its start-up lines)")
    trust.add_argument("--insecure", action="store_true",
                       help="wss:// without checking the server's certificate (a --tls-self-signed server)")


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS trust `args` asks for (None: the system's); raises UsageError for an unreadable --cacert."""
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if args.cacert is not None:
        try:
            return ssl.create_default_context(cafile=str(args.cacert))
        except ssl.SSLError:
            raise UsageError(f"--cacert {args.cacert}: no PEM certificate in it") from None
        except OSError as exc:
            raise UsageError(f"--cacert {args.cacert}: {exc.strerror or exc}") from None
    return None


# Shown by --help; a test runs each line as written (against a server on 8080 and 8443).
PUBLISH_EXAMPLES = """\
examples:
  streamsnap publish ws://127.0.0.1:8080/ demo
  streamsnap publish ws://127.0.0.1:8080/ small --size 320x240 --codec H264 --duration 3
  streamsnap publish ws://127.0.0.1:8080/ clip --file clip.webm --once
  streamsnap publish wss://127.0.0.1:8443/ demo-tls --insecure --duration 3
"""

SNAPSHOT_EXAMPLES = """\
examples:
  streamsnap snapshot ws://127.0.0.1:8080/ demo -o demo.png
  streamsnap snapshot ws://127.0.0.1:8080/ demo -o thumb.jpg --width 320 --quality 70
  streamsnap snapshot ws://127.0.0.1:8080/ demo -o tile.webp --width 200 --height 200 --fit cover
  streamsnap snapshot ws://127.0.0.1:8080/ demo -o - --format jpg > demo.jpg
  streamsnap snapshot wss://127.0.0.1:8443/ demo -o demo-tls.png --insecure
"""


def add_parsers(commands: Any) -> None:
    """Add `publish` and `snapshot` to the subcommands."""
    _publish_parser(commands)
    _snapshot_parser(commands)


def _publish_parser(commands: Any) -> None:
    publish = commands.add_parser(
        "publish", help="publish a test pattern or a video file",
        description="Publish a stream over WebRTC with aiortc, as a browser would, until interrupted\n"
        "(or --duration, or the end of --file with --once).",
        epilog=PUBLISH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.set_defaults(run=_run(_publish))
    _add_client_options(publish)
    source = publish.add_mutually_exclusive_group()
    source.add_argument("--pattern", action="store_true", help="moving test pattern with a frame counter (default)")
    source.add_argument("--file", type=Path,
                        help="video file to play (any format FFmpeg reads), looped without a gap unless --once")
    publish.add_argument("--once", action="store_true", help="with --file: play it once, then unpublish and exit")
    publish.add_argument("--codec", choices=["VP8", "H264"], help="video codec to insist on")
    publish.add_argument("--size", type=_size, default=(640, 480), metavar="WxH",
                         help="pattern size WIDTHxHEIGHT (default 640x480)")
    publish.add_argument("--duration", type=seconds(zero_ok=False), metavar="SECONDS",
                         help="stop after this many seconds")


def _snapshot_parser(commands: Any) -> None:
    from streamsnap.cli.imagefile import FileFormat, Fit

    snapshot = commands.add_parser(
        "snapshot", help="save a picture of a live stream",
        description="Ask the server for a snapshot of a stream over the WCS protocol (which answers with a\n"
        "PNG) and write it, converted here when another format or size is asked for.\n"
        "Exits 1 with the server's info string when the snapshot fails, 2 for a mistake in the command line.",
        epilog=SNAPSHOT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    snapshot.set_defaults(run=_run(_snapshot))
    _add_client_options(snapshot)
    snapshot.add_argument("-o", "--output", required=True, metavar="FILE",
                          help="file to write, its format from its extension (.png, .jpg, .jpeg, .webp); "
                          "- for standard output")
    snapshot.add_argument("--format", choices=[f.value for f in FileFormat],
                          help="file format, whatever the extension (default: from -o; png for -)")
    snapshot.add_argument("--width", type=bounded_int(1, 16384), help="picture width in pixels")
    snapshot.add_argument("--height", type=bounded_int(1, 16384), help="picture height in pixels")
    snapshot.add_argument("--fit", choices=[f.value for f in Fit], default=Fit.FILL.value,
                          help="with --width and --height: fill stretches (default), contain letterboxes, "
                          "cover crops the centre")
    snapshot.add_argument("--quality", type=bounded_int(1, 100), help="jpg/webp quality 1-100 (default 85/80)")
    snapshot.add_argument("--timeout", type=seconds(zero_ok=False), default=10.0, metavar="SECONDS",
                          help="seconds to wait (default 10)")


PUBLISH_TIMEOUT = 20.0
"Seconds for a publication to reach PUBLISHING (media flowing)."


async def _publish(args: argparse.Namespace) -> int:
    from streamsnap.media.pattern import FileTrack, PatternTrack, VideoFileError
    from streamsnap.wcsclient import PublishFailed, WcsClient

    if args.once and args.file is None:
        raise UsageError("--once goes with --file")
    track: FileTrack | PatternTrack
    if args.file is not None:
        try:
            track = await asyncio.to_thread(FileTrack, args.file, loop=not args.once)
        except VideoFileError as exc:
            raise UsageError(str(exc)) from None
    else:
        track = PatternTrack(*args.size)
    client = await WcsClient.connect(args.url, ssl_context=_ssl_context(args), authToken=args.token)
    try:
        try:
            # A refusal (a `fail`, a FAILED status) ends the wait as soon as it comes.
            publication = await client.publish(args.name, [track], codec=args.codec, timeout=PUBLISH_TIMEOUT)
        except TimeoutError:
            print(f"streamsnap: {shown(args.name)}: not PUBLISHING within {PUBLISH_TIMEOUT:g} s", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the line is out: from then on Ctrl-C unpublishes
            loop.add_signal_handler(sig, stop.set)
        print(f"PUBLISHING {args.name}", flush=True)
        track.on("ended", stop.set)  # the file's end with --once
        ended = asyncio.ensure_future(client.wait_status(publication, "UNPUBLISHED", timeout=10**9))
        stopper = asyncio.ensure_future(stop.wait())
        waiters: set[asyncio.Future[Any]] = {ended, stopper, client.closed}
        await asyncio.wait(waiters, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
        if client.closed.done() and not ended.done():
            ended.cancel()
            stopper.cancel()
            print(f"streamsnap: {args.url}: the server closed the session", file=sys.stderr)
            return 1
        if ended.done():
            stopper.cancel()
            ended.exception()
            detail = f"{publication.status} {publication.info}".strip()
            print(f"streamsnap: {shown(args.name)}: the server ended the stream: {detail}", file=sys.stderr)
            return 1
        ended.cancel()
        stopper.cancel()
        await client.unpublish(publication)
        with contextlib.suppress(PublishFailed, TimeoutError):
            await client.wait_status(publication, "UNPUBLISHED", timeout=5)
        print(f"UNPUBLISHED {args.name}", flush=True)
        return 0
    except PublishFailed as exc:
        print(f"streamsnap: publish of {shown(args.name)} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        track.stop()
        await client.close()


async def _snapshot(args: argparse.Namespace) -> int:
    from streamsnap.cli.imagefile import Conversion, FileFormat, Fit, convert, format_for
    from streamsnap.wcsclient import SnapshotFailed, WcsClient

    try:
        file_format = format_for(args.output, FileFormat(args.format) if args.format else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.quality is not None and file_format == "png":
        raise UsageError("--quality applies to jpg and webp, not png")
    conversion = Conversion(file_format, args.width, args.height, Fit(args.fit), args.quality)
    ssl_context = _ssl_context(args)
    client = await WcsClient.connect(args.url, timeout=args.timeout, ssl_context=ssl_context, authToken=args.token)
    try:
        picture = await client.snapshot(args.name, timeout=args.timeout)
    except SnapshotFailed as exc:  # a `snapshotFailed`, or a `fail` of the request: at once either way
        print(f"streamsnap: snapshot failed: {exc.info}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"streamsnap: {shown(args.name)}: no answer within {args.timeout:g} s", file=sys.stderr)
        return 1
    finally:
        await client.close()
    data, (width, height) = await asyncio.to_thread(convert, picture.png, conversion)
    age = picture.payload.get("frameAgeMs")
    summary = f"{width}x{height}" + (f", frame age {age:.1f} ms" if isinstance(age, int | float) else "")
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        print(f"-: {summary}", file=sys.stderr)
        return 0
    try:
        await asyncio.to_thread(Path(args.output).write_bytes, data)
    except OSError as exc:
        print(f"streamsnap: {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {summary}")
    return 0


def _run(command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[[argparse.Namespace], int]:
    """`command` as the synchronous `run` of its subcommand: one session on a loop of its own."""
    def run(args: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.WARNING)
        try:
            return asyncio.run(_client_errors(args, command(args)))
        except KeyboardInterrupt:
            return 130
    return run


async def _client_errors(args: argparse.Namespace, command: Awaitable[int]) -> int:
    """Run a client command; what goes wrong is one line on stderr and the exit status."""
    import aiohttp

    from streamsnap.wcsclient import SessionRefused

    url = args.url
    try:
        return await command
    except UsageError as exc:
        message, status = str(exc), 2
    except SessionRefused as exc:
        message, status = f"{url}: session refused: {exc.info}", 1
    except aiohttp.WSServerHandshakeError as exc:
        parts = urlsplit(url)
        message = (f"{url}: not a signaling url (the server answered HTTP {exc.status} instead of a "
                   f"WebSocket); try {parts.scheme}://{parts.netloc}/")
        status = 1
    except aiohttp.ClientConnectorCertificateError as exc:
        message = (f"{url}: the server's certificate is not trusted ({exc.certificate_error}); "
                   "use --cacert FILE, or --insecure for a self-signed server")
        status = 1
    except aiohttp.ClientConnectorError as exc:
        message, status = f"{url}: cannot connect: {_os_reason(exc.os_error)}", 1
    except (aiohttp.ClientError, OSError) as exc:
        message, status = f"{url}: {exc or type(exc).__name__}", 1
    except TimeoutError:
        message, status = f"{url}: no answer within {args.timeout if hasattr(args, 'timeout') else 10:g} s", 1
    print(f"streamsnap: {message}", file=sys.stderr)
    return status


def _os_reason(error: OSError) -> str:
    """The system's words for a failed connection ("Connection refused", "Name or service not known")."""
    if isinstance(error, socket.gaierror) or not error.errno or error.errno < 0:
        return str(error.strerror or error)
    return os.strerror(error.errno)
