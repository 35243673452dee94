"""MJPEG feeds: pictures of a stream at a frame rate, made once and fanned out to every watcher.

One producer task per (stream, image spec) takes pictures through the snapshot service at the
highest frame rate its watchers asked for, and only while someone watches. Each watcher holds
the latest picture only: a slow watcher skips pictures (latest wins) and never makes the
server buffer. Watchers per stream and per server are capped; a feed ends, and its watchers
with it, when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streamsnap.access import OPEN_GRANT
from streamsnap.config import MjpegSettings
from streamsnap.picture import ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure
from streamsnap.service.snapshots import Picture, PictureStatus, Requester, SnapshotService

logger = logging.getLogger(__name__)

DEFAULT_FPS = 5.0
"Frame rate of a watcher that names none (capped by `max_fps`)."
GIVE_UP_SECONDS = 10.0
"A feed whose pictures keep failing for this long ends (a stalled publisher, an overloaded server)."
FINAL = frozenset({SnapshotFailure.STREAM_NOT_FOUND, SnapshotFailure.NO_VIDEO, SnapshotFailure.RESTRICTED,
                   SnapshotFailure.TOO_LARGE, SnapshotFailure.SHUTTING_DOWN})
"Failures after which no later picture can come: the feed ends at once."


class TooManyWatchers(Exception):
    """A watcher was refused by a cap."""

    def __init__(self, per_stream: bool, limit: int, what: str = "watchers") -> None:
        scope = "of this stream" if per_stream else "on this server"
        super().__init__(f"too many MJPEG {what} {scope} (at most {limit})")
        self.per_stream = per_stream
        "Refused by a per-stream cap (else by the server's)."
        self.what = what
        "What there are too many of (watchers, picture sizes)."


class Watcher:
    """One viewer of a feed: the latest picture, and whether the feed is over."""

    def __init__(self, feed: Feed, fps: float) -> None:
        self.feed = feed
        self.fps = fps
        "Pictures per second this watcher asked for."
        self.dropped = 0
        "Pictures replaced before this watcher took them (it was slower than the feed)."
        self._latest: Picture | None = None
        self._changed = asyncio.Event()
        self._over = False

    def offer(self, picture: Picture) -> None:
        """A new picture: it replaces one not yet taken."""
        if self._latest is not None:
            self.dropped += 1
        self._latest = picture
        self._changed.set()

    def finish(self) -> None:
        """No more pictures will come."""
        self._over = True
        self._changed.set()

    async def next_picture(self) -> Picture | None:
        """The newest picture not yet taken (waiting for one); None once the feed is over."""
        while True:
            if self._latest is not None:
                picture, self._latest = self._latest, None
                return picture
            if self._over:
                return None
            self._changed.clear()
            await self._changed.wait()


class Feed:
    """The pictures of one stream in one spec, made by one producer for all its watchers."""

    def __init__(self, name: str, spec: ImageSpec) -> None:
        self.name = name
        self.spec = spec
        self.watchers: set[Watcher] = set()
        self.latest: Picture | None = None
        "The last picture made (a new watcher starts with it)."
        self.pictures = 0
        "Pictures made for the watchers."
        self.producer: asyncio.Task[None] | None = None

    @property
    def fps(self) -> float:
        """The rate the producer runs at: the fastest watcher's."""
        return max((watcher.fps for watcher in self.watchers), default=DEFAULT_FPS)


class MjpegFeeds:
    """Every MJPEG feed of this server."""

    def __init__(self, limits: MjpegSettings, snapshots: SnapshotService) -> None:
        self.limits = limits
        self.snapshots = snapshots
        self._feeds: dict[tuple[str, ImageSpec], Feed] = {}
        self._closed = False

    @property
    def watchers(self) -> int:
        """Watchers on the server now."""
        return sum(len(feed.watchers) for feed in self._feeds.values())

    def watchers_of(self, name: str) -> int:
        """Watchers of stream `name` now, over all specs."""
        return sum(len(feed.watchers) for (stream, _), feed in self._feeds.items() if stream == name)

    @property
    def feeds(self) -> int:
        """Producers running now."""
        return len(self._feeds)

    async def watch(self, name: str, requester: Requester, spec: ImageSpec, fps: float) -> Watcher:
        """A new watcher of `name` at `fps` (the caller must `leave` it); raises `TooManyWatchers` or
        `SnapshotError` (the image url's refusals: access, unknown stream, not ready, size cap, …)."""
        self._check_caps(name)
        status = await self.snapshots.status(name, requester, spec)
        self._check_caps(name)  # others may have joined while access was checked
        if self._closed:
            raise SnapshotError(SnapshotFailure.SHUTTING_DOWN)
        key = (name, spec)
        feed = self._feeds.get(key)
        if feed is None:
            specs = sum(1 for stream, _ in self._feeds if stream == name)
            if specs >= self.limits.max_sizes_per_stream:  # each spec is a picture per frame of its own
                raise TooManyWatchers(True, self.limits.max_sizes_per_stream, "picture sizes")
            feed = self._feeds[key] = Feed(name, spec)
        watcher = Watcher(feed, min(fps, self.limits.max_fps))
        feed.watchers.add(watcher)
        if feed.latest is not None:
            watcher.offer(feed.latest)
        if feed.producer is None:
            feed.producer = asyncio.ensure_future(self._produce(feed, status))
        return watcher

    def leave(self, watcher: Watcher) -> None:
        """`watcher` stopped watching; a feed nobody watches stops making pictures."""
        feed = watcher.feed
        feed.watchers.discard(watcher)
        watcher.finish()
        if not feed.watchers:
            self._end(feed)

    async def close(self) -> None:
        """End every feed (shutdown): the watchers' answers end."""
        self._closed = True
        feeds = list(self._feeds.values())
        for feed in feeds:
            self._end(feed)
        producers = [feed.producer for feed in feeds if feed.producer is not None]
        if producers:
            await asyncio.wait(producers, timeout=5)

    def _check_caps(self, name: str) -> None:
        if self.watchers_of(name) >= self.limits.max_watchers_per_stream:
            raise TooManyWatchers(True, self.limits.max_watchers_per_stream)
        if self.watchers >= self.limits.max_watchers:
            raise TooManyWatchers(False, self.limits.max_watchers)

    def _end(self, feed: Feed) -> None:
        if self._feeds.get((feed.name, feed.spec)) is feed:
            del self._feeds[(feed.name, feed.spec)]
        for watcher in feed.watchers:
            watcher.finish()
        if feed.producer is not None and feed.producer is not asyncio.current_task():
            feed.producer.cancel()

    async def _produce(self, feed: Feed, status: PictureStatus) -> None:
        """Take pictures at the watchers' rate until nobody watches or the stream ends."""
        # Access was checked for each watcher as it joined; the producer's own requests skip the
        # check (and the backend hook) for streams held here, and are routed for others' streams.
        requester = Requester(OPEN_GRANT, None, {"source": "mjpeg"}, checked=status.local, background=True)
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        try:
            while feed.watchers:
                interval = 1 / feed.fps
                started = loop.time()
                # A picture made for another caller may be reused if it is no older than one interval
                # and newer than the last one shown (else the feed would show that frame twice).
                max_age = interval
                if feed.latest is not None:
                    max_age = min(max_age, self.snapshots.clock() - feed.latest.snapshot.frame_arrival - 0.001)
                try:
                    picture = await self.snapshots.take(feed.name, requester, feed.spec,
                                                        max_age_ms=max(0.0, max_age) * 1000)
                except SnapshotError as exc:
                    if exc.reason is SnapshotFailure.OVERLOADED:  # the workers are busy with pictures asked for:
                        await asyncio.sleep(interval)  # this frame is skipped, the feed goes on
                        continue
                    failing_since = failing_since if failing_since is not None else started
                    if exc.reason in FINAL or started - failing_since >= GIVE_UP_SECONDS:
                        logger.info("MJPEG of %s ends: %s", feed.name, exc, extra={"stream": feed.name})
                        return
                else:
                    failing_since = None
                    if feed.latest is None or picture.snapshot.frame_arrival != feed.latest.snapshot.frame_arrival:
                        feed.latest = picture
                        feed.pictures += 1
                        for watcher in feed.watchers:
                            watcher.offer(picture)
                await asyncio.sleep(max(0.0, started + interval - loop.time()))
        except Exception:  # a bug ends this feed, not the server
            logger.exception("MJPEG of %s failed", feed.name, extra={"stream": feed.name})
        finally:
            with contextlib.suppress(Exception):
                self._end(feed)
