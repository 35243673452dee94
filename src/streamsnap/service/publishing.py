"""The publishing service: the life of one published stream, from the offer to its release.

`publish` runs it all, whatever the kind of source: the access check and backend hook, the
atomic claim of the name (limits included), the source and what it answers (a WebRTC SDP
answer), the wait for media, the watch for its
end (RTP watchdog included), and the release. The signaling session that asked only
hears of it through a `PublishListener`; cancelling `publish` at any step cleans up
whatever was set up by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from streamsnap.access import AccessControl, AccessDenied, Grant, Right
from streamsnap.addresses import client_key
from streamsnap.config import PublishingSettings
from streamsnap.media.source import LocalSources, Source
from streamsnap.reasons import PublishError, StreamEnd
from streamsnap.service.node import NodeState
from streamsnap.service.quotas import Quota
from streamsnap.service.routing import Router
from streamsnap.streams import ClaimRefused, SourceKind, StreamRecord, StreamRegistry, StreamState
from streamsnap.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
"Seconds between looks at a stream's last packet (the RTP watchdog), at most."
TERMINATE_WAIT = 5.0
"Seconds `terminate` waits for a stream's publisher to have been told."
STOP_WAIT = 5.0
"Seconds a stopped publish (a handle's `stop`, the shutdown's `drain`) has to end before it is cancelled."


@dataclass(frozen=True)
class PublishRequest:
    """A stream to run: its name, who asks, and how to make its source."""

    name: str
    media_session_id: str
    grant: Grant
    make_source: Callable[[str], Source]
    "Builds the stream's source (not started yet) once its name is claimed."
    kind: SourceKind = SourceKind.WEBRTC
    right: Right = Right.PUBLISH
    "The right the grant must hold on the name."
    owner_session: str | None = None
    has_audio: bool = False
    hook_fields: Mapping[str, Any] = field(default_factory=dict)
    "What the backend hook is told about the request."
    control_digest: str | None = None
    "Kept in the record: the digest of the secret of the publisher's own control url (WHIP's resource)."
    client_address: str | None = None
    "The publisher's address, for the per-address quota; None for the server's own pulls."


class PublishListener(Protocol):
    """How the publisher hears of its stream."""

    async def answered(self, sdp: str) -> None:
        """The source started and has this for the publisher (the SDP answer of a WebRTC offer)."""
        ...

    async def publishing(self) -> None:
        """Media flows."""
        ...

    async def ended(self, reason: StreamEnd) -> None:
        """The stream was refused, failed or ended (called once, after its name was released)."""
        ...


CAMERA_SCHEMES = ("rtsp://", "rtsps://")
"Names of these are camera urls: only the server's camera pulls publish them (a picture of one pulls it)."


def _is_camera_url(name: str) -> bool:
    return name.strip().lower().startswith(CAMERA_SCHEMES)


def _owner(request: PublishRequest) -> str:
    return request.owner_session or request.kind.value


@dataclass
class _Publication:
    record: StreamRecord
    source: Source
    stop: asyncio.Future[StreamEnd]
    """Resolved by `terminate` or a handle's `stop`: the stream ends with that reason, its publisher told
    before its media closes."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class PublishHandle:
    """A publish the service runs (from `PublishingService.start`): stop it, or wait for its end."""

    def __init__(self, request: PublishRequest) -> None:
        self.request = request
        self.task: asyncio.Task[StreamEnd] | None = None
        self.stop_reason: asyncio.Future[StreamEnd] = asyncio.get_running_loop().create_future()
        "Resolved by `stop`; the publish watches it once its source has started."
        self.watching = False
        "Whether the publish has got as far as watching `stop_reason` (else stopping it cancels it)."

    @property
    def done(self) -> bool:
        """Whether the publish has ended."""
        return self.task is not None and self.task.done()

    def stop_soon(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER) -> None:
        """End the stream with `reason`, without waiting: once its source has started its publisher is
        told `reason` before its media closes; before that (the access check, the claim, the answer)
        the publish is abandoned."""
        task = self.task
        if task is None or task.done():
            return
        if not self.stop_reason.done():
            self.stop_reason.set_result(reason)
        if not self.watching:
            task.cancel()

    async def stop(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER, *, wait: float = STOP_WAIT) -> None:
        """`stop_soon`, then wait (at most `wait` seconds, else it is cancelled) until the stream is released."""
        task = self.task
        if task is None or task.done():
            return
        self.stop_soon(reason)
        await asyncio.wait([task], timeout=wait)
        if not task.done():
            logger.warning("stream %s: not released within %.0f s of its stop", self.request.name, wait)
        await cancel_and_wait(task)


class PublishingService:
    """Runs published streams on this node."""

    def __init__(self, limits: PublishingSettings, registry: StreamRegistry, sources: LocalSources,
                 access: AccessControl, node: NodeState, *, router: Router | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.registry = registry
        self.sources = sources
        self.access = access
        self.node = node
        self.clock = clock
        self._publications: dict[str, _Publication] = {}
        self._handles: dict[tuple[str, str], PublishHandle] = {}
        "Publishes started by `start`, by (owner, media session id)."
        # Publishes running (from before the access check to the release), by the subject of their token and
        # by the publisher's address: offers that never connect count until `connect_timeout`, so that one
        # tenant or one address cannot hold `max_streams` with them.
        self._per_subject = Quota(limits.max_per_subject)
        self._per_address = Quota(limits.max_per_address)
        self.router = router
        "How streams of other nodes are reached (when the node is in a cluster)."

    def start(self, request: PublishRequest, listener: PublishListener) -> PublishHandle:
        """Run the stream of `request` in a task of the service's; the handle stops it or waits for it.

        While it runs it is found by `handle(owner, media_session_id)`, owner being the request's
        session (or its kind, for publishers without a session), and `drain` stops it at shutdown.
        """
        handle = PublishHandle(request)
        key = (_owner(request), request.media_session_id)
        self._handles[key] = handle
        handle.task = asyncio.ensure_future(self.publish(request, listener, handle))
        handle.task.add_done_callback(lambda _: self._forget(key, handle))
        return handle

    def handle(self, owner: str, media_session_id: str) -> PublishHandle | None:
        """The running publish of that owner (a session id, or a source kind) and media session id, or None."""
        return self._handles.get((owner, media_session_id))

    def _forget(self, key: tuple[str, str], handle: PublishHandle) -> None:
        if self._handles.get(key) is handle:
            del self._handles[key]

    async def drain(self, reason: StreamEnd = StreamEnd.SHUTTING_DOWN) -> None:
        """Stop every publish started by `start` with `reason` (shutdown), each given `STOP_WAIT` seconds."""
        handles = list(self._handles.values())
        if handles:
            logger.info("shutdown: ending %d streams", len(handles))
            await asyncio.gather(*(handle.stop(reason) for handle in handles), return_exceptions=True)

    async def publish(self, request: PublishRequest, listener: PublishListener,
                      handle: PublishHandle | None = None) -> StreamEnd:
        """Run the stream of `request` until it ends; return why it ended (after telling `listener`).

        With a `handle`, its `stop` ends the stream.
        """
        log = logging.LoggerAdapter(logger, {"stream": request.name, "session": request.owner_session})
        publication: _Publication | None = None
        reason = StreamEnd.ERROR
        subject = address = None
        stop = handle.stop_reason if handle is not None else asyncio.get_running_loop().create_future()
        try:
            try:
                if request.kind is not SourceKind.RTSP and _is_camera_url(request.name):
                    raise PublishError(StreamEnd.NAME_RESERVED)
                subject, address = self._count(request)
                record = await self._claim(request)
                source = request.make_source(request.name)
                publication = self._publications[record.lease] = _Publication(record, source, stop)
                self.sources.add(record.lease, source)
                answer = await source.start()
                if answer is not None:
                    await listener.answered(answer)
                if handle is not None:
                    handle.watching = True
                await self._media_started(source, stop)
                publication.record = await self._publishing(publication.record, source)
                log.info("stream %s publishing", request.name)
                await listener.publishing()
                reason = await self._watch(publication)
            except PublishError as exc:
                reason = exc.reason
                log.info("publish %s refused or failed: %s", request.name, exc)
            except asyncio.CancelledError:
                reason = StreamEnd.STOPPED_BY_PUBLISHER
                raise
            except Exception:  # an offer that breaks the media stack in a new way must still get an answer
                log.exception("publish %s failed", request.name)
            finally:
                if publication is not None:
                    await self._release(publication)
            log.info("stream %s ended: %s", request.name, reason)
            await listener.ended(reason)  # before the media closes: the publisher hears why first
            return reason
        finally:
            if publication is not None:
                await publication.source.close(reason)
            self._per_subject.give_back(subject)
            self._per_address.give_back(address)
            if publication is not None:
                publication.finished.set()


    def _count(self, request: PublishRequest) -> tuple[str | None, str | None]:
        """Count one more publish for the request's subject and address (the keys to give back; None: not
        counted); raises `PublishError` over a quota."""
        try:
            subject = self._per_subject.take(request.grant.subject)
        except LookupError:
            words = f"subject {request.grant.subject!r} holds {self.limits.max_per_subject} streams"
            raise PublishError(StreamEnd.SUBJECT_BUSY, words) from None
        try:
            address = self._per_address.take(client_key(request.client_address))
        except LookupError:
            self._per_subject.give_back(subject)
            raise PublishError(StreamEnd.CLIENT_BUSY, f"{request.client_address} holds "
                               f"{self.limits.max_per_address} streams") from None
        return subject, address

    async def terminate(self, record: StreamRecord, reason: StreamEnd = StreamEnd.TERMINATED) -> bool:
        """End the stream of `record` (its publisher is told `reason`), on whichever node runs it.

        False when its node does not run it (any more).
        """
        if record.node != self.node.name:
            return self.router is not None and await self.router.terminate(record, reason)
        publication = self._publications.get(record.lease)
        if publication is None:
            return False
        if not publication.stop.done():
            publication.stop.set_result(reason)
        try:
            await asyncio.wait_for(publication.finished.wait(), TERMINATE_WAIT)
        except TimeoutError:
            logger.warning("stream %s: publisher not told of its end within %.0f s", record.name, TERMINATE_WAIT)
        return True

    async def _claim(self, request: PublishRequest) -> StreamRecord:
        """Check access, then claim the name with every limit in one step; raises `PublishError`."""
        if self.node.draining:
            raise PublishError(StreamEnd.SHUTTING_DOWN)
        try:
            await self.access.allow(request.grant, request.right, request.name,
                                    {**request.hook_fields, "name": request.name,
                                     "mediaSessionId": request.media_session_id})
        except AccessDenied as exc:
            raise PublishError(StreamEnd.RESTRICTED, exc.detail) from None
        if self.node.draining:  # it may have begun while the backend was asked
            raise PublishError(StreamEnd.SHUTTING_DOWN)
        record = StreamRecord(name=request.name, media_session_id=request.media_session_id, node=self.node.name,
                              kind=request.kind, owner_session=request.owner_session,
                              has_audio=request.has_audio, control_digest=request.control_digest)
        try:
            return await self.registry.claim(record, max_streams=self.limits.max_streams)
        except ClaimRefused as exc:
            raise PublishError(exc.reason) from None

    async def _media_started(self, source: Source, stop: asyncio.Future[StreamEnd]) -> None:
        """Wait for media; raises `PublishError` when the source ends, is stopped or `connect_timeout` passes first."""
        started_or_ended: list[asyncio.Future[Any]] = [source.media_started, source.ended, stop]
        await asyncio.wait(started_or_ended, timeout=self.limits.connect_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            raise PublishError(stop.result())
        if source.media_started.done():
            return
        raise PublishError(source.ended.result() if source.ended.done() else StreamEnd.ICE_TIMEOUT)

    async def _publishing(self, record: StreamRecord, source: Source) -> StreamRecord:
        """The record once media flows: state, codec and size as now known."""
        stats = source.stats()
        updated = msgspec.structs.replace(record, state=StreamState.PUBLISHING, has_video=source.has_video,
                                          codec=stats.codec, width=stats.width, height=stats.height)
        await self.registry.update(updated)
        return updated

    async def _watch(self, publication: _Publication) -> StreamEnd:
        """Wait for the source to end or be stopped; a video stream silent for `rtp_timeout` is ended here.

        Meanwhile its record follows what the source learns later than its first frame: the picture
        size comes with the first keyframe (an RTSP camera's first frame is often not one) and changes
        with a later one (a WebRTC publisher adapting its resolution).
        """
        source, stop = publication.source, publication.stop
        limit = self.limits.rtp_timeout
        ended_or_stopped: list[asyncio.Future[Any]] = [source.ended, stop]
        while True:
            done, _ = await asyncio.wait(ended_or_stopped, timeout=min(WATCH_INTERVAL, limit / 4),
                                         return_when=asyncio.FIRST_COMPLETED)
            if stop in done:
                return stop.result()
            if source.ended in done:
                return source.ended.result()
            stats = source.stats()
            if source.has_video and stats.last_arrival is not None and self.clock() - stats.last_arrival > limit:
                return StreamEnd.RTP_TIMEOUT
            record = publication.record
            if (stats.codec, stats.width, stats.height) != (record.codec, record.width, record.height):
                publication.record = msgspec.structs.replace(record, codec=stats.codec, width=stats.width,
                                                             height=stats.height)
                await self.registry.update(publication.record)

    async def _release(self, publication: _Publication) -> None:
        """Forget the stream and free its name (its media is closed by the caller, after the publisher is told)."""
        record = publication.record
        self.sources.remove(record.name, record.lease)
        self._publications.pop(record.lease, None)
        await self.registry.release(record.name, record.lease)
