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

from streamsnap.logs import ContextAdapter
from streamsnap.media.candidates import announce_public_address
from streamsnap.media.ingest import IngestError, IngestPeer
from streamsnap.media.snapshot import SnapshotError
from streamsnap.protocol import codec
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import Info
from streamsnap.protocol.session import (
    Action,
    CloseSession,
    Send,
    Session,
    StartPublish,
    StopPublish,
    TakeSnapshot,
)
from streamsnap.streams import PublishedStream
from streamsnap.web.services import Services

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class SessionRunner:
    """Carries one WebSocket's session: decodes frames, runs the actions, owns its tasks."""

    def __init__(self, ws: web.WebSocketResponse, services: Services, remote: str) -> None:
        self.ws = ws
        self.services = services
        self.remote = remote
        self.session = Session(
            session_id=secrets.token_hex(8),
            auth_token=secrets.token_urlsafe(16),
            now=services.clock(),
            config=services.session_config,
        )
        self.log = ContextAdapter(logger, {"session": self.session.session_id})
        self._streams: dict[str, PublishedStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Serve the socket until it closes."""
        self.log.info("session %s opened from %s", self.session.session_id, self.remote)
        self._spawn(self._keepalive())
        try:
            async for frame in self.ws:
                now = self.services.clock()
                if frame.type is WSMsgType.TEXT:
                    try:
                        actions = self.session.receive(codec.decode(frame.data), now)
                    except ProtocolError as exc:
                        self.log.info("session %s: bad frame: %s", self.session.session_id, exc)
                        actions = self.session.reject(exc, now)
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
                self._spawn(self._snapshot(action))
            elif isinstance(action, CloseSession):
                self.log.info("session %s closing: %s", self.session.session_id, action.reason)
                await self.ws.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

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
        info = await asyncio.shield(peer.ended)
        await self.execute(self.session.publish_failed(sid, info))

    async def terminate(self, stream_id: str, info: str) -> None:
        """End stream `stream_id` from outside this session (REST terminate): its publisher gets UNPUBLISHED."""
        await self.execute(self.session.publish_terminated(stream_id, info))

    async def _stop_publish(self, action: StopPublish) -> None:
        stream = self._streams.pop(action.stream_id, None)
        if stream is None:
            return
        self.log.info("stream %s stopped: %s", stream.name, action.info, extra={"stream": stream.name})
        await self.services.registry.release(stream)
        await stream.peer.close()

    async def _snapshot(self, action: TakeSnapshot) -> None:
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
