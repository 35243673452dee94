"""HTTP errors as JSON bodies: what a client can cause gets a 4xx it can read, never a traceback.

Handlers raise; `error_answers`, the middleware every application of a node has, answers:
`AccessDenied` with 401 or 403, `SnapshotError` and `PublishError` with the status of their
reason (`STATUS`, the one reason→status table) and the WCS words, `BadRequest` (a bad body) and
`BadQuery` (a bad query parameter) with their status and the field they name. A refusal of a
picture request (a handler marked `counted_as_picture`) made before the snapshot service was
reached, no valid token or a bad query or body, is counted there as the service counts its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from streamsnap.access import AccessDenied, NotAuthenticated
from streamsnap.picture import BadQuery
from streamsnap.protocol.constants import Info
from streamsnap.reasons import PublishError, SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.service.snapshots import BAD_REQUEST
from streamsnap.web.node import NODE
from streamsnap.web.wcs import SNAPSHOT_INFO, STREAM_END_INFO

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1

STATUS: dict[SnapshotFailure | StreamEnd, int] = {
    # No picture was made (image url, MJPEG, REST, the cluster hop).
    SnapshotFailure.STREAM_NOT_FOUND: 404,
    SnapshotFailure.NO_VIDEO: 404,
    SnapshotFailure.NOT_READY: 503,
    SnapshotFailure.NO_DECODABLE_FRAME: 504,
    SnapshotFailure.TOO_LARGE: 400,
    SnapshotFailure.RESTRICTED: 403,
    SnapshotFailure.SERVER_BUSY: 429,
    SnapshotFailure.CLIENT_BUSY: 429,
    SnapshotFailure.SUBJECT_BUSY: 429,
    SnapshotFailure.SHUTTING_DOWN: 503,
    SnapshotFailure.UNREACHABLE: 502,
    SnapshotFailure.INTERNAL: 500,
    SnapshotFailure.OVERLOADED: 503,
    SnapshotFailure.BAD_SOURCE_URI: 400,
    SnapshotFailure.SOURCE_NOT_ALLOWED: 403,
    SnapshotFailure.SOURCE_UNREACHABLE: 502,
    SnapshotFailure.SOURCE_UNAUTHORIZED: 502,  # the camera's 401, not ours: a 401 would ask the client to log in
    SnapshotFailure.SOURCE_UNTRUSTED: 502,
    SnapshotFailure.SOURCE_NOT_FOUND: 404,
    SnapshotFailure.SOURCE_TIMEOUT: 504,
    SnapshotFailure.UNSUPPORTED_SOURCE: 502,
    # A stream was refused (WHIP, REST camera startup); any reason not here is a 500.
    StreamEnd.NAME_IN_USE: 409,
    StreamEnd.TOO_MANY_STREAMS: 503,
    StreamEnd.RESTRICTED: 403,
    StreamEnd.SHUTTING_DOWN: 503,
    StreamEnd.INVALID_SDP: 400,
    StreamEnd.NO_COMMON_CODECS: 400,
    StreamEnd.SUBJECT_BUSY: 429,
    StreamEnd.CLIENT_BUSY: 429,
    StreamEnd.NAME_RESERVED: 403,
}
"The HTTP status of each reason a picture was not made or a stream refused."

RETRY_LATER = frozenset({SnapshotFailure.NOT_READY, SnapshotFailure.SERVER_BUSY, SnapshotFailure.CLIENT_BUSY,
                         SnapshotFailure.SUBJECT_BUSY, SnapshotFailure.SHUTTING_DOWN, SnapshotFailure.OVERLOADED})
"Reasons answered with a Retry-After header."

DETAILED = frozenset({SnapshotFailure.TOO_LARGE, SnapshotFailure.UNREACHABLE, SnapshotFailure.SOURCE_NOT_ALLOWED})
"""Reasons whose detail (sizes, node, the setting that closes a camera pull) helps the caller and tells nothing it
should not know."""


class BadRequest(Exception):
    """A request body or query parameter that is not what the handler takes; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def json_error(status: int, message: str, *, field: str | None = None, reason: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """An HTTP error with a JSON body `{"error", "status"}` (plus `field` for a bad parameter, `reason`)."""
    body: dict[str, object] = {"error": message, "status": status}
    if field is not None:
        body["field"] = field
    if reason is not None:
        body["reason"] = reason
    return web.json_response(body, status=status, headers=headers)


def snapshot_error(exc: SnapshotError) -> web.Response:
    """The HTTP answer to a picture that was not made: status from the table, the WCS words, the reason."""
    message = SNAPSHOT_INFO[exc.reason]
    if exc.detail and exc.reason in DETAILED:
        message = f"{message} ({exc.detail})"
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.reason in RETRY_LATER else None
    return json_error(STATUS[exc.reason], message, reason=exc.reason.value, headers=headers)


def publish_refusal(reason: StreamEnd) -> web.Response:
    """The HTTP answer to a stream that was refused: status from the table, the WCS words, the reason."""
    return json_error(STATUS.get(reason, 500), STREAM_END_INFO.get(reason, reason.value), reason=reason.value)


def access_refusal(request: web.Request, exc: AccessDenied) -> web.Response:
    """The answer to a refused request: 401 without a valid token, else 403 ("Restricted access" both)."""
    logger.info("%s %s from %s refused: %s", request.method, request.path, request.remote, exc.detail)
    if isinstance(exc, NotAuthenticated):
        return json_error(401, Info.RESTRICTED_ACCESS, headers={"WWW-Authenticate": 'Bearer realm="streamsnap"'})
    return json_error(403, Info.RESTRICTED_ACCESS)


Handler = TypeVar("Handler", bound=Callable[..., Any])


def counted_as_picture(handler: Handler) -> Handler:
    """Mark `handler` as one that asks for pictures: its refusals before the snapshot service count as pictures
    refused (`streamsnap_snapshots_total`), so that every picture asked is counted once, whatever answered it."""
    handler.counted_as_picture = True  # type: ignore[attr-defined]
    return handler


def _count_picture_refusal(request: web.Request, result: str) -> None:
    if getattr(request.match_info.handler, "counted_as_picture", False):
        node = request.app.get(NODE)
        if node is not None:
            node.snapshots.refused_before(result)


@web.middleware
async def error_answers(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Answer what a handler raises that the client caused or is owed an answer for."""
    try:
        return await handler(request)
    except AccessDenied as exc:
        _count_picture_refusal(request, SnapshotFailure.RESTRICTED)
        return access_refusal(request, exc)
    except SnapshotError as exc:
        return snapshot_error(exc)
    except PublishError as exc:
        return publish_refusal(exc.reason)
    except BadRequest as exc:
        _count_picture_refusal(request, BAD_REQUEST)
        return json_error(exc.status, str(exc), field=exc.field)
    except BadQuery as exc:
        _count_picture_refusal(request, BAD_REQUEST)
        return json_error(400, str(exc), field=exc.field)
