"""WCS-style REST under `/rest-api/`: POST JSON in, JSON out, the methods and answers WCS documents.

Bodies are validated with msgspec at the edge; a bad one gets 400 naming the field, an
unknown field included (a typo in a filter must not widen it). A body must be sent as
`application/json` (415 otherwise): a page of another site can POST `text/plain` without
asking anyone (no CORS preflight), but not JSON. Access refusals are raised and answered by
`web/errors.py`'s middleware, which the apps install.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from typing import Annotated, TypeVar

import msgspec
from aiohttp import web

from streamsnap.access import Grant, Right
from streamsnap.protocol.constants import Info
from streamsnap.service.node import Node
from streamsnap.streams import StreamRecord
from streamsnap.web.catalog import describe_wcs
from streamsnap.web.errors import BadRequest, counted_as_picture, json_error
from streamsnap.web.guard import authorize, http_requester, request_grant
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class SnapshotBody(msgspec.Struct, frozen=True, rename="camel"):
    """Body of `/rest-api/stream/snapshot`."""

    stream_name: NonEmpty


class StreamFilter(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """Body of `/rest-api/stream/find` and `/terminate`: every given field must match (others are refused)."""

    name: str | None = None
    media_session_id: str | None = None
    media_session_ids: list[str] | None = None
    session_id: str | None = None
    published: bool | None = None
    status: str | None = None
    display: list[str] | None = None
    "Accepted for compatibility (WCS adds e.g. metrics); streamsnap adds nothing."

    def matches(self, record: StreamRecord) -> bool:
        """Whether `record` passes every field given."""
        return (
            (self.name is None or record.name == self.name)
            and (self.media_session_id is None or record.media_session_id == self.media_session_id)
            and (self.media_session_ids is None or record.media_session_id in self.media_session_ids)
            and (self.session_id is None or record.owner_session == self.session_id)
            and (self.published is None or self.published)  # every stream here is a published one
            and (self.status is None or record.state == self.status)
        )

    @property
    def empty(self) -> bool:
        """Whether no field that selects streams is given (it would match every stream)."""
        return all(getattr(self, name) is None for name in self.__struct_fields__ if name != "display")


class FindAllBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of `/rest-api/stream/find_all`: none, or `{}` (a filter belongs to `find`: refused here, not ignored)."""

    display: list[str] | None = None
    "Accepted for compatibility, as in `find`."


class SnapshotAnswer(msgspec.Struct, frozen=True):
    """Answer of `/rest-api/stream/snapshot`."""

    data: str
    "The PNG, base64."


JSON_TYPE = "application/json"


_FIELD_IN_ERROR = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)|(?:missing required|unknown) field `([^`]+)`")

Body = TypeVar("Body")


async def read_body(request: web.Request, kind: type[Body], *, empty_ok: bool) -> Body:
    """The JSON body as `kind`; raises `BadRequest` (400 naming the field, 415 for a body not sent as JSON)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
    raw = await request.read()  # bounded by the application's client_max_size (413 above it)
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes")
    if (raw or "Content-Type" in request.headers) and request.content_type != JSON_TYPE:
        raise BadRequest(f"the body must be sent as {JSON_TYPE}", status=415)
    if not raw.strip():
        if not empty_ok:
            raise BadRequest("a JSON object body is required")
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        match = _FIELD_IN_ERROR.search(str(exc))
        field = (match.group(1) or match.group(2)) if match else None
        raise BadRequest(str(exc), field) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


async def _matching(node: Node, grant: Grant, wanted: StreamFilter) -> list[StreamRecord]:
    """The live streams the grant may see that match `wanted` (streams it may not see do not exist for it)."""
    return [record for record in await node.registry.all() if grant.sees(record.name) and wanted.matches(record)]


async def _found(request: web.Request, grant: Grant, wanted: StreamFilter) -> web.Response:
    """The streams the grant sees that match `wanted`, described as WCS does; 404 when there is none."""
    node = request.app[NODE]
    streams = await _matching(node, grant, wanted)
    if not streams:
        return json_error(404, Info.STREAM_NOT_FOUND)
    return _json([describe_wcs(record, node.sources.stats(record.name, record.lease)) for record in streams])


async def find_all(request: web.Request) -> web.Response:
    """POST (or GET) /rest-api/stream/find_all: every live stream; 404 when there is none, as WCS answers.

    A POST's body, when it has one, must be JSON like every method's (415 otherwise); a POST without one
    is taken whatever its Content-Type (WCS clients send it so)."""
    grant = request_grant(request)
    if request.method == "POST" and request.body_exists:
        await read_body(request, FindAllBody, empty_ok=True)
    return await _found(request, grant, StreamFilter())


async def find(request: web.Request) -> web.Response:
    """POST /rest-api/stream/find: the live streams matching the body's fields; 404 when none does."""
    grant = request_grant(request)
    wanted = await read_body(request, StreamFilter, empty_ok=True)
    return await _found(request, grant, wanted)


async def terminate(request: web.Request) -> web.Response:
    """POST /rest-api/stream/terminate: end the matching streams; an empty filter is refused (400).

    Each publisher gets UNPUBLISHED "Stopped by rest /terminate". 200 with an empty body; 404 when none matched.
    With access control on, the token needs the "manage" right on every matching stream it can see
    (403 and nothing ended otherwise).
    """
    node = request.app[NODE]
    grant = request_grant(request)
    wanted = await read_body(request, StreamFilter, empty_ok=True)
    if wanted.empty:  # WCS ends every stream here; one careless or forged call must not
        return json_error(400, "a filter is required (name, mediaSessionId, mediaSessionIds, sessionId, "
                               "published or status)")
    records = await _matching(node, grant, wanted)
    if not records:
        return json_error(404, Info.STREAM_NOT_FOUND)
    for record in records:  # every check before any stream is ended
        await authorize(request, grant, Right.MANAGE, record.name)
    for record in records:
        logger.info("stream %s terminated by REST", record.name, extra={"stream": record.name})
    ended = await asyncio.gather(*(node.publishing.terminate(record) for record in records))
    if not any(ended):
        return json_error(404, Info.STREAM_NOT_FOUND)
    return web.Response(status=200)


@counted_as_picture
async def snapshot(request: web.Request) -> web.Response:
    """POST /rest-api/stream/snapshot {streamName}: 200 {data: base64 PNG}; else the status of the failure's reason.
    Refusals before the service (no valid token, a bad body) are counted as its own are (`counted_as_picture`)."""
    node = request.app[NODE]
    grant = request_grant(request)
    body = await read_body(request, SnapshotBody, empty_ok=False)
    picture = await node.snapshots.take(body.stream_name, http_requester(request, grant))
    return _json(SnapshotAnswer(base64.b64encode(picture.snapshot.data).decode()))


def add_rest_routes(app: web.Application) -> None:
    """Route the WCS REST methods of `app`."""
    app.router.add_post("/rest-api/stream/find_all", find_all)
    app.router.add_get("/rest-api/stream/find_all", find_all)
    app.router.add_post("/rest-api/stream/find", find)
    app.router.add_post("/rest-api/stream/terminate", terminate)
    app.router.add_post("/rest-api/stream/snapshot", snapshot)
