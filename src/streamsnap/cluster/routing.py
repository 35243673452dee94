"""The asking side of the hop between nodes: node-to-node HTTP to the node that holds a stream
(`web/cluster.py` answers), on the wire `cluster/wire.py` describes. Connections are kept alive
between nodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp
from yarl import URL

from streamsnap.cluster.registry import RedisStreamRegistry
from streamsnap.cluster.wire import (
    SIGNATURE_HEADER,
    failure_of,
    picture_path,
    read_picture_headers,
    sign,
    terminate_path,
)
from streamsnap.media.snapshot import Snapshot
from streamsnap.picture import ImageSpec
from streamsnap.reasons import SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.streams import RegistryUnavailable, StreamRecord

logger = logging.getLogger(__name__)

HOP_TIMEOUT = 15.0
"Seconds a picture may take on the owning node (its keyframe timeout is shorter)."


class HttpRouter:
    """A `Router` over HTTP to the node named in each record."""

    def __init__(self, registry: RedisStreamRegistry, secret: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.secret = secret
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the connections to other nodes."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def picture(self, record: StreamRecord, spec: ImageSpec, max_age_ms: float | None) -> Snapshot:
        status, headers, body = await self._call(record, "GET", picture_path(record, spec, max_age_ms))
        if status != 200:
            raise SnapshotError(failure_of(body), f"node {record.node!r} answered {status}")
        try:
            width, height, age = read_picture_headers(headers)
        except ValueError:
            raise SnapshotError(SnapshotFailure.UNREACHABLE, f"node {record.node!r} answered without sizes") from None
        return Snapshot(body, spec.format, width, height, self.clock() - age)

    async def terminate(self, record: StreamRecord, reason: StreamEnd) -> bool:
        try:
            status, _, _ = await self._call(record, "POST", terminate_path(record, reason))
        except SnapshotError:
            return False
        return status == 200

    async def _call(self, record: StreamRecord, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            node = await self.registry.node_info(record.node)
        except RegistryUnavailable as exc:
            raise SnapshotError(SnapshotFailure.UNREACHABLE, "the cluster directory is unreachable") from exc
        if node is None:
            raise SnapshotError(SnapshotFailure.STREAM_NOT_FOUND, f"node {record.node!r} is gone")
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HOP_TIMEOUT),
                                               connector=aiohttp.TCPConnector(limit=0, limit_per_host=64))
        try:
            # encoded=True: the path goes out exactly as signed (yarl would otherwise normalise `%3B` to `;`).
            url = URL(node.url.rstrip("/") + path, encoded=True)
            async with self._http.request(method, url,
                                          headers={SIGNATURE_HEADER: sign(self.secret, method, path)}) as response:
                return response.status, dict(response.headers), await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("node %s unreachable: %s", record.node, exc or type(exc).__name__)
            raise SnapshotError(SnapshotFailure.UNREACHABLE, f"node {record.node!r} is unreachable") from None
