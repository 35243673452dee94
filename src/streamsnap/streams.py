"""The registry of published streams: which names are live, and who holds each.

Callers use only the `StreamRegistry` protocol, so that a shared directory (Redis, for a
cluster) can stand behind it later without touching them. Its methods are coroutines for
that reason, although the local registry never waits.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from streamsnap.media.ingest import IngestPeer


@dataclass
class PublishedStream:
    """One live stream on this node."""

    name: str
    session_id: str
    stream_id: str
    peer: IngestPeer
    since: float = field(default_factory=time.time)
    "Wall-clock time the stream was claimed."
    has_audio: bool = False
    "Whether the publisher offered audio."
    terminate: Callable[[str], Awaitable[None]] | None = None
    "Ends the stream from outside (REST terminate): the publisher gets UNPUBLISHED with this info."


class StreamRegistry(Protocol):
    """Names of live streams, unique across everything the registry covers."""

    async def claim(self, stream: PublishedStream) -> bool:
        """Register `stream` under its name; False when the name is taken."""
        ...

    async def release(self, stream: PublishedStream) -> None:
        """Forget `stream`, if it still holds its name."""
        ...

    async def lookup(self, name: str) -> PublishedStream | None:
        """The live stream called `name`, or None."""
        ...

    async def all(self) -> list[PublishedStream]:
        """Every live stream."""
        ...


class LocalStreamRegistry:
    """A `StreamRegistry` for one node, kept in memory."""

    def __init__(self) -> None:
        self._streams: dict[str, PublishedStream] = {}

    async def claim(self, stream: PublishedStream) -> bool:
        if stream.name in self._streams:
            return False
        self._streams[stream.name] = stream
        return True

    async def release(self, stream: PublishedStream) -> None:
        if self._streams.get(stream.name) is stream:
            del self._streams[stream.name]

    async def lookup(self, name: str) -> PublishedStream | None:
        return self._streams.get(name)

    async def all(self) -> list[PublishedStream]:
        return list(self._streams.values())

    def __len__(self) -> int:
        return len(self._streams)
