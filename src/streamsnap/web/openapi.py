"""`/rest-api/openapi.json`: every HTTP endpoint, with request and answer schemas from the same structs."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from streamsnap import __version__
from streamsnap.config import Settings
from streamsnap.framing import Fit
from streamsnap.picture import EXTENSIONS, MAX_AGE_LIMIT_MS
from streamsnap.reasons import SnapshotFailure
from streamsnap.web.catalog import StreamInfo, WcsStream
from streamsnap.web.errors import RETRY_AFTER_SECONDS, RETRY_LATER, STATUS
from streamsnap.web.guard import TOKEN_PARAMETER
from streamsnap.web.node import NODE
from streamsnap.web.rest import SnapshotAnswer, SnapshotBody, StreamFilter
from streamsnap.web.rtsp_rest import PullAnswer, StartupBody, TargetBody
from streamsnap.web.wcs import SNAPSHOT_INFO


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer: `{"error", "status"}`, plus `field` when one parameter or body field is at fault,
    and `reason` (a snapshot failure's name) when no picture was made."""

    error: str
    status: int
    field: str | None = None
    reason: str | None = None


def _schema_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [ErrorBody, SnapshotBody, StreamFilter, SnapshotAnswer, WcsStream, StreamInfo,
         StartupBody, TargetBody, PullAnswer],
        ref_template="#/components/schemas/{name}",
    )
    return components


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(_ref("ErrorBody"), description, headers)


def _snapshot_failures() -> dict[str, Any]:
    """The answers of a picture that was not made, from the one table every HTTP picture answers with."""
    table = {reason: status for reason, status in STATUS.items() if isinstance(reason, SnapshotFailure)}
    by_status: dict[int, list[str]] = {}
    for reason, status in table.items():
        by_status.setdefault(status, []).append(f"`{reason.value}` ({SNAPSHOT_INFO[reason]})")
    answers: dict[str, Any] = {}
    for status, reasons in sorted(by_status.items()):
        retry = any(reason in RETRY_LATER for reason in table if table[reason] == status)
        headers = {"Retry-After": {"schema": {"type": "string"},
                                   "description": f"Seconds to wait ({RETRY_AFTER_SECONDS})."}} if retry else None
        answers[str(status)] = _error("No picture: " + "; ".join(reasons) + ".", headers)
    return answers


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}]
"A token is needed only when access control is on (`auth_secret` set)."

_TOKEN_PARAMETER = {"name": TOKEN_PARAMETER, "in": "query", "schema": {"type": "string"},
                    "description": "The access token, for clients that cannot send an Authorization header."}


def _guarded(operation: dict[str, Any], *, refusal: str = "The token does not allow this.") -> dict[str, Any]:
    """`operation` as one that checks access: the security requirement and the 401/403 answers."""
    operation["security"] = _SECURITY
    operation["responses"]["401"] = _error("Access control is on and the request has no valid token.", {
        "WWW-Authenticate": {"schema": {"type": "string"}}})
    operation["responses"]["403"] = _error(refusal)
    return operation


_NAME_PARAMETER = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                   "description": "Stream name."}
_FIT_PARAMETER = {"name": "fit", "in": "query", "schema": {"type": "string", "enum": [f.value for f in Fit]},
                  "description": "With both width and height: fill (stretch; the default), contain (letterbox, "
                                 "black bars) or cover (centre crop). Ignored with one side or none."}
_FRAME_HEADERS = {
    "Last-Modified": {"description": "When the depicted frame arrived (HTTP date).", "schema": {"type": "string"}},
    "X-Frame-Timestamp": {"description": "When the depicted frame arrived, RFC 3339 UTC with milliseconds.",
                          "schema": {"type": "string"}},
    "X-Image-Width": {"description": "Width of the picture, pixels.", "schema": {"type": "string"}},
    "X-Image-Height": {"description": "Height of the picture, pixels.", "schema": {"type": "string"}},
}


def _size_parameters(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": "width", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                   "maximum": settings.snapshots.max_width}},
        {"name": "height", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": settings.snapshots.max_height}},
        {"name": "quality", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        _FIT_PARAMETER,
    ]


def _image_operation(ext: str, settings: Settings) -> dict[str, Any]:
    content_type = EXTENSIONS[ext].content_type
    parameters = [
        _NAME_PARAMETER,
        *_size_parameters(settings),
        {"name": "max_age_ms", "in": "query", "description": "Oldest frame the picture may show.",
         "schema": {"type": "number", "minimum": 0, "maximum": MAX_AGE_LIMIT_MS}},
        _TOKEN_PARAMETER,
    ]
    alias = " (`.jpeg` is the same as `.jpg`)" if EXTENSIONS[ext].value == "jpeg" else ""
    head_answers = {status: {"description": answer["description"], **({"headers": answer["headers"]}
                                                                        if "headers" in answer else {})}
                    for status, answer in {**_snapshot_failures(), "400": _error("Bad parameter.")}.items()}
    return {
        "head": _guarded({
            "operationId": f"streamImageHead{ext.capitalize()}",
            "summary": "The status and headers a GET would answer, without making a picture",
            "description": "Answered from the stream's record and its newest frame: nothing is decoded or "
                           "encoded. No Content-Length (the file's length is known only once it is made).",
            "tags": ["images"],
            "parameters": parameters,
            "responses": {
                "200": {"description": "A GET would make a picture now.",
                        "headers": {**_FRAME_HEADERS,
                                    "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}},
                        "content": {content_type: {}}},
                **head_answers,
            },
        }, refusal="The token has no snapshot right on this stream, or the backend refused."),
        "get": _guarded({
            "operationId": f"streamImage{ext.capitalize()}",
            "summary": f"The stream's picture now, as a {ext.upper()} file{alias}",
            "description": "Width and height scale the picture; with only one given the other keeps the "
                           "aspect ratio, with both `fit` says how the picture goes into that box. "
                           "`quality` applies to jpg and webp. Query parameters not listed here are "
                           "ignored (cache busters such as `?t=1700000000` are welcome).",
            "tags": ["images"],
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "The picture.",
                    "headers": {
                        "X-Frame-Age-Ms": {"description": "Age of the depicted frame, milliseconds.",
                                           "schema": {"type": "string"}},
                        "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
                        **_FRAME_HEADERS,
                    },
                    "content": {content_type: {"schema": {"type": "string", "format": "binary"}}},
                },
                **_snapshot_failures(),
                "400": _error("A query parameter is malformed or out of range (`field` names it), or the "
                              "picture would be larger than the size cap (`reason` too_large)."),
            },
        }, refusal="The token has no snapshot right on this stream, or the backend refused."),
    }


def _rtsp_paths() -> dict[str, Any]:
    """The WCS RTSP methods (web/rtsp_rest.py)."""
    pulls = {"type": "array", "items": _ref("PullAnswer")}
    return {
        "/rest-api/rtsp/startup": {"post": _guarded({
            "operationId": "rtspStartup", "tags": ["wcs"],
            "summary": "Pull an RTSP camera as a stream (WCS); answers once it publishes",
            "description": "The pull lives in the server's memory only: a restart forgets it. A camera that "
                           "must come back after a restart goes in the config file (`[[cameras]]`).",
            "requestBody": _body("StartupBody"),
            "responses": {"200": _json(_ref("PullAnswer"), "The camera publishes."),
                          **_snapshot_failures(),
                          "400": _error("Malformed body (`field` names it) or a url that cannot be pulled."),
                          "409": _error("That stream name is taken.")}},
            refusal="The token has no pull right on this stream name, or the host is not allowed.")},
        "/rest-api/rtsp/find_all": {
            method: _guarded({"operationId": f"rtspFindAll{method.capitalize()}", "tags": ["wcs"],
                              "summary": "Every camera pull (WCS); urls without credentials",
                              "responses": {"200": _json(pulls, "The pulls."), "404": _error("No pull.")}})
            for method in ("post", "get")
        },
        "/rest-api/rtsp/terminate": {"post": _guarded({
            "operationId": "rtspTerminate", "tags": ["wcs"], "summary": "Stop a camera pull (WCS)",
            "requestBody": _body("TargetBody"),
            "responses": {"200": {"description": "Stopped (empty body)."},
                          "400": _error("Malformed body, or neither uri nor toStream."),
                          "404": _error("No such pull.")}},
            refusal="The token has no pull right on this stream.")},
    }


def _whip_paths() -> dict[str, Any]:
    """WHIP (RFC 9725; web/whip.py): publish by one POST, end by DELETE; no trickle ICE."""
    sdp_body = {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}}
    session = {"name": "session", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The WHIP session (the last part of `Location`)."}
    not_allowed = {"405": _error("Trickle ICE and ICE restarts are not taken (`Allow` lists the methods).",
                                 {"Allow": {"schema": {"type": "string"}}})}
    return {
        "/whip/{name}": {
            "parameters": [_NAME_PARAMETER],
            "post": _guarded({
                "operationId": "whipPublish", "tags": ["whip"], "summary": "Publish a WebRTC stream by WHIP",
                "requestBody": sdp_body,
                "responses": {
                    "201": {"description": "Publishing: the SDP answer, with every server candidate.",
                            "content": {"application/sdp": {"schema": {"type": "string"}}},
                            "headers": {"Location": {"schema": {"type": "string"},
                                                     "description": "The session's absolute URL (DELETE ends it)."}},
                            "links": {"EndSession": {
                                "operationId": "whipDelete",
                                "parameters": {"path.name": "$request.path.name",
                                               "path.session": "$response.header.Location#regex:/whip/[^/]+/(.+)$"},
                            }}},
                    "400": _error("The offer cannot be used (`reason` invalid_sdp or no_common_codecs)."),
                    "409": _error("That stream name is live (`reason` name_in_use)."),
                    "413": {"description": "The offer is larger than the server takes."},
                    "415": _error("The body is not application/sdp."),
                    "500": _error("The offer broke the media stack (logged with its traceback)."),
                    "503": _error("Too many streams, or the server is stopping."),
                }}, refusal="The token has no publish right on this stream name, or the backend refused."),
            "patch": {"operationId": "whipPatchEndpoint", "tags": ["whip"], "summary": "Not allowed",
                      "responses": not_allowed},
            "options": {"operationId": "whipOptionsEndpoint", "tags": ["whip"], "summary": "Allowed methods",
                        "responses": {"204": {"description": "`Allow` and `Accept-Post` (or a CORS preflight)."}}},
        },
        "/whip/{name}/{session}": {
            "parameters": [_NAME_PARAMETER, session],
            "delete": _guarded({
                "operationId": "whipDelete", "tags": ["whip"], "summary": "End a WHIP stream",
                "responses": {"200": {"description": "Ended."}, "404": _error("No such WHIP session."),
                              "503": _error("The stream directory (cluster) cannot be reached.",
                                            {"Retry-After": {"schema": {"type": "string"}}})}},
                refusal="The token has no publish right on this stream name."),
            "patch": {"operationId": "whipPatchSession", "tags": ["whip"], "summary": "Not allowed",
                      "responses": not_allowed},
            "options": {"operationId": "whipOptionsSession", "tags": ["whip"], "summary": "Allowed methods",
                        "responses": {"204": {"description": "`Allow` (or a CORS preflight)."}}},
        },
    }


def _dashboard_paths(settings: Settings) -> dict[str, Any]:
    """The latest thumbnail and the MJPEG url (web/images.py, web/mjpeg.py)."""
    snapshot_refusal = "The token has no snapshot right on this stream, or the backend refused."
    thumbnail = _guarded({
        "operationId": "streamThumbnail", "tags": ["images"],
        "summary": "The latest periodic thumbnail (JPEG), as the thumbnailer made it",
        "description": "Served from memory, never decoded on request; `If-Modified-Since` is answered 304 "
                       "while no newer thumbnail was made. Only while `thumbnail_interval` is set.",
        "parameters": [_NAME_PARAMETER, _TOKEN_PARAMETER],
        "responses": {
            "200": {"description": "The thumbnail.",
                    "headers": {**_FRAME_HEADERS, "Cache-Control": {"schema": {"type": "string"}}},
                    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
            "304": {"description": "Not modified since `If-Modified-Since`."},
            "404": _error("No such stream (`reason` stream_not_found), thumbnails are off (`thumbnails_off`), "
                          "none was made of this stream yet (`no_thumbnail_yet`), or another node of the "
                          "cluster holds the stream and its thumbnail (`on_another_node`)."),
        },
    }, refusal=snapshot_refusal)
    retry = {"Retry-After": {"schema": {"type": "string"}, "description": f"Seconds to wait ({RETRY_AFTER_SECONDS})."}}
    mjpeg = _guarded({
        "operationId": "streamMjpeg", "tags": ["images"],
        "summary": "The stream as MJPEG (multipart/x-mixed-replace), until it ends",
        "description": "For `<img src>`, camera viewers and Home Assistant. Each part has Content-Type, "
                       "Content-Length and X-Frame-Timestamp. Pictures are made once per stream and spec for "
                       "every watcher, only while someone watches; a slow watcher skips pictures. The answer "
                       "ends when the stream ends.",
        "parameters": [
            _NAME_PARAMETER,
            {"name": "fps", "in": "query", "description": "Pictures per second (default 5, or the cap if lower).",
             "schema": {"type": "number", "minimum": 0.1, "maximum": settings.mjpeg.max_fps}},
            *_size_parameters(settings),
            _TOKEN_PARAMETER,
        ],
        "responses": {
            "200": {"description": "The pictures, one part each, without end while the stream lives.",
                    "content": {"multipart/x-mixed-replace": {"schema": {"type": "string", "format": "binary"}}}},
            **_snapshot_failures(),
            "400": _error("A query parameter is malformed or out of range (`field` names it), or the "
                          "picture would be larger than the size cap (`reason` too_large)."),
            "429": _error(f"Too many watchers of this stream (at most {settings.mjpeg.max_watchers_per_stream}), "
                          "or too many requests from this client.", retry),
            "503": _error(f"Too many watchers on this server (at most {settings.mjpeg.max_watchers}), or the "
                          "stream is not ready, or the server is shutting down.", retry),
        },
    }, refusal=snapshot_refusal)
    return {"/streams/{name}/thumbnail.jpg": {"get": thumbnail}, "/streams/{name}/stream.mjpeg": {"get": mjpeg}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the HTTP side, with the limits of `settings`."""
    stream_list = {"type": "array", "items": _ref("WcsStream")}
    paths: dict[str, Any] = {
        "/": {"get": {"operationId": "landing", "summary": "Landing page of the browser client", "tags": ["site"],
                      "responses": {"200": {"description": "HTML page.", "content": {"text/html": {}}},
                                    "404": _error("No landing page installed.")}}},
        "/version": {"get": {"operationId": "version", "summary": "Name and version", "tags": ["site"],
                             "responses": {"200": _json({
                                 "type": "object", "required": ["name", "version"],
                                 "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                             }, "Name and version.")}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "tags": ["operations"],
                             "responses": {"200": _json({"type": "object"}, "The process answers.")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness", "tags": ["operations"],
                            "responses": {"200": _json({"type": "object"}, "Serving."),
                                          "503": _json({"type": "object"}, "Starting or shutting down.")}}},
        "/metrics": {"get": _guarded({
            "operationId": "metrics", "summary": "Prometheus metrics", "tags": ["operations"],
            "description": "With access control on, a token with the `metrics` right; per-stream series only of "
                           "the streams it covers (at most `metrics_max_streams`).",
            "parameters": [_TOKEN_PARAMETER],
            "responses": {"200": {"description": "Prometheus text exposition.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}},
            refusal="The token has no metrics right.")},
        "/streams": {"get": _guarded({
            "operationId": "listStreams", "summary": "Live streams (those the token may see)", "tags": ["images"],
            "parameters": [_TOKEN_PARAMETER],
            "responses": {"200": _json({"type": "array", "items": _ref("StreamInfo")}, "Every live stream.")}})},
        "/rest-api/stream/find_all": {
            method: _guarded({"operationId": f"findAll{method.capitalize()}", "summary": "Every live stream (WCS)",
                              "tags": ["wcs"], "responses": {"200": _json(stream_list, "The streams."),
                                                             "404": _error("No stream is live."),
                                                             **({"400": _error("A body that is not `{}`."),
                                                                 "415": _error("A body not sent as application/json.")}
                                                                if method == "post" else {})}})
            for method in ("post", "get")
        },
        "/rest-api/stream/find": {"post": _guarded({
            "operationId": "find", "summary": "Streams matching every given field (WCS)", "tags": ["wcs"],
            "requestBody": _body("StreamFilter", required=False),
            "responses": {"200": _json(stream_list, "The matching streams."),
                          "400": _error("Malformed body (`field` names the culprit)."),
                          "415": _error("The body is not sent as application/json."),
                          "404": _error("No stream matches.")}})},
        "/rest-api/stream/terminate": {"post": _guarded({
            "operationId": "terminate", "tags": ["wcs"],
            "summary": "End the matching streams; an empty filter is refused (400)",
            "description": "Each publisher gets UNPUBLISHED \"Stopped by rest /terminate\".",
            "requestBody": _body("StreamFilter", required=False),
            "responses": {"200": {"description": "Terminated (empty body, as WCS answers)."},
                          "400": _error("Malformed body (`field` names the culprit), or no filter field given."),
                          "415": _error("The body is not sent as application/json."),
                          "404": _error("No stream matches.")}},
            refusal="The token lacks the manage right on a matching stream.")},
        "/rest-api/stream/snapshot": {"post": _guarded({
            "operationId": "snapshot", "summary": "A PNG of the stream now, base64 (WCS)", "tags": ["wcs"],
            "requestBody": _body("SnapshotBody"),
            "responses": {"200": _json(_ref("SnapshotAnswer"), "The picture."),
                          **_snapshot_failures(),
                          "400": _error("Malformed body (`field` names the culprit), or the picture would be "
                                        "larger than the size cap (`reason` too_large).")}},
            refusal="The token has no snapshot right on this stream, or the backend refused.")},
        **_rtsp_paths(),
        **_whip_paths(),
        "/rest-api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["site"],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")}}},
    }
    for ext in EXTENSIONS:
        paths[f"/streams/{{name}}/snapshot.{ext}"] = _image_operation(ext, settings)
    paths.update(_dashboard_paths(settings))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamsnap",
            "version": __version__,
            "description": "Still pictures of live WebRTC streams. Besides these endpoints, a GET with a "
                           "WebSocket upgrade on any other path opens a WCS signaling session, and "
                           "`/client/` serves the browser client's files.",
        },
        "paths": paths,
        "components": {
            "schemas": _schema_components(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "An HS256 access token signed with `access.secret` (only when access control is on).",
            }},
        },
    }


async def openapi(request: web.Request) -> web.Response:
    """GET /rest-api/openapi.json."""
    return web.json_response(openapi_document(request.app[NODE].settings))


def add_openapi_route(app: web.Application) -> None:
    """Route `/rest-api/openapi.json`."""
    app.router.add_get("/rest-api/openapi.json", openapi)
