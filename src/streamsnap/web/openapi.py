"""`/rest-api/openapi.json`: every HTTP endpoint, with request and answer schemas from the same structs."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from streamsnap import __version__
from streamsnap.config import Settings
from streamsnap.web.catalog import StreamInfo, WcsStream
from streamsnap.web.errors import RETRY_AFTER_SECONDS, RETRY_LATER, SNAPSHOT_STATUS
from streamsnap.web.guard import TOKEN_PARAMETER
from streamsnap.web.images import EXTENSIONS, MAX_AGE_LIMIT_MS
from streamsnap.web.rest import SnapshotAnswer, SnapshotBody, StreamFilter
from streamsnap.web.services import SERVICES
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
        [ErrorBody, SnapshotBody, StreamFilter, SnapshotAnswer, WcsStream, StreamInfo],
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
    by_status: dict[int, list[str]] = {}
    for reason, status in SNAPSHOT_STATUS.items():
        by_status.setdefault(status, []).append(f"`{reason.value}` ({SNAPSHOT_INFO[reason]})")
    answers: dict[str, Any] = {}
    for status, reasons in sorted(by_status.items()):
        retry = any(reason in RETRY_LATER for reason in SNAPSHOT_STATUS if SNAPSHOT_STATUS[reason] == status)
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


def _image_operation(ext: str, settings: Settings) -> dict[str, Any]:
    content_type = EXTENSIONS[ext].content_type
    return {
        "get": _guarded({
            "operationId": f"streamImage{ext.capitalize()}",
            "summary": f"The stream's picture now, as a {ext.upper()} file",
            "description": "Width and height scale the picture; with only one given the other keeps the "
                           "aspect ratio. `quality` applies to jpg and webp.",
            "tags": ["images"],
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "Stream name."},
                {"name": "width", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                           "maximum": settings.image_max_width}},
                {"name": "height", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": settings.image_max_height}},
                {"name": "quality", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "max_age_ms", "in": "query", "description": "Oldest frame the picture may show.",
                 "schema": {"type": "number", "minimum": 0, "maximum": MAX_AGE_LIMIT_MS}},
                _TOKEN_PARAMETER,
            ],
            "responses": {
                "200": {
                    "description": "The picture.",
                    "headers": {
                        "X-Frame-Age-Ms": {"description": "Age of the depicted frame, milliseconds.",
                                           "schema": {"type": "string"}},
                        "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
                    },
                    "content": {content_type: {"schema": {"type": "string", "format": "binary"}}},
                },
                **_snapshot_failures(),
                "400": _error("A query parameter is malformed or out of range (`field` names it), or the "
                              "picture would be larger than the size cap (`reason` too_large)."),
            },
        }, refusal="The token has no snapshot right on this stream, or the backend refused."),
    }


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
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "tags": ["operations"],
                             "responses": {"200": {"description": "Prometheus text exposition.",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/streams": {"get": _guarded({
            "operationId": "listStreams", "summary": "Live streams (those the token may see)", "tags": ["images"],
            "parameters": [_TOKEN_PARAMETER],
            "responses": {"200": _json({"type": "array", "items": _ref("StreamInfo")}, "Every live stream.")}})},
        "/rest-api/stream/find_all": {
            method: _guarded({"operationId": f"findAll{method.capitalize()}", "summary": "Every live stream (WCS)",
                              "tags": ["wcs"], "responses": {"200": _json(stream_list, "The streams."),
                                                             "404": _error("No stream is live.")}})
            for method in ("post", "get")
        },
        "/rest-api/stream/find": {"post": _guarded({
            "operationId": "find", "summary": "Streams matching every given field (WCS)", "tags": ["wcs"],
            "requestBody": _body("StreamFilter", required=False),
            "responses": {"200": _json(stream_list, "The matching streams."),
                          "400": _error("Malformed body (`field` names the culprit)."),
                          "404": _error("No stream matches.")}})},
        "/rest-api/stream/terminate": {"post": _guarded({
            "operationId": "terminate", "tags": ["wcs"],
            "summary": "End the matching streams; an empty body matches every stream (WCS)",
            "description": "Each publisher gets UNPUBLISHED \"Stopped by rest /terminate\".",
            "requestBody": _body("StreamFilter", required=False),
            "responses": {"200": {"description": "Terminated (empty body, as WCS answers)."},
                          "400": _error("Malformed body (`field` names the culprit)."),
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
        "/rest-api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["site"],
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")}}},
    }
    for ext in EXTENSIONS:
        paths[f"/streams/{{name}}/snapshot.{ext}"] = _image_operation(ext, settings)
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
                "description": "An HS256 access token signed with `auth_secret` (only when access control is on).",
            }},
        },
    }


async def openapi(request: web.Request) -> web.Response:
    """GET /rest-api/openapi.json."""
    return web.json_response(openapi_document(request.app[SERVICES].settings))


def add_openapi_route(app: web.Application) -> None:
    """Route `/rest-api/openapi.json`."""
    app.router.add_get("/rest-api/openapi.json", openapi)
