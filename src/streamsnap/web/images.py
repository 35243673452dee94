"""The image url any tool can fetch (`GET /streams/{name}/snapshot.png|jpg|jpeg|webp`), `GET /streams`,
and the latest periodic thumbnail (`GET /streams/{name}/thumbnail.jpg`).

Query parameters are read by `picture.parse_query` (a bad one is answered 400 naming it and its
allowed range); refusals are raised and answered by the middleware (`web/errors.py`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime

import msgspec
from aiohttp import web

from streamsnap.access import Right
from streamsnap.picture import EXTENSIONS, ImageFormat, PictureQuery, QueryLimits, parse_query
from streamsnap.reasons import SnapshotError, SnapshotFailure
from streamsnap.service.node import Node
from streamsnap.service.snapshots import BAD_REQUEST, PictureStatus, Requester
from streamsnap.web.catalog import describe
from streamsnap.web.errors import counted_as_picture, json_error
from streamsnap.web.guard import authorize, http_requester, request_grant
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)


def query_limits(node: Node) -> QueryLimits:
    """The largest sizes and frame rate the node's picture urls take."""
    return QueryLimits(node.settings.snapshots.max_width, node.settings.snapshots.max_height,
                       node.settings.mjpeg.max_fps)


def picture_query(request: web.Request) -> PictureQuery:
    """The request's picture parameters; raises `BadQuery` (answered 400 by the middleware, and counted as a
    picture request answered `bad_request` when the handler is `counted_as_picture`)."""
    return parse_query(request.query, query_limits(request.app[NODE]))


def http_date(timestamp: float) -> str:
    """An HTTP date (`Last-Modified`) of a Unix time."""
    return formatdate(timestamp, usegmt=True)


def iso_time(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds (`X-Frame-Timestamp`), as `since` and `taken_at` are written."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame_headers(frame_time: float) -> dict[str, str]:
    """`Last-Modified` and `X-Frame-Timestamp` of a picture whose frame arrived at `frame_time`."""
    return {"Last-Modified": http_date(frame_time), "X-Frame-Timestamp": iso_time(frame_time)}


def not_modified_since(request: web.Request, frame_time: float) -> bool:
    """Whether the request's `If-Modified-Since` is at or after `frame_time` (to the second)."""
    header = request.headers.get("If-Modified-Since")
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(frame_time) <= since


def _image_request(request: web.Request) -> tuple[str, ImageFormat, Requester, PictureQuery]:
    """What a GET or HEAD of the image url asks: name, format, who, query.

    Raises `NotAuthenticated` before the query is read (both answered by the middleware).
    """
    image_format = EXTENSIONS[request.match_info["ext"]]
    grant = request_grant(request)
    return request.match_info["name"], image_format, http_requester(request, grant), picture_query(request)


@counted_as_picture
async def stream_image(request: web.Request) -> web.Response:
    """GET /streams/{name}/snapshot.{png,jpg,jpeg,webp}: the stream's picture now, as that file."""
    node = request.app[NODE]
    name, image_format, requester, query = _image_request(request)
    max_age = node.settings.snapshots.max_frame_age_ms if query.max_age_ms is None else query.max_age_ms
    picture = await node.snapshots.take(name, requester, query.spec(image_format), max_age_ms=max_age)
    snapshot = picture.snapshot
    return web.Response(
        body=snapshot.data,
        content_type=image_format.content_type,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Age-Ms": f"{picture.age_ms:.1f}",
            "X-Image-Width": str(snapshot.width),
            "X-Image-Height": str(snapshot.height),
            **frame_headers(picture.frame_time),
        },
    )


@counted_as_picture
async def stream_image_head(request: web.Request) -> web.Response:
    """HEAD of the image url: the status and headers a GET would have, from the registry and the
    stream's newest frame; nothing is decoded or encoded, so it costs no more than a lookup."""
    name, image_format, requester, query = _image_request(request)
    status = await request.app[NODE].snapshots.status(name, requester, query.spec(image_format))
    return web.Response(status=200, content_type=image_format.content_type, headers=status_headers(status))


def status_headers(status: PictureStatus) -> dict[str, str]:
    """The headers a HEAD answer can give without a picture."""
    headers = {"Cache-Control": "no-store"}
    if status.size is not None:
        headers["X-Image-Width"], headers["X-Image-Height"] = str(status.size[0]), str(status.size[1])
    if status.frame_time is not None:
        headers.update(frame_headers(status.frame_time))
    return headers


async def stream_thumbnail(request: web.Request) -> web.Response:
    """GET /streams/{name}/thumbnail.jpg: the latest periodic thumbnail, as the thumbnailer made it
    (no decode on request); 404 with the reason when thumbnails are off or none was made yet."""
    node = request.app[NODE]
    name = request.match_info["name"]
    await authorize(request, request_grant(request), Right.SNAPSHOT, name)
    thumbnails = node.thumbnails
    if thumbnails is None:
        return json_error(404, "thumbnails are off on this server (thumbnail_interval is 0)",
                          reason="thumbnails_off")
    thumbnail = thumbnails.latest(name)
    if thumbnail is None:
        record = await node.registry.lookup(name)
        if record is None:
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
        if record.node != node.name:  # each node thumbnails the streams it holds
            return json_error(404, f"the thumbnail of this stream is kept by node {record.node!r}, which holds it",
                              reason="on_another_node")
        return json_error(404, f"no thumbnail of this stream yet (one is made every "
                          f"{node.settings.thumbnails.interval:g} s)", reason="no_thumbnail_yet")
    headers = {"Cache-Control": "no-cache", "X-Image-Width": str(thumbnail.width),
               "X-Image-Height": str(thumbnail.height), **frame_headers(thumbnail.frame_time)}
    if not_modified_since(request, thumbnail.frame_time):
        return web.Response(status=304, headers=headers)
    return web.Response(body=thumbnail.data, content_type=ImageFormat.JPEG.content_type, headers=headers)


async def list_streams(request: web.Request) -> web.Response:
    """GET /streams: every live stream (name, codec, size, fps, since, node) as a JSON list."""
    node = request.app[NODE]
    grant = request_grant(request)
    streams = [record for record in await node.registry.all() if grant.sees(record.name)]
    body = msgspec.json.encode([describe(record, node.sources.stats(record.name, record.lease))
                                for record in streams])
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


FORMATS_TAKEN = "the image url takes .png, .jpg, .jpeg or .webp"


async def unknown_format(request: web.Request) -> web.Response:
    """GET /streams/{name}/snapshot.gif (any other extension, or none): 404 naming the formats there are."""
    request.app[NODE].snapshots.refused_before(BAD_REQUEST)
    return json_error(404, FORMATS_TAKEN, reason="unsupported_format")


def add_image_routes(app: web.Application) -> None:
    """Route the image url and the stream listing of `app`."""
    app.router.add_get("/streams", list_streams)
    image_url = "/streams/{name}/snapshot.{ext:" + "|".join(EXTENSIONS) + "}"
    app.router.add_get(image_url, stream_image, allow_head=False)
    app.router.add_route("HEAD", image_url, stream_image_head)
    # After it: any other extension is a picture asked in a format there is not (not "no such resource").
    app.router.add_get("/streams/{name}/snapshot{ext:(\\.[^/]*)?}", unknown_format)
    app.router.add_get("/streams/{name}/thumbnail.jpg", stream_thumbnail)
