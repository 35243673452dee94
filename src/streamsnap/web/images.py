"""The image url any tool can fetch (`GET /streams/{name}/snapshot.png|jpg|jpeg|webp`), `GET /streams`,
and the latest periodic thumbnail (`GET /streams/{name}/thumbnail.jpg`).

Query parameters are checked with msgspec; a bad one is answered 400 in plain words naming it
and its allowed range. Parameters the url does not know are ignored, so cache busters
(`?t=1700000000`, jQuery's `_=`) and dashboards' own tags do no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Annotated, TypeVar

import msgspec
from aiohttp import web

from streamsnap.access import Right
from streamsnap.config import Settings
from streamsnap.framing import Fit
from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure
from streamsnap.service.snapshots import PictureStatus, Requester
from streamsnap.web.catalog import describe
from streamsnap.web.errors import json_error, snapshot_error
from streamsnap.web.guard import authorize, http_requester, request_grant
from streamsnap.web.services import SERVICES

logger = logging.getLogger(__name__)

EXTENSIONS = {"png": ImageFormat.PNG, "jpg": ImageFormat.JPEG, "jpeg": ImageFormat.JPEG, "webp": ImageFormat.WEBP}
"Extensions of the image url (`.jpeg` is an alias of `.jpg`)."
MAX_AGE_LIMIT_MS = 3_600_000.0


class ImageQuery(msgspec.Struct, frozen=True):
    """Query parameters of the image url (all optional)."""

    width: Annotated[int, msgspec.Meta(ge=1)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    max_age_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_AGE_LIMIT_MS)] | None = None
    fit: Fit = Fit.FILL
    "With both width and height: fill (stretch, the default), contain (letterbox) or cover (centre crop)."


class BadParameter(Exception):
    """A query parameter is out of range or of the wrong type."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def allowed_values(settings: Settings) -> dict[str, str]:
    """What each query parameter of the picture urls may be, in words (for 400 answers and the docs)."""
    return {
        "width": f"a whole number of pixels from 1 to {settings.image_max_width}",
        "height": f"a whole number of pixels from 1 to {settings.image_max_height}",
        "quality": "a whole number from 1 to 100",
        "max_age_ms": f"a number of milliseconds from 0 to {MAX_AGE_LIMIT_MS:.0f}",
        "fit": " or ".join(", ".join(fit.value for fit in Fit).rsplit(", ", 1)),
        "fps": f"a number of frames per second from 0.1 to {settings.mjpeg_max_fps:g}",
    }


_Query = TypeVar("_Query", bound=msgspec.Struct)


def parse_query(query: Mapping[str, str], settings: Settings, kind: type[_Query]) -> _Query:
    """Typed, range-checked query parameters of `kind` (unknown ones ignored); raises `BadParameter`."""
    fields = kind.__struct_fields__
    known = {key: value for key, value in query.items() if key in fields}
    words = allowed_values(settings)
    try:
        parsed = msgspec.convert(known, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        field = next((name for name in fields if f"$.{name}`" in str(exc)), None)
        if field is None:
            raise BadParameter(None, f"bad query parameters: {exc}") from None
        raise BadParameter(field, f"{field} must be {words[field]}; got {known[field]!r}") from None
    maxima = {"width": settings.image_max_width, "height": settings.image_max_height, "fps": settings.mjpeg_max_fps}
    for field, maximum in maxima.items():
        value = getattr(parsed, field, None)
        if value is not None and value > maximum:
            raise BadParameter(field, f"{field} must be {words[field]}; got {known[field]!r}")
    return parsed


def image_spec(image_format: ImageFormat, query: ImageQuery) -> ImageSpec:
    """The spec of a checked query (`fit` only counts with both sides; quality not for PNG)."""
    both = query.width is not None and query.height is not None
    return ImageSpec(format=image_format, width=query.width, height=query.height,
                     quality=None if image_format is ImageFormat.PNG else query.quality,
                     fit=query.fit if both else Fit.FILL)


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


def _image_request(request: web.Request) -> tuple[str, ImageFormat, Requester, ImageQuery] | web.Response:
    """What a GET or HEAD of the image url asks (name, format, who, query), or the 400 for a bad query.

    Raises `NotAuthenticated` (answered 401 by the middleware) before the query is read, as both did.
    """
    image_format = EXTENSIONS[request.match_info["ext"]]
    grant = request_grant(request)
    try:
        query = parse_query(dict(request.query), request.app[SERVICES].settings, ImageQuery)
    except BadParameter as exc:
        return json_error(400, str(exc), field=exc.field)
    return request.match_info["name"], image_format, http_requester(request, grant), query


async def stream_image(request: web.Request) -> web.Response:
    """GET /streams/{name}/snapshot.{png,jpg,jpeg,webp}: the stream's picture now, as that file."""
    services = request.app[SERVICES]
    asked = _image_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, image_format, requester, query = asked
    spec = image_spec(image_format, query)
    max_age = services.settings.max_frame_age_ms if query.max_age_ms is None else query.max_age_ms
    try:
        picture = await services.snapshots.take(name, requester, spec, max_age_ms=max_age)
    except SnapshotError as exc:
        return snapshot_error(exc)
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


async def stream_image_head(request: web.Request) -> web.Response:
    """HEAD of the image url: the status and headers a GET would have, from the registry and the
    stream's newest frame; nothing is decoded or encoded, so it costs no more than a lookup."""
    asked = _image_request(request)
    if isinstance(asked, web.Response):
        return asked
    name, image_format, requester, query = asked
    try:
        status = await request.app[SERVICES].snapshots.status(name, requester, image_spec(image_format, query))
    except SnapshotError as exc:
        return snapshot_error(exc)
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
    services = request.app[SERVICES]
    name = request.match_info["name"]
    await authorize(request, request_grant(request), Right.SNAPSHOT, name)
    thumbnails = services.thumbnails
    if thumbnails is None:
        return json_error(404, "thumbnails are off on this server (thumbnail_interval is 0)",
                          reason="thumbnails_off")
    thumbnail = thumbnails.latest(name)
    if thumbnail is None:
        record = await services.registry.lookup(name)
        if record is None:
            return snapshot_error(SnapshotError(SnapshotFailure.STREAM_NOT_FOUND))
        if record.node != services.node.name:  # each node thumbnails the streams it holds
            return json_error(404, f"the thumbnail of this stream is kept by node {record.node!r}, which holds it",
                              reason="on_another_node")
        return json_error(404, f"no thumbnail of this stream yet (one is made every "
                          f"{services.settings.thumbnail_interval:g} s)", reason="no_thumbnail_yet")
    headers = {"Cache-Control": "no-cache", "X-Image-Width": str(thumbnail.width),
               "X-Image-Height": str(thumbnail.height), **frame_headers(thumbnail.frame_time)}
    if not_modified_since(request, thumbnail.frame_time):
        return web.Response(status=304, headers=headers)
    return web.Response(body=thumbnail.data, content_type=ImageFormat.JPEG.content_type, headers=headers)


async def list_streams(request: web.Request) -> web.Response:
    """GET /streams: every live stream (name, codec, size, fps, since, node) as a JSON list."""
    services = request.app[SERVICES]
    grant = request_grant(request)
    streams = [record for record in await services.registry.all() if grant.sees(record.name)]
    body = msgspec.json.encode([describe(record, services.sources.stats(record.name, record.lease))
                                for record in streams])
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})


def add_image_routes(app: web.Application) -> None:
    """Route the image url and the stream listing of `app`."""
    app.router.add_get("/streams", list_streams)
    image_url = "/streams/{name}/snapshot.{ext:png|jpg|jpeg|webp}"
    app.router.add_get(image_url, stream_image, allow_head=False)
    app.router.add_route("HEAD", image_url, stream_image_head)
    app.router.add_get("/streams/{name}/thumbnail.jpg", stream_thumbnail)
