"""HTTP errors as JSON bodies: what a client can cause gets a 4xx it can read, never a traceback."""

from __future__ import annotations

from aiohttp import web

from streamsnap.reasons import SnapshotError, SnapshotFailure
from streamsnap.web.wcs import SNAPSHOT_INFO

RETRY_AFTER_SECONDS = 1

SNAPSHOT_STATUS: dict[SnapshotFailure, int] = {
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
    SnapshotFailure.SOURCE_NOT_FOUND: 404,
    SnapshotFailure.SOURCE_TIMEOUT: 504,
    SnapshotFailure.UNSUPPORTED_SOURCE: 502,
}
"The HTTP status of each reason no picture was made (image url and REST alike)."

RETRY_LATER = frozenset({SnapshotFailure.NOT_READY, SnapshotFailure.SERVER_BUSY, SnapshotFailure.CLIENT_BUSY,
                         SnapshotFailure.SUBJECT_BUSY,
                         SnapshotFailure.SHUTTING_DOWN, SnapshotFailure.OVERLOADED})
"Reasons answered with a Retry-After header."

DETAILED = frozenset({SnapshotFailure.TOO_LARGE, SnapshotFailure.UNREACHABLE})
"Reasons whose detail (sizes, node) helps the caller and tells nothing it should not know."


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
    return json_error(SNAPSHOT_STATUS[exc.reason], message, reason=exc.reason.value, headers=headers)
