"""The cluster listener: what other nodes of a cluster ask this one (pictures of its streams, ending them).

It listens apart from the public port (`cluster_host:cluster_port`), so that with several
workers sharing the public port each worker is still reachable by itself. Every request must
be signed with the cluster secret (`cluster/routing.py`); access was checked by the node that
routed the request, so the snapshot service skips it here (`Requester.checked`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec
from aiohttp import web

from streamsnap.access import OPEN_GRANT
from streamsnap.cluster.routing import FORMATS, SIGNATURE_HEADER, signature_valid
from streamsnap.framing import Fit
from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.service.snapshots import Requester
from streamsnap.web.errors import json_error, snapshot_error
from streamsnap.web.services import SERVICES, Services

logger = logging.getLogger(__name__)

ROUTED = Requester(OPEN_GRANT, None, {"source": "cluster"}, checked=True)
"A request routed here by another node, which checked access and counted the client."


class PictureQuery(msgspec.Struct, frozen=True):
    """What the routing node asks for."""

    lease: str
    format: str = "png"
    width: Annotated[int, msgspec.Meta(ge=1)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    max_age_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    fit: Fit = Fit.FILL


class TerminateQuery(msgspec.Struct, frozen=True):
    lease: str
    reason: str = StreamEnd.TERMINATED.value


@web.middleware
async def signed_only(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Refuse any request not signed with the cluster secret."""
    secret = request.app[SERVICES].settings.cluster_secret
    if not signature_valid(secret, request.method, request.raw_path, request.headers.get(SIGNATURE_HEADER)):
        logger.warning("cluster request from %s refused: bad signature", request.remote)
        return json_error(401, "not a signed request of this cluster")
    return await handler(request)


async def picture(request: web.Request) -> web.Response:
    """GET /cluster/streams/{name}/picture?lease=&format=&width=&height=&quality=&max_age_ms=."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    try:
        query = msgspec.convert(dict(request.query), type=PictureQuery, strict=False)
        image_format = FORMATS[query.format]
    except (msgspec.ValidationError, KeyError) as exc:
        return json_error(400, f"bad picture query: {exc}")
    record = await services.registry.lookup(name)
    if record is None or record.lease != query.lease:
        return snapshot_error(SnapshotError(SnapshotFailure.STREAM_NOT_FOUND))
    spec = ImageSpec(format=image_format, width=query.width, height=query.height,
                     quality=None if image_format is ImageFormat.PNG else query.quality, fit=query.fit)
    try:
        taken = await services.snapshots.take(name, ROUTED, spec, max_age_ms=query.max_age_ms)
    except SnapshotError as exc:
        return snapshot_error(exc)
    snapshot = taken.snapshot
    return web.Response(body=snapshot.data, content_type=image_format.content_type, headers={
        "X-Image-Width": str(snapshot.width), "X-Image-Height": str(snapshot.height),
        "X-Frame-Age-Ms": f"{taken.age_ms:.3f}"})


async def terminate(request: web.Request) -> web.Response:
    """POST /cluster/streams/{name}/terminate?lease=&reason=: end a stream of this node."""
    services = request.app[SERVICES]
    name = request.match_info["name"]
    try:
        query = msgspec.convert(dict(request.query), type=TerminateQuery, strict=False)
        reason = StreamEnd(query.reason)
    except (msgspec.ValidationError, ValueError) as exc:
        return json_error(400, f"bad terminate query: {exc}")
    record = await services.registry.lookup(name)
    if record is None or record.lease != query.lease or record.node != services.node.name:
        return json_error(404, "not a stream of this node")
    ended = await services.publishing.terminate(record, reason)
    return web.json_response({"terminated": ended}, status=200 if ended else 404)


def create_cluster_app(services: Services) -> web.Application:
    """The cluster listener's application, sharing the node's services."""
    app = web.Application(middlewares=[signed_only])
    app[SERVICES] = services
    app.router.add_get("/cluster/streams/{name}/picture", picture)
    app.router.add_post("/cluster/streams/{name}/terminate", terminate)
    return app
