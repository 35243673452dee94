"""The registry of live streams: plain records of which names are live, where, and who holds each.

A record is data only (it serializes with msgspec as it is), never a live media object:
the media of a stream is a `Source` on the node named in its record (`media/source.py`).
Callers use only the `StreamRegistry` protocol, so that a shared directory (Redis, for a
cluster) can stand behind it without touching them; its methods are coroutines for that
reason, although the local registry never waits.

A claim is atomic: the name check and every limit check happen in the same step as the
claim, with nothing awaited in between. Whoever claims gets a lease token; updates and
the release name it, so that a late release of an old stream never frees a newer one.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time

import msgspec

from streamsnap.reasons import StreamEnd


class SourceKind(enum.StrEnum):
    """Where a stream's media comes from."""

    WEBRTC = "webrtc"
    "A browser or other WCS client publishing over WebRTC."
    RTSP = "rtsp"
    RTMP = "rtmp"
    WHIP = "whip"


class StreamState(enum.StrEnum):
    """How far a stream has come."""

    PENDING = "PENDING"
    "Claimed; media not flowing yet."
    PUBLISHING = "PUBLISHING"
    "Media flows."


class StreamFigures(msgspec.Struct, frozen=True):
    """What the node holding a stream measured of it, as of one moment (written with its heartbeat in a cluster)."""

    fps: float | None
    "Frames per second over the last few seconds; None while too few frames came to tell."
    frames_received: int
    measured_at: float
    "Wall-clock time of the measure (seconds since the epoch)."


class StreamRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One live stream, as every node may know it."""

    name: str
    media_session_id: str
    "The publisher's id for the stream (WCS `mediaSessionId`)."
    node: str
    "The node whose `Source` holds the media."
    kind: SourceKind
    owner_session: str | None = None
    "The signaling session that published it (None for pulled or pushed sources without one)."
    lease: str = ""
    "Set by the registry on claim; updates and the release must show it."
    state: StreamState = StreamState.PENDING
    codec: str | None = None
    "Video codec once known (VP8, H264)."
    width: int | None = None
    "Picture size once known cheaply (from the bitstream)."
    height: int | None = None
    has_audio: bool = False
    has_video: bool = False
    started_at: float = msgspec.field(default_factory=time.time)
    "Wall-clock time of the claim (seconds since the epoch)."
    control_digest: str | None = None
    """SHA-256 (hex) of the secret in the publisher's own control url (WHIP's resource), for any node to check
    a DELETE against; never listed, and the secret itself is kept nowhere."""
    figures: StreamFigures | None = None
    """In a cluster, the holding node's figures as of its last heartbeat (the same on every node); None on a
    node alone (its listing reads the source itself) and until the first heartbeat after the claim."""


def control_digest(secret: str) -> str:
    """What a record keeps of a control url's secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def holds_control(record: StreamRecord, secret: str) -> bool:
    """Whether `secret` is the one the publisher of `record` was given (in constant time)."""
    return record.control_digest is not None and hmac.compare_digest(record.control_digest, control_digest(secret))


class ClaimRefused(Exception):
    """A name could not be claimed; `reason` says why."""

    def __init__(self, reason: StreamEnd) -> None:
        super().__init__(str(reason))
        self.reason = reason


class RegistryUnavailable(Exception):
    """The shared directory cannot be reached: only this node's own streams are known."""


class StreamRegistry:
    """Names of live streams, unique across everything the registry covers (the interface)."""

    async def claim(self, record: StreamRecord, *, max_streams: int) -> StreamRecord:
        """Register `record` under its name if the name is free and fewer than `max_streams` are live.

        Returns the record with its lease set; raises `ClaimRefused` (NAME_IN_USE or TOO_MANY_STREAMS).
        """
        raise NotImplementedError

    async def update(self, record: StreamRecord) -> bool:
        """Replace the record of `record.name` if it still holds `record.lease`; False otherwise."""
        raise NotImplementedError

    async def release(self, name: str, lease: str) -> bool:
        """Forget stream `name` if it still holds `lease`; False when it did not."""
        raise NotImplementedError

    async def lookup(self, name: str) -> StreamRecord | None:
        """The live stream called `name`, or None; raises `RegistryUnavailable` when that cannot be known."""
        raise NotImplementedError

    async def all(self) -> list[StreamRecord]:
        """Every live stream."""
        raise NotImplementedError

    async def count(self) -> int:
        """How many streams are live."""
        raise NotImplementedError

    async def local(self) -> list[StreamRecord]:
        """The streams this node holds (no round trip to a shared directory)."""
        raise NotImplementedError


class LocalStreamRegistry(StreamRegistry):
    """A `StreamRegistry` for one node, kept in memory (the default when no cluster is configured)."""

    def __init__(self) -> None:
        self._records: dict[str, StreamRecord] = {}

    async def claim(self, record: StreamRecord, *, max_streams: int) -> StreamRecord:
        # No await in here: check and claim are one step for the event loop.
        if record.name in self._records:
            raise ClaimRefused(StreamEnd.NAME_IN_USE)
        if len(self._records) >= max_streams:
            raise ClaimRefused(StreamEnd.TOO_MANY_STREAMS)
        claimed = msgspec.structs.replace(record, lease=secrets.token_hex(12))
        self._records[record.name] = claimed
        return claimed

    async def update(self, record: StreamRecord) -> bool:
        current = self._records.get(record.name)
        if current is None or current.lease != record.lease:
            return False
        self._records[record.name] = record
        return True

    async def release(self, name: str, lease: str) -> bool:
        current = self._records.get(name)
        if current is None or current.lease != lease:
            return False
        del self._records[name]
        return True

    async def lookup(self, name: str) -> StreamRecord | None:
        return self._records.get(name)

    async def all(self) -> list[StreamRecord]:
        return list(self._records.values())

    async def count(self) -> int:
        return len(self._records)

    async def local(self) -> list[StreamRecord]:
        return list(self._records.values())
