"""A node as every part sees it: its state, its parts, and the signaling sessions it holds.

The parts are built (in dependency order) and torn down (in reverse) by `server/node.py`
alone; handlers and listeners only read them from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from streamsnap.addresses import client_key
from streamsnap.reasons import StreamEnd

if TYPE_CHECKING:
    from streamsnap.access import AccessControl
    from streamsnap.cluster.registry import ClusterStatus
    from streamsnap.cluster.wire import SignatureCheck
    from streamsnap.config import Settings
    from streamsnap.media.snapshot import SnapshotEngine
    from streamsnap.media.source import LocalSources
    from streamsnap.service.cameras import CameraPulls
    from streamsnap.service.mjpeg import MjpegFeeds
    from streamsnap.service.publishing import PublishingService
    from streamsnap.service.snapshots import SnapshotService
    from streamsnap.service.thumbnails import Thumbnailer
    from streamsnap.streams import StreamRegistry


@dataclass
class NodeState:
    """This server, as the services see it."""

    name: str
    "The node's name in stream records and listings."
    draining: bool = False
    "Set when the server stops: new publishes and pictures are refused."
    ready: bool = False
    "True once the node has started, until it begins to stop (`/readyz`)."


class SignalingSession(Protocol):
    """A live WebSocket session, as the node keeps it (its shell lives in web/)."""

    @property
    def remote(self) -> str:
        """The client's address."""

    async def shutdown(self, reason: StreamEnd) -> None:
        """The server stops (`reason`): tell the client about each of its streams, then close."""

    @property
    def pictures_in_flight(self) -> int:
        """Pictures being made for the session."""

    async def finish(self) -> None:
        """Until the pictures being made for the session are answered (the caller bounds the wait)."""


class Sessions:
    """The signaling sessions the node holds, counted for its limits."""

    def __init__(self) -> None:
        self._sessions: set[SignalingSession] = set()

    def add(self, session: SignalingSession) -> None:
        self._sessions.add(session)

    def discard(self, session: SignalingSession) -> None:
        self._sessions.discard(session)

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[SignalingSession]:
        return iter(list(self._sessions))

    def from_address(self, address: str) -> int:
        """Sessions held by `address` (an IPv6 client counts by its /64)."""
        key = client_key(address)
        return sum(1 for session in self._sessions if client_key(session.remote) == key)


@dataclass
class Node:
    """Every part of one streamsnap node."""

    settings: Settings
    state: NodeState
    registry: StreamRegistry
    access: AccessControl
    sources: LocalSources
    "The media of the streams this node holds."
    engine: SnapshotEngine
    publishing: PublishingService
    "Every published stream runs in it."
    cameras: CameraPulls
    "The node's RTSP camera pulls (on demand, REST, config)."
    snapshots: SnapshotService
    "Every picture goes through it."
    mjpeg: MjpegFeeds
    thumbnails: Thumbnailer | None
    "The periodic thumbnailer, while thumbnails are on (`/streams/{name}/thumbnail.jpg` serves its pictures)."
    cluster: ClusterStatus | None
    "The node's link to its cluster's Redis, when it is in one."
    hop_signatures: SignatureCheck | None = None
    "Checks the signatures of requests from other nodes (when the node is in a cluster)."
    sessions: Sessions = field(default_factory=Sessions)
    clock: Callable[[], float] = time.monotonic

    @property
    def name(self) -> str:
        """The node's name in stream records and listings."""
        return self.state.name
