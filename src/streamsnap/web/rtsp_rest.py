"""WCS REST for RTSP cameras: `/rest-api/rtsp/startup`, `/find_all` and `/terminate`.

Bodies as WCS names them: startup `{"uri": "rtsp://…", "toStream": "name"}` (`toStream`
optional: the url without credentials is the stream name then; `transport` "tcp"/"udp" and, for an
`rtsps://` camera, `tlsVerify` false (accept any certificate) are streamsnap's own), terminate
`{"uri"}` or `{"toStream"}`. startup answers once the camera publishes: 200 with the pull, 409 when
that stream is pulled already, else the status and words of the reason (answered by
`web/errors.py`). Listings show urls without credentials.

Rights (with access control on): startup and terminate need `pull` on the stream name;
find_all lists the pulls the token may see.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from streamsnap.access import Right
from streamsnap.protocol.constants import Info
from streamsnap.reasons import PublishError, SnapshotError, StreamEnd
from streamsnap.service.cameras import CameraPulls, PullInfo, picture_failure
from streamsnap.web.errors import json_error
from streamsnap.web.guard import authorize, request_grant
from streamsnap.web.node import NODE
from streamsnap.web.rest import FindAllBody, read_body

logger = logging.getLogger(__name__)

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class StartupBody(msgspec.Struct, frozen=True, rename="camel"):
    """Body of `/rest-api/rtsp/startup`."""

    uri: NonEmpty
    to_stream: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    transport: Literal["tcp", "udp"] | None = None
    tls_verify: bool = True


class TargetBody(msgspec.Struct, frozen=True, rename="camel"):
    """Body of `/rest-api/rtsp/terminate`: the url (with or without credentials) or the stream name."""

    uri: str | None = None
    to_stream: str | None = None


class PullAnswer(msgspec.Struct, frozen=True, rename="camel"):
    """One pull as the REST methods describe it."""

    uri: str
    "The url without credentials."
    to_stream: str
    status: str
    transport: str
    tls_verify: bool
    origin: str
    reason: str | None
    attempts: int


def describe(pull: PullInfo) -> PullAnswer:
    """The REST description of a pull."""
    return PullAnswer(pull.uri, pull.name, pull.status.value, pull.transport, pull.tls_verify, pull.origin.value,
                      pull.reason.value if pull.reason is not None else None, pull.attempts)


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def _cameras(request: web.Request) -> CameraPulls:
    return request.app[NODE].cameras


async def startup(request: web.Request) -> web.Response:
    """POST /rest-api/rtsp/startup {uri, toStream?, transport?}: pull the camera; 200 once it publishes."""
    grant = request_grant(request)
    body = await read_body(request, StartupBody, empty_ok=False)
    hook_fields = {"clientAddress": request.remote, "origin": request.headers.get("Origin"), "source": "http"}
    try:
        pull = await _cameras(request).start(body.uri, body.to_stream, grant, hook_fields, body.transport,
                                             tls_verify=body.tls_verify)
    except PublishError as exc:
        if exc.reason is StreamEnd.NAME_IN_USE:
            raise
        raise SnapshotError(picture_failure(exc.reason)) from None  # the camera's failure, as a picture's
    return _json(describe(pull))


async def find_all(request: web.Request) -> web.Response:
    """POST (or GET) /rest-api/rtsp/find_all: every pull the caller may see; 404 when there is none.

    A POST's body, when it has one, must be JSON (415 otherwise; a filter is 400), as `stream/find_all`'s."""
    grant = request_grant(request)
    if request.method == "POST" and request.body_exists:
        await read_body(request, FindAllBody, empty_ok=True)
    pulls = [describe(pull) for pull in _cameras(request).pulls() if grant.sees(pull.name)]
    if not pulls:
        return json_error(404, Info.STREAM_NOT_FOUND)
    return _json(pulls)


async def terminate(request: web.Request) -> web.Response:
    """POST /rest-api/rtsp/terminate {uri} or {toStream}: stop that pull; 200, or 404 when there is none."""
    grant = request_grant(request)
    body = await read_body(request, TargetBody, empty_ok=False)
    target = body.to_stream or body.uri
    if not target:
        return json_error(400, "uri or toStream is required", field="uri")
    cameras = _cameras(request)
    pull = cameras.find(target)
    if pull is None or not grant.sees(pull.name):
        return json_error(404, Info.STREAM_NOT_FOUND)
    await authorize(request, grant, Right.PULL, pull.name)
    logger.info("camera %s terminated by REST", pull.name, extra={"stream": pull.name})
    if not await cameras.terminate(pull.name):
        return json_error(404, Info.STREAM_NOT_FOUND)
    return web.Response(status=200)


def add_rtsp_routes(app: web.Application) -> None:
    """Route the WCS RTSP REST methods of `app`."""
    app.router.add_post("/rest-api/rtsp/startup", startup)
    app.router.add_post("/rest-api/rtsp/find_all", find_all)
    app.router.add_get("/rest-api/rtsp/find_all", find_all)
    app.router.add_post("/rest-api/rtsp/terminate", terminate)
