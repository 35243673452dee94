"""A WCS protocol client in Python: publishes aiortc tracks and takes snapshots.

The CLI's `publish` and `snapshot` commands use it, and so do the tests: it speaks to the
server exactly as the Web SDK does, over a real WebSocket and a real peer connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from streamsnap.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class SnapshotFailed(Exception):
    """The server answered `snapshotFailed`; `info` is its reason."""

    def __init__(self, info: str) -> None:
        super().__init__(info)
        self.info = info


class SessionRefused(Exception):
    """The server refused the session (a `fail` to `connection`, or a close before `getUserData`)."""

    def __init__(self, info: str) -> None:
        super().__init__(info)
        self.info = info


class PublishFailed(Exception):
    """The stream did not reach the expected status; `info` is the server's reason."""

    def __init__(self, status: str, info: str) -> None:
        super().__init__(f"{status}: {info}" if info else status)
        self.status = status
        self.info = info


@dataclass(frozen=True)
class Picture:
    """A snapshot as the server returned it."""

    png: bytes
    payload: dict[str, Any]
    "The whole event payload (width, height, frameAgeMs beside snapshot)."


@dataclass
class Publication:
    """One stream this client publishes."""

    id: str
    name: str
    pc: RTCPeerConnection | None
    "None for a stream only watched (see `WcsClient.watch`)."
    statuses: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    "Every status event of the stream, in order."
    status: str = "PENDING"
    info: str = ""


class WcsClient:
    """One WCS session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession | None) -> None:
        self.ws = ws
        self._http = http
        self.user_data: dict[str, Any] = {}
        self.fails: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        "Every `fail` the server sent."
        self.pings = 0
        "Pings received from the server (each answered with pong)."
        self.answer_pings = True
        "Whether to answer the server's pings (tests turn it off to play a dead client)."
        self.publications: dict[str, Publication] = {}
        self._established: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None,
                      headers: dict[str, str] | None = None, **connection: Any) -> WcsClient:
        """Open a session on `url` (any path) and wait for `getUserData`; `ssl_context` for wss with own trust,
        `headers` on the upgrade request (a proxy's X-Forwarded-For, in benchmarks)."""
        http = aiohttp.ClientSession()
        try:
            # Bounded as a whole: a host that drops packets or a port that never answers the upgrade.
            ws = await asyncio.wait_for(
                http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                                ssl=ssl_context if ssl_context is not None else True, headers=headers),
                timeout)
        except BaseException:
            await http.close()
            raise
        client = cls(ws, http)
        body = {"appKey": "defaultApp", "mediaProviders": ["WebRTC"], "keepAlive": False,
                "clientVersion": "2.0", "custom": {}} | connection
        await client.send("connection", body)
        try:
            client.user_data = await asyncio.wait_for(asyncio.shield(client._established), timeout)
        except BaseException:
            await client.close()
            if client._established.done() and not client._established.cancelled():
                client._established.exception()  # retrieved: the caller gets its own exception
            raise
        return client

    async def send(self, message: str, payload: Any = None) -> None:
        """Send one frame; `payload` becomes `data[0]`."""
        await self.ws.send_str(json.dumps({"message": message, "data": [payload]}))

    async def publish(self, name: str, tracks: list[MediaStreamTrack], *, codec: str | None = None,
                      timeout: float = 20.0, wait: bool = True) -> Publication:
        """Publish `tracks` as `name`; with `wait`, return once PUBLISHING (else raise PublishFailed)."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for track in tracks:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            if codec and track.kind == "video":
                capabilities = RTCRtpSender.getCapabilities("video")
                preferred = [c for c in capabilities.codecs if c.mimeType.lower() == f"video/{codec.lower()}"]
                transceiver.setCodecPreferences(preferred)
        await pc.setLocalDescription(await pc.createOffer())
        publication = Publication(str(uuid.uuid4()), name, pc)
        self.publications[publication.id] = publication
        await self.send("publishStream", {
            "mediaSessionId": publication.id, "name": name, "published": True,
            "hasVideo": any(t.kind == "video" for t in tracks),
            "hasAudio": any(t.kind == "audio" for t in tracks),
            "status": "PENDING", "record": False, "mediaProvider": "WebRTC",
            "sdp": pc.localDescription.sdp, "custom": {},
        })
        if wait:
            await self.wait_status(publication, "PUBLISHING", timeout)
        return publication

    def watch(self, stream_id: str, name: str) -> Publication:
        """Track the statuses of a stream id published by hand (with `send`)."""
        publication = Publication(stream_id, name, None)
        self.publications[stream_id] = publication
        return publication

    async def wait_status(self, publication: Publication, status: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for `status`; raise PublishFailed when the stream ends in another one first."""
        async with asyncio.timeout(timeout):
            while True:
                event = await publication.statuses.get()
                if event["status"] == status:
                    return event
                if event["status"] in ("FAILED", "UNPUBLISHED", "STOPPED"):
                    raise PublishFailed(event["status"], event.get("info", ""))

    async def unpublish(self, publication: Publication) -> None:
        """Ask the server to stop `publication`."""
        await self.send("unPublishStream", {"mediaSessionId": publication.id, "name": publication.name,
                                            "published": True})

    async def snapshot(self, name: str, *, timeout: float = 10.0) -> Picture:
        """A picture of stream `name`; raise SnapshotFailed with the server's info."""
        request_id = str(uuid.uuid4())
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events[request_id] = waiter
        try:
            await self.send("snapshot", {"name": name, "mediaSessionId": request_id})
            event = await asyncio.wait_for(waiter, timeout)
        finally:
            self._events.pop(request_id, None)
        payload = event.get("payload") or {}
        if event.get("type") != "snapshotCompleted":
            raise SnapshotFailed(str(payload.get("info", "")))
        return Picture(base64.b64decode(payload["snapshot"]), payload)

    async def close(self) -> None:
        """Close the peer connections and the session."""
        for publication in self.publications.values():
            if publication.pc is not None:
                await publication.pc.close()
        await self.ws.close()
        await cancel_and_wait(self._reader)
        if self._http is not None:
            await self._http.close()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    await self._dispatch(json.loads(frame.data))
        finally:
            if not self._established.done():
                self._established.set_exception(SessionRefused("closed before the session was established"))
            if not self.closed.done():
                self.closed.set_result(None)

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        message, data = frame.get("message"), frame.get("data") or [None]
        body = data[0]
        if message == "ping":
            self.pings += 1
            if self.answer_pings:
                await self.send("pong", None)
        elif message == "getUserData" and not self._established.done():
            self._established.set_result(body)
        elif message == "setRemoteSDP":
            stream_id, sdp = data[0], data[1]
            publication = self.publications.get(stream_id)
            if publication is not None and publication.pc is not None:
                await publication.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        elif message == "notifyStreamStatusEvent":
            publication = self.publications.get(body.get("mediaSessionId"))
            if publication is not None:
                publication.status, publication.info = body["status"], body.get("info", "")
                publication.statuses.put_nowait(body)
        elif message == "notifyStreamEvent":
            waiter = self._events.get(body.get("mediaSessionId"))
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
        elif message == "fail":
            self._failed(body)

    def _failed(self, body: dict[str, Any]) -> None:
        """A `fail`: it refuses the session, or the request whose id it names (a publish, a snapshot) at once."""
        self.fails.put_nowait(body)
        method, info, request_id = body.get("apiMethod"), str(body.get("info", "")), str(body.get("id", ""))
        if method == "connection" and not self._established.done():
            self._established.set_exception(SessionRefused(info))
        publication = self.publications.get(request_id)
        # "StreamStatusEvent": the WCS way to fail a stream; "publishStream": the request itself was refused
        # (a name the server does not take): either way the stream failed, and waiting on would wait for nothing.
        if publication is not None and method in ("StreamStatusEvent", "publishStream"):
            publication.status, publication.info = body.get("status", "FAILED"), info
            publication.statuses.put_nowait({"status": publication.status, "info": publication.info})
        waiter = self._events.get(request_id)
        if waiter is not None and method == "snapshot" and not waiter.done():
            waiter.set_result({"mediaSessionId": request_id, "type": "snapshotFailed", "payload": {"info": info}})
