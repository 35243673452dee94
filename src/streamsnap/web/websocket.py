"""The WebSocket endpoint: frames in, `Session` actions out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from streamsnap.access import OPEN_GRANT, AccessDenied, Grant, Right
from streamsnap.logs import ContextAdapter
from streamsnap.media.candidates import announce_public_address
from streamsnap.media.ingest import IngestError, IngestPeer
from streamsnap.media.snapshot import SnapshotError
from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import Info
from streamsnap.protocol.session import (
    Action,
    CloseSession,
    Send,
    Session,
    StartPublish,
    State,
    StopPublish,
    TakeSnapshot,
)
from streamsnap.streams import PublishedStream
from streamsnap.web.services import Services

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class SessionRunner:
    """Carries one WebSocket's session: decodes frames, runs the actions, owns its tasks."""

    def __init__(self, ws: web.WebSocketResponse, services: Services, remote: str, origin: str | None = None) -> None:
        self.ws = ws
        self.services = services
        self.remote = remote
        self.origin = origin
        self.grant: Grant = OPEN_GRANT
        "What this session's token allows (everything when access control is off)."
        self.custom: dict[str, Any] = {}
        "The client's `custom` fields of `connection`, passed to backend hooks."
        self.session = Session(
            session_id=secrets.token_hex(8),
            auth_token=secrets.token_urlsafe(16),
            now=services.clock(),
            config=services.session_config,
        )
        self.log = ContextAdapter(logger, {"session": self.session.session_id})
        self._streams: dict[str, PublishedStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.snapshot_tasks: set[asyncio.Task[None]] = set()
        "Snapshot requests being served (a stopping server lets them finish)."

    async def run(self) -> None:
        """Serve the socket until it closes."""
        self.log.info("session %s opened from %s", self.session.session_id, self.remote)
        self._spawn(self._keepalive())
        try:
            async for frame in self.ws:
                now = self.services.clock()
                if frame.type is WSMsgType.TEXT:
                    actions = await self._receive_text(frame.data, now)
                elif frame.type is WSMsgType.BINARY:
                    actions = self.session.reject(
                        ProtocolError(Info.MALFORMED_MESSAGE, detail="binary frames are not part of the protocol"),
                        now,
                    )
                else:  # ERROR: aiohttp closes the socket itself
                    break
                await self.execute(actions)
        finally:
            await self.execute(self.session.disconnected())
            await self.shutdown_tasks()
            self.log.info("session %s closed", self.session.session_id)

    async def _receive_text(self, text: str, now: float) -> list[Action]:
        try:
            message = codec.decode(text)
        except ProtocolError as exc:
            self.log.info("session %s: bad frame: %s", self.session.session_id, exc)
            return self.session.reject(exc, now)
        try:
            if isinstance(message, msg.Connect) and self.session.state is State.CONNECTED:
                try:
                    await self._authorize_connect(message)
                except AccessDenied as exc:
                    self.log.info("session %s refused: %s", self.session.session_id, exc.detail)
                    return self.session.refuse_connection(exc.info)
            return self.session.receive(message, now)
        except Exception:  # a bug must cost one answer, not the server or a traceback on the wire
            self.log.exception("session %s: error handling %s", self.session.session_id, type(message).__name__)
            return self.session.reject(ProtocolError(Info.FAILED_BY_ERROR), now)

    async def _authorize_connect(self, connect: msg.Connect) -> None:
        self.custom = dict(connect.custom or {})
        self.grant = await self.services.access.connect(connect.auth_token, self._hook_fields())

    def _hook_fields(self, **extra: Any) -> dict[str, Any]:
        return {"sessionId": self.session.session_id, "clientAddress": self.remote, "origin": self.origin,
                "custom": self.custom, **extra}

    async def shutdown(self, info: str) -> None:
        """The server stops: tell the client about each of its streams, then close."""
        await self.execute(self.session.shutting_down(info))

    async def shutdown_tasks(self) -> None:
        """Cancel and await everything this session started."""
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def execute(self, actions: list[Action]) -> None:
        """Carry out the session's actions in order."""
        for action in actions:
            if isinstance(action, Send):
                await self._send(action)
            elif isinstance(action, StartPublish):
                self._spawn(self._publish(action))
            elif isinstance(action, StopPublish):
                await self._stop_publish(action)
            elif isinstance(action, TakeSnapshot):
                task = self._spawn(self._snapshot(action))
                self.snapshot_tasks.add(task)
                task.add_done_callback(self.snapshot_tasks.discard)
            elif isinstance(action, CloseSession):
                self.log.info("session %s closing: %s", self.session.session_id, action.reason)
                await self.ws.close(code=action.code, message=action.reason.encode()[:120])

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("session %s: task failed", self.session.session_id, exc_info=task.exception())

    async def _send(self, action: Send) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(codec.encode(action.message))

    async def _keepalive(self) -> None:
        while not self.ws.closed:
            await asyncio.sleep(TICK_SECONDS)
            await self.execute(self.session.tick(self.services.clock()))

    async def _publish(self, action: StartPublish) -> None:
        sid = action.stream_id
        refusal = await self._publish_refusal(action)
        if refusal is not None:
            self.log.info("publish %s refused: %s", action.name, refusal)
            await self.execute(self.session.publish_failed(sid, refusal))
            return
        peer = IngestPeer(action.name, self.services.ingest, clock=self.services.clock)
        stream = PublishedStream(action.name, self.session.session_id, sid, peer, has_audio=action.has_audio,
                                 terminate=lambda info: self.terminate(sid, info))
        if not await self.services.registry.claim(stream):
            self.log.info("publish %s refused: name in use", action.name, extra={"stream": action.name})
            await peer.close()
            await self.execute(self.session.publish_failed(sid, Info.NAME_IN_USE))
            return
        self._streams[sid] = stream
        try:
            answer = await peer.answer(action.sdp)
        except IngestError as exc:
            self.log.info("publish %s refused: %s", action.name, exc, extra={"stream": action.name})
            await self.execute(self.session.publish_failed(sid, exc.info))
            return
        except Exception:  # an offer that breaks aiortc in a new way must still get an answer
            self.log.exception("publish %s: offer could not be answered", action.name)
            await self.execute(self.session.publish_failed(sid, Info.FAILED_BY_ERROR))
            return
        answer = announce_public_address(answer, self.services.settings.public_ip)
        await self.execute(self.session.publish_answered(sid, answer))
        started_or_ended: list[asyncio.Future[Any]] = [peer.media_started, peer.ended]
        done, _ = await asyncio.wait(
            started_or_ended,
            timeout=self.services.ingest.connect_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if peer.media_started in done:
            self.log.info("stream %s publishing", action.name, extra={"stream": action.name})
            await self.execute(self.session.publish_started(sid))
        else:
            info = peer.ended.result() if peer.ended.done() else Info.ICE_TIMEOUT
            self.log.info("stream %s failed to start: %s", action.name, info, extra={"stream": action.name})
            await self.execute(self.session.publish_failed(sid, info))
            return
        info = await self._watch_media(peer)
        self.log.info("stream %s ended: %s", action.name, info)
        await self.execute(self.session.publish_failed(sid, info))

    async def terminate(self, stream_id: str, info: str) -> None:
        """End stream `stream_id` from outside this session (REST terminate): its publisher gets UNPUBLISHED."""
        await self.execute(self.session.publish_terminated(stream_id, info))

    async def _publish_refusal(self, action: StartPublish) -> str | None:
        """Why `action` may not go ahead (shutdown, server limit, access), or None."""
        if self.services.draining:
            return Info.SHUTTING_DOWN
        if len(await self.services.registry.all()) >= self.services.settings.max_streams:
            return f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_STREAMS}"
        try:
            await self.services.access.allow(self.grant, Right.PUBLISH, action.name,
                                             self._hook_fields(name=action.name, mediaSessionId=action.stream_id))
        except AccessDenied as exc:
            self.log.info("publish %s: %s", action.name, exc.detail)
            return exc.info
        return None

    async def _watch_media(self, peer: IngestPeer) -> str:
        """Wait for the stream to end; a video stream that sends nothing for `rtp_timeout` is ended here."""
        limit = self.services.settings.rtp_timeout
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(peer.ended), timeout=min(1.0, limit / 4))
            except TimeoutError:
                pass
            video = peer.video
            if peer.has_video and video is not None and video.last_arrival is not None:
                silent = self.services.clock() - video.last_arrival
                if silent > limit:
                    return Info.RTP_ACTIVITY

    async def _stop_publish(self, action: StopPublish) -> None:
        stream = self._streams.pop(action.stream_id, None)
        if stream is None:
            return
        self.log.info("stream %s stopped: %s", stream.name, action.info, extra={"stream": stream.name})
        await self.services.registry.release(stream)
        await stream.peer.close()

    async def _snapshot(self, action: TakeSnapshot) -> None:
        services = self.services
        if services.draining:
            await self.execute(self.session.snapshot_failed(action.request_id, action.name, Info.SHUTTING_DOWN))
            return
        if services.snapshots_in_flight >= services.settings.max_snapshots_in_flight:
            info = f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_SNAPSHOTS}"
            await self.execute(self.session.snapshot_failed(action.request_id, action.name, info))
            return
        services.snapshots_in_flight += 1
        try:
            await self._serve_snapshot(action)
        finally:
            services.snapshots_in_flight -= 1

    async def _serve_snapshot(self, action: TakeSnapshot) -> None:
        try:
            await self.services.access.allow(self.grant, Right.SNAPSHOT, action.name,
                                             self._hook_fields(name=action.name, mediaSessionId=action.request_id))
        except AccessDenied as exc:
            self.log.info("snapshot of %s refused: %s", action.name, exc.detail)
            await self.execute(self.session.snapshot_failed(action.request_id, action.name, exc.info))
            return
        stream = await self.services.registry.lookup(action.name)
        if stream is None:
            await self.execute(self.session.snapshot_failed(action.request_id, action.name, Info.STREAM_NOT_FOUND))
            return
        try:
            snap = await self.services.engine.request(stream.peer)
        except SnapshotError as exc:
            self.log.info("snapshot of %s failed: %s", action.name, exc.info, extra={"stream": action.name})
            await self.execute(self.session.snapshot_failed(action.request_id, action.name, exc.info))
            return
        age_ms = (self.services.clock() - snap.frame_arrival) * 1000
        self.log.info("snapshot of %s: %dx%d, frame age %.0f ms", action.name, snap.width, snap.height, age_ms,
                      extra={"stream": action.name})
        await self.execute(
            self.session.snapshot_completed(
                action.request_id, action.name, base64.b64encode(snap.data).decode(),
                width=snap.width, height=snap.height, frame_age_ms=age_ms,
            )
        )
