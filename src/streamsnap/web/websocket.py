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

from streamsnap import __version__
from streamsnap.access import OPEN_GRANT, AccessDenied, Grant
from streamsnap.logs import ContextAdapter
from streamsnap.media.webrtc import WebRtcSource
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
from streamsnap.reasons import SnapshotError, StreamEnd
from streamsnap.service.node import Node
from streamsnap.service.publishing import PublishRequest
from streamsnap.service.snapshots import Requester
from streamsnap.tasks import cancel_and_wait
from streamsnap.web.wcs import SNAPSHOT_INFO, STREAM_END_INFO, UNPUBLISHED_ENDS

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class SessionRunner:
    """Carries one WebSocket's session: decodes frames, runs the actions, owns its tasks."""

    def __init__(self, ws: web.WebSocketResponse, node: Node, remote: str, origin: str | None = None) -> None:
        self.ws = ws
        self.node = node
        self.remote = remote
        self.origin = origin
        self.grant: Grant = OPEN_GRANT
        "What this session's token allows (everything when access control is off)."
        self.custom: dict[str, Any] = {}
        "The client's `custom` fields of `connection`, passed to backend hooks."
        self.session = Session(
            session_id=secrets.token_hex(8),
            auth_token=secrets.token_urlsafe(16),
            now=node.clock(),
            config=node.settings.signaling,
            server_version=__version__,
        )
        self.log = ContextAdapter(logger, {"session": self.session.session_id})
        self._tasks: set[asyncio.Task[None]] = set()
        self.snapshot_tasks: set[asyncio.Task[None]] = set()
        "Snapshot requests being served (a stopping server lets them finish)."
        self._logging_in = False
        "A `connection` is being authorized (the login timeout waits for its answer)."

    async def run(self) -> None:
        """Serve the socket until it closes."""
        self.log.info("session %s opened from %s", self.session.session_id, self.remote)
        self._spawn(self._keepalive())
        try:
            async for frame in self.ws:
                now = self.node.clock()
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
                self._logging_in = True
                try:
                    await self._authorize_connect(message)
                except AccessDenied as exc:
                    self.log.info("session %s refused: %s", self.session.session_id, exc.detail)
                    return self.session.refuse_connection(Info.RESTRICTED_ACCESS)
                finally:
                    self._logging_in = False
            return self.session.receive(message, now)
        except Exception:  # a bug must cost one answer, not the server or a traceback on the wire
            self.log.exception("session %s: error handling %s", self.session.session_id, type(message).__name__)
            return self.session.reject(ProtocolError(Info.FAILED_BY_ERROR), now)

    async def _authorize_connect(self, connect: msg.Connect) -> None:
        self.custom = dict(connect.custom or {})
        self.grant = await self.node.access.connect(connect.auth_token, self._hook_fields())

    def _hook_fields(self, **extra: Any) -> dict[str, Any]:
        return {"sessionId": self.session.session_id, "clientAddress": self.remote, "origin": self.origin,
                "custom": self.custom, **extra}

    async def shutdown(self, reason: StreamEnd) -> None:
        """The server stops: tell the client about each of its streams, then close."""
        await self.execute(self.session.shutting_down(STREAM_END_INFO[reason]))

    @property
    def pictures_in_flight(self) -> int:
        """Snapshot requests being served."""
        return len(self.snapshot_tasks)

    async def finish(self) -> None:
        """Until the snapshot requests being served are answered."""
        while self.snapshot_tasks:
            await asyncio.wait(list(self.snapshot_tasks))

    async def shutdown_tasks(self) -> None:
        """Cancel and await everything this session started."""
        await cancel_and_wait(*self._tasks)

    async def execute(self, actions: list[Action]) -> None:
        """Carry out the session's actions in order."""
        for action in actions:
            if isinstance(action, Send):
                await self._send(action)
            elif isinstance(action, StartPublish):
                self._publish(action)
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
            if not self._logging_in:
                await self.execute(self.session.tick(self.node.clock()))

    def _publish(self, action: StartPublish) -> None:
        settings, offer = self.node.settings, action.sdp
        request = PublishRequest(
            name=action.name, media_session_id=action.stream_id, grant=self.grant,
            make_source=lambda name: WebRtcSource(name, settings.webrtc, settings.gop, offer),
            owner_session=self.session.session_id, has_audio=action.has_audio, hook_fields=self._hook_fields(),
            client_address=self.remote,
        )
        self.node.publishing.start(request, _SessionPublisher(self, action.stream_id))

    async def _stop_publish(self, action: StopPublish) -> None:
        """The session is done with the stream: stop its publish (which releases it) unless it is ending."""
        publication = self.node.publishing.handle(self.session.session_id, action.stream_id)
        if publication is None or publication.done or publication.task is asyncio.current_task():
            return
        self.log.info("stream %s stopped: %s", action.name, action.info, extra={"stream": action.name})
        await publication.stop()

    async def _snapshot(self, action: TakeSnapshot) -> None:
        requester = Requester(self.grant, self.remote, self._hook_fields(mediaSessionId=action.request_id))
        try:
            picture = await self.node.snapshots.take(action.name, requester)
        except SnapshotError as exc:
            actions = self.session.snapshot_failed(action.request_id, action.name, SNAPSHOT_INFO[exc.reason])
        else:
            snap = picture.snapshot
            self.log.info("snapshot of %s: %dx%d, frame age %.0f ms", action.name, snap.width, snap.height,
                          picture.age_ms, extra={"stream": action.name})
            actions = self.session.snapshot_completed(
                action.request_id, action.name, base64.b64encode(snap.data).decode(),
                width=snap.width, height=snap.height, frame_age_ms=picture.age_ms,
            )
        await self.execute(actions)


class _SessionPublisher:
    """Tells the session (and so the client) what becomes of one of its streams."""

    def __init__(self, runner: SessionRunner, stream_id: str) -> None:
        self.runner = runner
        self.stream_id = stream_id

    async def answered(self, sdp: str) -> None:
        await self.runner.execute(self.runner.session.publish_answered(self.stream_id, sdp))

    async def publishing(self) -> None:
        await self.runner.execute(self.runner.session.publish_started(self.stream_id))

    async def ended(self, reason: StreamEnd) -> None:
        session = self.runner.session
        info = STREAM_END_INFO[reason]
        if reason in UNPUBLISHED_ENDS:
            await self.runner.execute(session.publish_terminated(self.stream_id, info))
        else:
            await self.runner.execute(session.publish_failed(self.stream_id, info))
