"""The snapshot service: `(name, image spec, max age, who asks) -> picture`, the same for every transport.

The WebSocket, the image url, the WCS REST method and the thumbnailer each call `take`
once and translate its answer. Everything that decides whether and how a picture is made
lives here: the shutdown and in-flight limits (per server and per client address), the
access check, the lookup of the stream and of the node that holds it, the size cap, reuse
of a recent enough picture, and the stream's keyframe-request budget. Decoding, encoding
and coalescing are the engine's (`media/snapshot.py`).

Every answer is counted here, by result, in `answers` (what `/metrics` reports as
`streamsnap_snapshots_total`): refusals before the engine (limits, access, an unknown stream,
the size cap), the engine's own, pictures reused from the cache and pictures fetched from
another node alike. The few refusals a transport makes before it can call the service (no
valid token, bad query parameters) are counted through `refused_before`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamsnap.access import AccessControl, AccessDenied, Grant, Right
from streamsnap.addresses import client_key
from streamsnap.config import SnapshotSettings
from streamsnap.media.imaging import output_size
from streamsnap.media.snapshot import KeyframeBudget, LatencyHistogram, Snapshot, SnapshotEngine
from streamsnap.media.source import LocalSources
from streamsnap.picture import PNG, ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure
from streamsnap.service.node import NodeState
from streamsnap.service.quotas import Quota
from streamsnap.service.routing import Router
from streamsnap.streams import RegistryUnavailable, StreamRecord, StreamRegistry

logger = logging.getLogger(__name__)


BAD_REQUEST = "bad_request"
"The result of a picture request whose parameters (query, body) were refused before the service saw it."


@dataclass
class Answers:
    """Picture requests answered, by result, and how long each answer took (what `/metrics` reports)."""

    results: dict[str, int] = field(default_factory=dict)
    "By result: 'ok', a `SnapshotFailure` value, or `BAD_REQUEST`."
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    "How long the answers took."

    def count(self, result: str, seconds: float) -> None:
        """Count one answer."""
        self.results[result] = self.results.get(result, 0) + 1
        self.latency.observe(seconds)


@dataclass(frozen=True)
class Requester:
    """Who asks for a picture."""

    grant: Grant
    "What the caller's token allows."
    address: str | None
    "The client's address, for the per-client limit; None for the server's own work (thumbnails)."
    hook_fields: Mapping[str, Any] = field(default_factory=dict)
    "What the backend hook is told about the request (session, origin, …)."
    checked: bool = False
    "Access was checked already (by the node that routed the request here)."
    background: bool = False
    """The server's own steady work (MJPEG frames, thumbnails): made only while the workers have room to spare,
    so that it never crowds out pictures somebody waits for (refused `overloaded` earlier instead)."""


OnDemand = Callable[[str, Requester], Awaitable[str | None]]
"""For a name pulled on demand (an rtsp:// url): start the pull if needed, wait for it to publish and
return the stream's name (raising `SnapshotError` when it cannot); None for other names."""


class PictureCache:
    """Recent encoded pictures by (stream lease, spec), least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pictures: OrderedDict[tuple[str, ImageSpec], Snapshot] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        "Requests answered from the cache."

    def get(self, lease: str, spec: ImageSpec, newer_than: float) -> Snapshot | None:
        """The cached picture of that stream and spec whose frame arrived after `newer_than`, or None."""
        key = (lease, spec)
        picture = self._pictures.get(key)
        if picture is None or picture.frame_arrival < newer_than:
            return None
        self._pictures.move_to_end(key)
        self.hits += 1
        return picture

    def put(self, lease: str, spec: ImageSpec, picture: Snapshot) -> None:
        """Keep `picture` (if it fits at all)."""
        if len(picture.data) > self.max_bytes:
            return
        key = (lease, spec)
        old = self._pictures.pop(key, None)
        if old is not None:
            self._bytes -= len(old.data)
        self._pictures[key] = picture
        self._bytes += len(picture.data)
        while self._bytes > self.max_bytes:
            _, dropped = self._pictures.popitem(last=False)
            self._bytes -= len(dropped.data)

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes


@dataclass(frozen=True)
class Picture:
    """A picture of a stream, as the service answers it."""

    name: str
    snapshot: Snapshot
    "The encoded image and its size."
    age_ms: float
    "How old the depicted frame was when the answer was made."
    node: str
    "The node that made it."
    frame_time: float = 0.0
    "Wall-clock time (Unix seconds) of the depicted frame."


@dataclass(frozen=True)
class PictureStatus:
    """What a picture of a stream would be, known without making one (HTTP HEAD, MJPEG admission)."""

    record: StreamRecord
    size: tuple[int, int] | None
    "The output size, when the stream's size is known."
    frame_time: float | None
    "Wall-clock time (Unix seconds) of the newest frame this node holds; None for another node's stream."

    @property
    def local(self) -> bool:
        """Whether this node holds the stream (else `status` answered from the registry only)."""
        return self.frame_time is not None


class SnapshotService:
    """Pictures of streams for every transport."""

    def __init__(self, limits: SnapshotSettings, registry: StreamRegistry, sources: LocalSources,
                 engine: SnapshotEngine, access: AccessControl, node: NodeState, *,
                 on_demand: OnDemand | None = None, router: Router | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.registry = registry
        self.sources = sources
        self.engine = engine
        self.access = access
        self.node = node
        self.clock = clock
        self.in_flight = 0
        "Requests being served."
        self.refused: dict[str, int] = {}
        "Requests refused by the limits before any work (shutdown, in flight), by reason."
        self.answers = Answers()
        "Every request answered (taken, refused, failed), by result: the one count of pictures asked."
        self.pictures = PictureCache(limits.picture_cache_bytes)
        self.wall_clock: Callable[[], float] = time.time
        "Wall-clock time, to date frames whose arrival `clock` measured."
        self.on_demand = on_demand
        "Asked about every name once access is granted (the camera pulls'), see `OnDemand`."
        self.router = router
        "How pictures of other nodes' streams are fetched (when the node is in a cluster)."
        self.remote_requests: dict[str, int] = {}
        "Pictures asked of other nodes, by outcome ('ok' or the reason)."
        self._hops: dict[tuple[str, str, ImageSpec, float | None], asyncio.Future[Snapshot]] = {}
        self._per_client = Quota(limits.max_per_client)
        self._per_subject = Quota(limits.max_per_subject)
        self._budgets: dict[str, KeyframeBudget] = {}

    async def take(self, name: str, requester: Requester, spec: ImageSpec = PNG, *,
                   max_age_ms: float | None = None, lease: str | None = None) -> Picture:
        """A picture of stream `name`; raises `SnapshotError`.

        `max_age_ms` (when given) bounds how old the depicted frame may be, and lets a picture
        made for an earlier caller be reused while it is that young; without it the engine's
        freshness setting applies and nothing is reused. `lease` (a hop from another node) names the
        claim the picture must be of: a stream published again under the same name since is not found.
        Every outcome but the caller's leaving is counted in `answers`.
        """
        started = self.clock()
        try:
            client, subject = self._admit(client_key(requester.address), requester.grant.subject)
        except SnapshotError as exc:
            self.answers.count(exc.reason, self.clock() - started)
            raise
        self.in_flight += 1
        result: str = SnapshotFailure.INTERNAL
        try:
            picture = await self._take(name, requester, spec, max_age_ms, lease)
            result = "ok"
            return picture
        except SnapshotError as exc:
            result = exc.reason
            if exc.reason is SnapshotFailure.OVERLOADED:  # counted in /metrics; a line each would add load
                logger.debug("picture of %s refused: %s", name, exc, extra={"stream": name})
            elif exc.reason is not SnapshotFailure.INTERNAL:
                logger.info("picture of %s refused: %s", name, exc, extra={"stream": name})
            raise
        except asyncio.CancelledError:  # the caller left: nobody was answered, nothing is counted
            result = ""
            raise
        except Exception:  # a bug must cost one answer, never the caller's answer or its slot
            logger.exception("picture of %s: unexpected error", name, extra={"stream": name})
            raise SnapshotError(SnapshotFailure.INTERNAL) from None
        finally:
            self.in_flight -= 1
            self._per_client.give_back(client)
            self._per_subject.give_back(subject)
            if result:
                self.answers.count(result, self.clock() - started)

    def refused_before(self, result: str) -> None:
        """Count a picture request a transport refused before it could ask (`SnapshotFailure.RESTRICTED` for
        no valid token, `BAD_REQUEST` for bad parameters): every picture asked is counted in one place."""
        self.answers.count(result, 0.0)

    def _admit(self, client: str | None, subject: str | None) -> tuple[str | None, str | None]:
        """Count the request for its client (the address key) and subject (the token's), or refuse at once
        what the server cannot take on now; the keys to give back (None: not counted)."""
        reason: SnapshotFailure | None = None
        if self.node.draining:
            reason = SnapshotFailure.SHUTTING_DOWN
        elif self.in_flight >= self.limits.max_in_flight:
            reason = SnapshotFailure.SERVER_BUSY
        else:
            try:
                client = self._per_client.take(client)
            except LookupError:
                reason = SnapshotFailure.CLIENT_BUSY
            else:
                try:
                    return client, self._per_subject.take(subject)
                except LookupError:
                    self._per_client.give_back(client)
                    reason = SnapshotFailure.SUBJECT_BUSY
        self.refused[reason] = self.refused.get(reason, 0) + 1
        raise SnapshotError(reason)

    async def _locate(self, name: str, requester: Requester, spec: ImageSpec, *, pull: bool) -> StreamRecord:
        """The record of `name`, once the size asked and the caller's access are checked; raises `SnapshotError`.

        With `pull`, a name the on-demand hook knows (a camera url) is started first.
        """
        if (spec.width or 0) > self.limits.max_width or (spec.height or 0) > self.limits.max_height:
            raise SnapshotError(SnapshotFailure.TOO_LARGE, self._cap_words(spec.width or 0, spec.height or 0))
        if not requester.checked:
            try:
                await self.access.allow(requester.grant, Right.SNAPSHOT, name,
                                        {**requester.hook_fields, "name": name})
            except AccessDenied as exc:
                raise SnapshotError(SnapshotFailure.RESTRICTED, exc.detail) from None
        if pull and self.on_demand is not None:
            name = await self.on_demand(name, requester) or name
        try:
            record = await self.registry.lookup(name)
        except RegistryUnavailable as exc:
            raise SnapshotError(SnapshotFailure.UNREACHABLE, "the cluster directory is unreachable") from exc
        if record is None:
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
        return record

    async def _take(self, name: str, requester: Requester, spec: ImageSpec, max_age_ms: float | None,
                    lease: str | None) -> Picture:
        record = await self._locate(name, requester, spec, pull=lease is None)  # a hop never starts a pull
        if lease is not None and record.lease != lease:
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
        name = record.name
        if record.node != self.node.name:
            if requester.checked:  # routed here, but not held here (any more): no second hop
                raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
            return await self._remote(record, spec, max_age_ms)
        source = self.sources.get(name, record.lease)
        if source is None:  # released between the lookup and now
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
        if max_age_ms is not None:
            reused = self.pictures.get(record.lease, spec, newer_than=self.clock() - max_age_ms / 1000)
            if reused is not None:
                return self._answer(name, reused)
        snapshot = await self.engine.request(
            source, spec, max_age_ms=max_age_ms, max_size=(self.limits.max_width, self.limits.max_height),
            keyframe_budget=self._budget(record.lease), background=requester.background,
        )
        if self.limits.picture_cache_bytes > 0:
            self.pictures.put(record.lease, spec, snapshot)
        return self._answer(name, snapshot)

    async def _remote(self, record: StreamRecord, spec: ImageSpec, max_age_ms: float | None) -> Picture:
        """A picture of a stream another node holds: the routing step.

        Equal requests in flight share one hop (and the owner's engine shares one decode among hops).
        """
        if self.router is None:
            raise SnapshotError(SnapshotFailure.UNREACHABLE, f"the stream is held by node {record.node!r}")
        key = (record.name, record.lease, spec, max_age_ms)
        hop = self._hops.get(key)
        if hop is None:
            hop = self._hops[key] = asyncio.ensure_future(self.router.picture(record, spec, max_age_ms))
            hop.add_done_callback(lambda _: self._hops.pop(key, None))
        try:
            snapshot = await asyncio.shield(hop)
        except SnapshotError as exc:
            self.remote_requests[exc.reason] = self.remote_requests.get(exc.reason, 0) + 1
            raise
        self.remote_requests["ok"] = self.remote_requests.get("ok", 0) + 1
        return self._answer(record.name, snapshot, node=record.node)

    def _answer(self, name: str, snapshot: Snapshot, node: str | None = None) -> Picture:
        age_ms = max(0.0, (self.clock() - snapshot.frame_arrival) * 1000)
        return Picture(name, snapshot, age_ms, node or self.node.name, self.wall_clock() - age_ms / 1000)

    async def status(self, name: str, requester: Requester, spec: ImageSpec = PNG) -> PictureStatus:
        """What `take` would answer about `name`, without making a picture; raises `SnapshotError`.

        The same refusals as `take` up to the engine (draining, size cap, access, lookup), plus
        those the source tells at once (ended, no media yet, no video); no slot is held, nothing is
        decoded, no keyframe is asked. A stream of another node is answered from its record.
        """
        try:
            return await self._status(name, requester, spec)
        except SnapshotError as exc:
            # A refusal answers the request (an MJPEG watcher's admission, a HEAD); a status that passes has
            # made no picture (an MJPEG feed's pictures are counted by `take` as they are made).
            self.answers.count(exc.reason, 0.0)
            raise

    async def _status(self, name: str, requester: Requester, spec: ImageSpec) -> PictureStatus:
        if self.node.draining:
            raise SnapshotError(SnapshotFailure.SHUTTING_DOWN)
        record = await self._locate(name, requester, spec, pull=False)
        native = (record.width, record.height)
        if record.node != self.node.name:
            return PictureStatus(record, _known_size(native, spec), None)
        source = self.sources.get(name, record.lease)
        if source is None or source.ended.done():
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND)
        if not source.media_started.done():
            raise SnapshotError(SnapshotFailure.NOT_READY)
        if not source.has_video:
            raise SnapshotError(SnapshotFailure.NO_VIDEO)
        stats = source.stats()
        if stats.last_arrival is None:
            raise SnapshotError(SnapshotFailure.NOT_READY)
        if stats.width and stats.height:
            native = (stats.width, stats.height)
        frame_time = self.wall_clock() - max(0.0, self.clock() - stats.last_arrival)
        return PictureStatus(record, _known_size(native, spec), frame_time)

    def _budget(self, lease: str) -> KeyframeBudget:
        budget = self._budgets.get(lease)
        if budget is None:
            if len(self._budgets) > 2 * len(self.sources) + 16:  # forget the budgets of ended streams
                live = {lease for lease in self._budgets if self.sources.holds_lease(lease)}
                self._budgets = {lease: b for lease, b in self._budgets.items() if lease in live}
            rate = self.limits.max_keyframe_requests_per_second
            budget = self._budgets[lease] = KeyframeBudget(rate, burst=max(1.0, rate), clock=self.clock)
        return budget

    def _cap_words(self, width: int, height: int) -> str:
        return f"{width}x{height} is larger than the limit {self.limits.max_width}x{self.limits.max_height}"


def _known_size(native: tuple[int | None, int | None], spec: ImageSpec) -> tuple[int, int] | None:
    """The output size of `spec` for a stream of `native` size, when that size is known."""
    width, height = native
    if spec.width and spec.height:
        return spec.width, spec.height
    if not (width and height):
        return None
    return output_size((width, height), spec)
