"""The routing step: how a node reaches a stream that another node holds."""

from __future__ import annotations

from typing import Protocol

from streamsnap.media.snapshot import Snapshot
from streamsnap.picture import ImageSpec
from streamsnap.reasons import StreamEnd
from streamsnap.streams import StreamRecord


class Router(Protocol):
    """Asks the node that holds a stream (a cluster implements it; a lone node has none)."""

    async def picture(self, record: StreamRecord, spec: ImageSpec, max_age_ms: float | None) -> Snapshot:
        """A picture of `record`'s stream made by its node; raises `SnapshotError`.

        The answer's `frame_arrival` is in this node's monotonic clock.
        """
        ...

    async def terminate(self, record: StreamRecord, reason: StreamEnd) -> bool:
        """End `record`'s stream on its node; False when that node does not hold it."""
        ...
