"""The image url any tool can fetch (`GET /streams/{name}/snapshot.png|jpg|webp`) and `GET /streams`."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from aiohttp import web

from streamsnap.config import Settings
from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError
from streamsnap.web.catalog import describe
from streamsnap.web.errors import json_error, snapshot_error
from streamsnap.web.guard import http_requester, request_grant
from streamsnap.web.services import SERVICES

logger = logging.getLogger(__name__)

EXTENSIONS = {"png": ImageFormat.PNG, "jpg": ImageFormat.JPEG, "webp": ImageFormat.WEBP}
MAX_AGE_LIMIT_MS = 3_600_000.0


class ImageQuery(msgspec.Struct, frozen=True):
    """Query parameters of the image url (all optional)."""

    width: Annotated[int, msgspec.Meta(ge=1)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    max_age_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_AGE_LIMIT_MS)] | None = None


class BadParameter(Exception):
    """A query parameter is out of range or of the wrong type."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_query(query: dict[str, str], settings: Settings) -> ImageQuery:
    """Typed, range-checked query parameters; raises `BadParameter`."""
    known = {key: value for key, value in query.items() if key in ImageQuery.__struct_fields__}
    try:
        parsed = msgspec.convert(known, type=ImageQuery, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = next((name for name in ImageQuery.__struct_fields__ if f"$.{name}`" in message), None)
        raise BadParameter(field, message) from None
    if parsed.width is not None and parsed.width > settings.image_max_width:
        raise BadParameter("width", f"width may be at most {settings.image_max_width}")
    if parsed.height is not None and parsed.height > settings.image_max_height:
        raise BadParameter("height", f"height may be at most {settings.image_max_height}")
    return parsed


async def stream_image(request: web.Request) -> web.Response:
    """GET /streams/{name}/snapshot.{png,jpg,webp}: the stream's picture now, as that file."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    image_format = EXTENSIONS[request.match_info["ext"]]
    grant = request_grant(request)
    try:
        query = parse_query(dict(request.query), services.settings)
    except BadParameter as exc:
        return json_error(400, str(exc), field=exc.field)
    spec = ImageSpec(format=image_format, width=query.width, height=query.height,
                     quality=None if image_format is ImageFormat.PNG else query.quality)
    max_age = services.settings.max_frame_age_ms if query.max_age_ms is None else query.max_age_ms
    try:
        picture = await services.snapshots.take(name, http_requester(request, grant), spec, max_age_ms=max_age)
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
        },
    )


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
    app.router.add_get("/streams/{name}/snapshot.{ext:png|jpg|webp}", stream_image)
