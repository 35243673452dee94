"""`GET /streams/{name}/stream.mjpeg`: a stream as MJPEG (`multipart/x-mixed-replace`), for `<img>` tags,
camera viewers and Home Assistant-style integrations.

Each part carries `Content-Type`, `Content-Length` and `X-Frame-Timestamp`; the JPEG is ended with
CRLF and the next boundary is sent right after it, because Chrome shows a part only once the
boundary after it arrives. The pictures come from `service/mjpeg.py`, which makes them once
for every watcher of the same stream and spec. Access is checked as for the image url (a token
in `Authorization` or `?access_token=`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import msgspec
from aiohttp import web

from streamsnap.framing import Fit
from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError
from streamsnap.service.mjpeg import DEFAULT_FPS, MjpegFeeds, MjpegLimits, TooManyWatchers
from streamsnap.service.snapshots import Requester
from streamsnap.web.cors import EXPOSED_HEADERS, allowed_origin
from streamsnap.web.errors import RETRY_AFTER_SECONDS, json_error, snapshot_error
from streamsnap.web.guard import http_requester, request_grant
from streamsnap.web.images import BadParameter, iso_time, parse_query
from streamsnap.web.services import SERVICES

logger = logging.getLogger(__name__)

BOUNDARY = "frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_DELIMITER = f"--{BOUNDARY}\r\n".encode()
WRITE_TIMEOUT_SECONDS = 30.0
"A watcher whose connection takes a part for longer than this is dropped."
CHECK_GONE_SECONDS = 1.0
"While no picture comes (a stalled stream), how often a watcher's connection is checked."

MJPEG = web.AppKey("mjpeg", MjpegFeeds)
"Where an application keeps its MJPEG feeds."


class MjpegQuery(msgspec.Struct, frozen=True):
    """Query parameters of the MJPEG url (all optional; unknown ones are ignored)."""

    fps: Annotated[float, msgspec.Meta(ge=0.1)] | None = None
    "Pictures per second, at most `mjpeg_max_fps`; default 5 (or `mjpeg_max_fps` when lower)."
    width: Annotated[int, msgspec.Meta(ge=1)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    fit: Fit = Fit.FILL


def part_header(data: bytes, frame_time: float) -> bytes:
    """The headers of one part (the JPEG follows, then CRLF and the next boundary)."""
    return (f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
            f"X-Frame-Timestamp: {iso_time(frame_time)}\r\n\r\n").encode()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _mjpeg_request(request: web.Request) -> tuple[str, Requester, MjpegQuery, ImageSpec] | web.Response:
    """What a GET or HEAD of the MJPEG url asks (name, who, query, the parts' spec), or the 400 for a bad query.

    Raises `NotAuthenticated` (answered 401 by the middleware) before the query is read.
    """
    grant = request_grant(request)
    try:
        query = parse_query(dict(request.query), request.app[SERVICES].settings, MjpegQuery)
    except BadParameter as exc:
        return json_error(400, str(exc), field=exc.field)
    both = query.width is not None and query.height is not None
    spec = ImageSpec(ImageFormat.JPEG, query.width, query.height, query.quality, query.fit if both else Fit.FILL)
    return request.match_info["name"], http_requester(request, grant), query, spec


async def stream_mjpeg(request: web.Request) -> web.StreamResponse:
    """GET /streams/{name}/stream.mjpeg?fps=&width=&height=&fit=&quality=: the stream as MJPEG until it ends."""
    services = request.app[SERVICES]
    feeds = request.app[MJPEG]
    asked = _mjpeg_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, requester, query, spec = asked
    fps = query.fps if query.fps is not None else min(DEFAULT_FPS, services.settings.mjpeg_max_fps)
    try:
        watcher = await feeds.watch(name, requester, spec, fps)
    except TooManyWatchers as exc:
        return json_error(429 if exc.per_stream else 503, str(exc), reason="too_many_watchers",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    except SnapshotError as exc:
        return snapshot_error(exc)
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    origin = allowed_origin(request.headers.get("Origin"), services.settings.cors_origins)
    if origin is not None:  # the CORS middleware cannot add headers to an answer already under way
        headers |= {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS,
                    "Vary": "Origin"}
    response = web.StreamResponse(headers=headers)
    loop = asyncio.get_running_loop()
    try:
        await response.prepare(request)
        await response.write(_DELIMITER)
        while True:
            try:
                picture = await asyncio.wait_for(watcher.next_picture(), CHECK_GONE_SECONDS)
            except TimeoutError:
                if _gone(request):
                    return response
                continue
            if picture is None:
                break
            sent = loop.time()
            data = picture.snapshot.data
            part = b"".join((part_header(data, picture.frame_time), data, b"\r\n", _DELIMITER))
            await asyncio.wait_for(response.write(part), WRITE_TIMEOUT_SECONDS)
            # A little under 1/fps: the feed sets the pace; this only holds back a watcher slower than it.
            await asyncio.sleep(max(0.0, sent + 0.9 / watcher.fps - loop.time()))
        await response.write_eof()  # the stream ended: the answer ends cleanly
    except (ConnectionError, TimeoutError) as exc:
        logger.debug("MJPEG watcher of %s left: %s", name, exc or type(exc).__name__, extra={"stream": name})
    finally:
        feeds.leave(watcher)
    return response


async def stream_mjpeg_head(request: web.Request) -> web.Response:
    """HEAD of the MJPEG url: whether a GET would play, from the stream's record (no watcher, no picture)."""
    asked = _mjpeg_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, requester, _, spec = asked
    try:
        await request.app[SERVICES].snapshots.status(name, requester, spec)
    except SnapshotError as exc:
        return snapshot_error(exc)
    return web.Response(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


async def _close_feeds(app: web.Application) -> None:
    await app[MJPEG].close()


def add_mjpeg_routes(app: web.Application) -> None:
    """Route the MJPEG url of `app` (whose `SERVICES` are set) and end its feeds on shutdown."""
    services = app[SERVICES]
    settings = services.settings
    app[MJPEG] = services.mjpeg = MjpegFeeds(MjpegLimits(
        max_fps=settings.mjpeg_max_fps, max_watchers_per_stream=settings.mjpeg_max_watchers_per_stream,
        max_watchers=settings.mjpeg_max_watchers), services.snapshots)
    app.on_shutdown.append(_close_feeds)
    app.router.add_get("/streams/{name}/stream.mjpeg", stream_mjpeg, allow_head=False)
    app.router.add_route("HEAD", "/streams/{name}/stream.mjpeg", stream_mjpeg_head)
