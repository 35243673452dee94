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
import socket

from aiohttp import web

from streamsnap.picture import ImageFormat, ImageSpec, PictureQuery
from streamsnap.service.mjpeg import DEFAULT_FPS, TooManyWatchers
from streamsnap.service.snapshots import Requester
from streamsnap.web.cors import EXPOSED_HEADERS, allowed_origin
from streamsnap.web.errors import RETRY_AFTER_SECONDS, counted_as_picture, json_error
from streamsnap.web.guard import http_requester, request_grant
from streamsnap.web.images import iso_time, picture_query
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)

BOUNDARY = "frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
_DELIMITER = f"--{BOUNDARY}\r\n".encode()
SEND_BUFFER_BYTES = 256 * 1024
"The socket send buffer of an MJPEG answer (a 4K part is about this size)."
CHECK_GONE_SECONDS = 1.0
"While no picture comes (a stalled stream), how often a watcher's connection is checked."

def part_header(data: bytes, frame_time: float) -> bytes:
    """The headers of one part (the JPEG follows, then CRLF and the next boundary)."""
    return (f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
            f"X-Frame-Timestamp: {iso_time(frame_time)}\r\n\r\n").encode()


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _mjpeg_request(request: web.Request) -> tuple[str, Requester, PictureQuery, ImageSpec]:
    """What a GET or HEAD of the MJPEG url asks: name, who, query, the parts' spec.

    Raises `NotAuthenticated` before the query is read (both answered by the middleware).
    """
    grant = request_grant(request)
    query = picture_query(request)
    return request.match_info["name"], http_requester(request, grant), query, query.spec(ImageFormat.JPEG)


@counted_as_picture
async def stream_mjpeg(request: web.Request) -> web.StreamResponse:
    """GET /streams/{name}/stream.mjpeg?fps=&width=&height=&fit=&quality=: the stream as MJPEG until it ends."""
    node = request.app[NODE]
    name, requester, query, spec = _mjpeg_request(request)
    fps = query.fps if query.fps is not None else min(DEFAULT_FPS, node.settings.mjpeg.max_fps)
    try:
        watcher = await node.mjpeg.watch(name, requester, spec, fps)
    except TooManyWatchers as exc:
        return json_error(429 if exc.per_stream else 503, str(exc), reason=f"too_many_{exc.what.replace(' ', '_')}",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    origin = allowed_origin(request.headers.get("Origin"), node.settings.http.cors_origins)
    if origin is not None:  # the CORS middleware cannot add headers to an answer already under way
        headers |= {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS,
                    "Vary": "Origin"}
    response = web.StreamResponse(headers=headers)
    loop = asyncio.get_running_loop()
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None:
        # Latest wins: a deep send buffer only holds old parts (the kernel grows one to megabytes on a
        # fast link), and a watcher that stops reading is noticed once this much is waiting.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
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
            try:
                await asyncio.wait_for(response.write(part), node.settings.mjpeg.write_timeout)
            except TimeoutError:
                # A watcher that stopped reading: its slot is freed below, and its connection with it (the
                # part it would not take stays buffered otherwise, and the socket open).
                if request.transport is not None:
                    request.transport.abort()
                raise
            # A little under 1/fps: the feed sets the pace; this only holds back a watcher slower than it.
            await asyncio.sleep(max(0.0, sent + 0.9 / watcher.fps - loop.time()))
        await response.write_eof()  # the stream ended: the answer ends cleanly
    except (ConnectionError, TimeoutError) as exc:
        logger.debug("MJPEG watcher of %s left: %s", name, exc or type(exc).__name__, extra={"stream": name})
    finally:
        node.mjpeg.leave(watcher)
    return response


@counted_as_picture
async def stream_mjpeg_head(request: web.Request) -> web.Response:
    """HEAD of the MJPEG url: whether a GET would play, from the stream's record (no watcher, no picture)."""
    name, requester, _, spec = _mjpeg_request(request)
    await request.app[NODE].snapshots.status(name, requester, spec)
    return web.Response(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def add_mjpeg_routes(app: web.Application) -> None:
    """Route the MJPEG url of `app` (the node's feeds end when the node closes)."""
    app.router.add_get("/streams/{name}/stream.mjpeg", stream_mjpeg, allow_head=False)
    app.router.add_route("HEAD", "/streams/{name}/stream.mjpeg", stream_mjpeg_head)
