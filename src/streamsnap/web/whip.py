"""WHIP (RFC 9725): WebRTC publishing by one HTTP request, for OBS 30+, FFmpeg 8 and GStreamer.

`POST /whip/{name}` with an SDP offer (`application/sdp`) answers `201 Created` with the SDP
answer and the session's `Location` (an absolute URL: OBS's DELETE broke on relative ones);
`DELETE` on that URL ends the stream. Trickle ICE is not taken: the answer carries every
server candidate, and `PATCH` is answered `405` with the methods the resource has. With
access control on, requests carry `Authorization: Bearer <token>` (publish right on the
name). CORS (preflight allowing POST/DELETE/PATCH, `Location` exposed) is `web/cors.py`'s,
under `cors_origins`. The stream runs in the publishing service like any other: a
`WebRtcSource` (the same lean receive path and PLI as WCS publishing) of kind WHIP.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import web

from streamsnap.access import AccessDenied, Right
from streamsnap.media.webrtc import WebRtcSource
from streamsnap.reasons import PublishError, StreamEnd
from streamsnap.service.publishing import PublishRequest
from streamsnap.streams import RegistryUnavailable, SourceKind, control_digest, holds_control
from streamsnap.web.errors import json_error
from streamsnap.web.guard import http_requester, request_grant
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)

SDP = "application/sdp"
ENDPOINT_METHODS = "POST, OPTIONS"
SESSION_METHODS = "DELETE, OPTIONS"

def looks_like_sdp(text: str) -> bool:
    """Whether `text` has the shape of an SDP offer: `v=` first (RFC 8866 5.1), then a media description."""
    lines = text.strip().splitlines()
    return bool(lines) and lines[0].startswith("v=") and any(line.startswith("m=") for line in lines)


class _WhipPublisher:
    """Hears the first outcome of the offer: the SDP answer, or why the publish was refused."""

    def __init__(self) -> None:
        self.outcome: asyncio.Future[str | StreamEnd] = asyncio.get_running_loop().create_future()

    async def answered(self, sdp: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(sdp)

    async def publishing(self) -> None:
        """Media flows; the WHIP client learns nothing more over HTTP."""

    async def ended(self, reason: StreamEnd) -> None:
        if not self.outcome.done():
            self.outcome.set_result(reason)


async def publish(request: web.Request) -> web.Response:
    """POST /whip/{name}: publish the offer's media as stream `name`; 201 with the SDP answer."""
    name = request.match_info["name"]
    if request.content_type != SDP:
        return json_error(415, f"the offer must be {SDP}", headers={"Accept-Post": SDP})
    grant = request_grant(request)
    offer = (await request.read()).decode("utf-8", "replace")
    if not looks_like_sdp(offer):  # else the WebRTC stack reads garbage as an offer of no media: "No common codecs"
        raise PublishError(StreamEnd.INVALID_SDP)
    node = request.app[NODE]
    # The resource's id is a secret of the publisher's alone (it ends the stream), and nothing listed:
    # the stream's mediaSessionId, which find_all shows, is another random id.
    session_id = secrets.token_urlsafe(24)
    listener = _WhipPublisher()
    settings = node.settings
    publish_request = PublishRequest(
        name=name, media_session_id=secrets.token_hex(8), grant=grant, kind=SourceKind.WHIP,
        make_source=lambda stream: WebRtcSource(stream, settings.webrtc, settings.gop, offer, kind=SourceKind.WHIP),
        hook_fields={**http_requester(request, grant).hook_fields, "source": "whip"},
        control_digest=control_digest(session_id), client_address=request.remote,
    )
    publication = node.publishing.start(publish_request, listener)
    try:
        outcome = await asyncio.shield(listener.outcome)
    except asyncio.CancelledError:  # the client went away before its answer
        await publication.stop()
        raise
    if isinstance(outcome, StreamEnd):
        raise PublishError(outcome)
    location = request.url.with_path(f"/whip/{name}/{session_id}", encoded=False).with_query(None)
    logger.info("WHIP publish of %s from %s: session %s", name, request.remote, session_id,
                extra={"stream": name})
    return web.Response(status=201, text=outcome, content_type=SDP,
                        headers={"Location": str(location), "ETag": f'"{session_id}"'})


async def delete(request: web.Request) -> web.Response:
    """DELETE /whip/{name}/{session}: end the stream of that session, on whichever node runs it; 200.

    The stream's record says which node (or worker: `serve --workers` shares the port) runs it.
    """
    name, session_id = request.match_info["name"], request.match_info["session"]
    grant = request_grant(request)
    if not grant.allows(Right.PUBLISH, name):
        raise AccessDenied(f"no publish right on {name}")
    node = request.app[NODE]
    try:
        record = await node.registry.lookup(name)
    except RegistryUnavailable:
        return json_error(503, "the stream directory cannot be reached", headers={"Retry-After": "1"})
    if record is None or record.kind is not SourceKind.WHIP or not holds_control(record, session_id):
        return json_error(404, "no such WHIP session")
    if not await node.publishing.terminate(record, StreamEnd.STOPPED_BY_PUBLISHER):
        return json_error(404, "no such WHIP session")
    logger.info("WHIP session %s of %s deleted (on node %s)", session_id, name, record.node, extra={"stream": name})
    return web.Response(status=200)


def _not_allowed(methods: str) -> web.Response:
    return json_error(405, "method not allowed: trickle ICE and ICE restarts are not taken",
                      headers={"Allow": methods})


async def patch_endpoint(request: web.Request) -> web.Response:
    """PATCH /whip/{name}: 405."""
    return _not_allowed(ENDPOINT_METHODS)


async def patch_session(request: web.Request) -> web.Response:
    """PATCH /whip/{name}/{session}: 405 (no trickle ICE; the answer holds every candidate)."""
    return _not_allowed(SESSION_METHODS)


async def options_endpoint(request: web.Request) -> web.Response:
    """OPTIONS /whip/{name} (CORS preflights are answered by `web/cors.py` before this)."""
    return web.Response(status=204, headers={"Allow": ENDPOINT_METHODS, "Accept-Post": SDP})


async def options_session(request: web.Request) -> web.Response:
    """OPTIONS /whip/{name}/{session}."""
    return web.Response(status=204, headers={"Allow": SESSION_METHODS})


def add_whip_routes(app: web.Application) -> None:
    """The WHIP endpoint and session resources."""
    app.router.add_post("/whip/{name}", publish)
    app.router.add_patch("/whip/{name}", patch_endpoint)
    app.router.add_route("OPTIONS", "/whip/{name}", options_endpoint)
    app.router.add_delete("/whip/{name}/{session}", delete)
    app.router.add_patch("/whip/{name}/{session}", patch_session)
    app.router.add_route("OPTIONS", "/whip/{name}/{session}", options_session)
