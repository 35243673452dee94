"""The hop between nodes: node-to-node HTTP, authenticated with the cluster secret.

A picture of a stream held by another node is fetched from that node's cluster listener
(`web/cluster.py`) as the encoded file itself, with its size and the frame's age in headers:
no base64, nothing through Redis. Connections are kept alive between nodes. Each request is
signed: `X-Streamsnap-Cluster: <unix time>:<hex HMAC-SHA256 of "METHOD path?query time">`
with `cluster_secret`, accepted within `SIGNATURE_WINDOW` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import msgspec

from streamsnap.cluster.registry import RedisStreamRegistry
from streamsnap.framing import Fit
from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.media.snapshot import Snapshot
from streamsnap.reasons import SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.streams import RegistryUnavailable, StreamRecord

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Streamsnap-Cluster"
SIGNATURE_WINDOW = 30.0
"Seconds a signed request stays valid (clocks of the nodes may differ by less than this)."
HOP_TIMEOUT = 15.0
"Seconds a picture may take on the owning node (its keyframe timeout is shorter)."


def sign(secret: str, method: str, path_qs: str, when: float | None = None) -> str:
    """The signature header value for a request."""
    stamp = str(int(time.time() if when is None else when))
    digest = hmac.new(secret.encode(), f"{method} {path_qs} {stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}:{digest}"


def signature_valid(secret: str, method: str, path_qs: str, header: str | None, now: float | None = None) -> bool:
    """Whether `header` signs this request with `secret`, recently enough."""
    if not header or ":" not in header:
        return False
    stamp, _, digest = header.partition(":")
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        return False
    expected = sign(secret, method, path_qs, int(stamp)).partition(":")[2]
    return age <= SIGNATURE_WINDOW and hmac.compare_digest(expected, digest)


def picture_path(record: StreamRecord, spec: ImageSpec, max_age_ms: float | None) -> str:
    """The cluster listener's path and query for a picture of `record` as `spec` asks."""
    query: dict[str, Any] = {"lease": record.lease, "format": spec.format.value}
    for name in ("width", "height", "quality"):
        value = getattr(spec, name)
        if value is not None:
            query[name] = value
    if spec.fit is not Fit.FILL:
        query["fit"] = spec.fit.value
    if max_age_ms is not None:
        query["max_age_ms"] = repr(max_age_ms)
    return f"/cluster/streams/{quote(record.name, safe='')}/picture?{urlencode(query)}"


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
        path = picture_path(record, spec, max_age_ms)
        status, headers, body = await self._call(record, "GET", path)
        if status != 200:
            raise SnapshotError(_reason_of(body), f"node {record.node!r} answered {status}")
        try:
            width, height = int(headers["X-Image-Width"]), int(headers["X-Image-Height"])
            age = float(headers["X-Frame-Age-Ms"]) / 1000
        except (KeyError, ValueError):
            raise SnapshotError(SnapshotFailure.UNREACHABLE, f"node {record.node!r} answered without sizes") from None
        return Snapshot(body, spec.format, width, height, self.clock() - age)

    async def terminate(self, record: StreamRecord, reason: StreamEnd) -> bool:
        query = urlencode({"lease": record.lease, "reason": reason.value})
        try:
            status, _, _ = await self._call(record, "POST",
                                            f"/cluster/streams/{quote(record.name, safe='')}/terminate?{query}")
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
            async with self._http.request(method, node.url.rstrip("/") + path,
                                          headers={SIGNATURE_HEADER: sign(self.secret, method, path)}) as response:
                return response.status, dict(response.headers), await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.info("node %s unreachable: %s", record.node, exc or type(exc).__name__)
            raise SnapshotError(SnapshotFailure.UNREACHABLE, f"node {record.node!r} is unreachable") from None


class _ErrorBody(msgspec.Struct):
    reason: str = ""


def _reason_of(body: bytes) -> SnapshotFailure:
    """The reason in an error body of a node, or UNREACHABLE when there is none."""
    try:
        return SnapshotFailure(msgspec.json.decode(body, type=_ErrorBody).reason)
    except (msgspec.DecodeError, ValueError):
        return SnapshotFailure.UNREACHABLE


FORMATS = {fmt.value: fmt for fmt in ImageFormat}
"Image formats by the name the cluster listener takes."
