"""The hop between nodes on the wire, for both of its sides (`cluster/routing.py` asks, `web/cluster.py`
answers): the paths, the query, the answer's headers, the error body and the signature.

A picture of a stream held by another node is fetched from that node's cluster listener as the
encoded file itself, with its size and the frame's age in headers: no base64, nothing through
Redis. Each request is signed: `X-Streamsnap-Cluster: <unix time>:<nonce>:<hex HMAC-SHA256 of
"METHOD path?query time nonce">` with the cluster secret, accepted within `SIGNATURE_WINDOW` seconds
and once (`SignatureCheck`). The path is signed as it is sent, percent-encoded, and the asking side
sends it exactly so (no client normalises it on the way).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from streamsnap.framing import Fit
from streamsnap.picture import ImageFormat, ImageSpec, PictureQuery, QueryLimits, parse_query
from streamsnap.reasons import SnapshotFailure, StreamEnd
from streamsnap.streams import StreamRecord

SIGNATURE_HEADER = "X-Streamsnap-Cluster"
SIGNATURE_WINDOW = 30.0
"Seconds a signed request stays valid after it was made."
CLOCK_ALLOWANCE = 5.0
"Seconds a signature's time may be ahead of this node's clock (the nodes' clocks may differ by this much)."
PICTURE_PATH = "/cluster/streams/{name}/picture"
TERMINATE_PATH = "/cluster/streams/{name}/terminate"
WIDTH_HEADER, HEIGHT_HEADER, AGE_HEADER = "X-Image-Width", "X-Image-Height", "X-Frame-Age-Ms"
"The headers of a picture's answer: its size, and how old its frame was when it was made."
FORMATS = {fmt.value: fmt for fmt in ImageFormat}
"Image formats by the name the hop's query gives."


class BadHop(Exception):
    """A hop request whose query is not one a node sends."""


def sign(secret: str, method: str, path_qs: str, when: float | None = None, nonce: str | None = None) -> str:
    """The signature header value for a request: `<unix time>:<nonce>:<hex HMAC-SHA256>`."""
    stamp = str(int(time.time() if when is None else when))
    nonce = secrets.token_hex(12) if nonce is None else nonce
    return f"{stamp}:{nonce}:{_digest(secret, method, path_qs, stamp, nonce)}"


def _digest(secret: str, method: str, path_qs: str, stamp: str, nonce: str) -> str:
    message = f"{method} {path_qs} {stamp} {nonce}".encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class SignatureCheck:
    """Checks signed requests: the secret's, recent (a small allowance for clocks ahead), and each once.

    The nonces of the signatures accepted in the last `SIGNATURE_WINDOW` seconds are remembered, so a
    request copied off the wire cannot be played again; at most `max_remembered` of them (a flood of
    valid signatures can only come from a node that holds the secret).
    """

    def __init__(self, secret: str, *, max_remembered: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.max_remembered = max_remembered
        self.clock = clock
        self._seen: dict[str, float] = {}
        "Nonce -> when it stops mattering (its stamp plus the window), oldest first."

    def valid(self, method: str, path_qs: str, header: str | None) -> bool:
        """Whether `header` signs this request, recently enough, and was not seen before."""
        parts = header.split(":") if header else []
        if len(parts) != 3 or not (0 < len(parts[1]) <= 64):
            return False
        stamp, nonce, digest = parts
        try:
            when = int(stamp)
        except ValueError:
            return False
        now = self.clock()
        if not (now - SIGNATURE_WINDOW <= when <= now + CLOCK_ALLOWANCE):
            return False
        if not hmac.compare_digest(_digest(self.secret, method, path_qs, stamp, nonce), digest):
            return False
        self._forget(now)
        if nonce in self._seen or len(self._seen) >= self.max_remembered:
            return False
        self._seen[nonce] = when + SIGNATURE_WINDOW + CLOCK_ALLOWANCE
        return True

    def _forget(self, now: float) -> None:
        for nonce, expires in list(self._seen.items()):
            if expires > now:
                break  # stamps arrive in about the order they were made: stop at the first still valid
            del self._seen[nonce]


def picture_path(record: StreamRecord, spec: ImageSpec, max_age_ms: float | None) -> str:
    """The path and query asking the node of `record` for a picture as `spec` says."""
    query: dict[str, Any] = {"lease": record.lease, "format": spec.format.value}
    for name in ("width", "height", "quality"):
        value = getattr(spec, name)
        if value is not None:
            query[name] = value
    if spec.fit is not Fit.FILL:
        query["fit"] = spec.fit.value
    if max_age_ms is not None:
        query["max_age_ms"] = repr(max_age_ms)
    return PICTURE_PATH.format(name=quote(record.name, safe="")) + "?" + urlencode(query)


@dataclass(frozen=True)
class PictureAsked:
    """What a hop asks of the node that holds a stream."""

    lease: str
    spec: ImageSpec
    max_age_ms: float | None


def read_picture_query(query: Mapping[str, str], limits: QueryLimits) -> PictureAsked:
    """The picture a hop's query asks for; raises `BadHop` (or `picture.BadQuery`)."""
    lease = query.get("lease")
    image_format = FORMATS.get(query.get("format", "png"))
    if not lease or image_format is None:
        raise BadHop("a picture hop names a lease and a format")
    parsed: PictureQuery = parse_query(query, limits)
    return PictureAsked(lease, parsed.spec(image_format), parsed.max_age_ms)


def terminate_path(record: StreamRecord, reason: StreamEnd) -> str:
    """The path and query asking the node of `record` to end its stream with `reason`."""
    query = urlencode({"lease": record.lease, "reason": reason.value})
    return TERMINATE_PATH.format(name=quote(record.name, safe="")) + "?" + query


def read_terminate_query(query: Mapping[str, str]) -> tuple[str, StreamEnd]:
    """The lease and reason a terminate hop gives; raises `BadHop`."""
    lease = query.get("lease")
    try:
        reason = StreamEnd(query.get("reason", StreamEnd.TERMINATED.value))
    except ValueError:
        raise BadHop("unknown reason") from None
    if not lease:
        raise BadHop("a terminate hop names a lease")
    return lease, reason


def picture_headers(width: int, height: int, age_ms: float) -> dict[str, str]:
    """The headers of a picture's answer."""
    return {WIDTH_HEADER: str(width), HEIGHT_HEADER: str(height), AGE_HEADER: f"{age_ms:.3f}"}


def read_picture_headers(headers: Mapping[str, str]) -> tuple[int, int, float]:
    """Width, height and frame age (seconds) of a picture's answer; raises ValueError without them."""
    try:
        return int(headers[WIDTH_HEADER]), int(headers[HEIGHT_HEADER]), float(headers[AGE_HEADER]) / 1000
    except KeyError as exc:
        raise ValueError(f"no {exc.args[0]}") from None


class _ErrorBody(msgspec.Struct):
    reason: str = ""


def failure_of(body: bytes) -> SnapshotFailure:
    """The reason in a node's error body, or UNREACHABLE when there is none."""
    try:
        return SnapshotFailure(msgspec.json.decode(body, type=_ErrorBody).reason)
    except (msgspec.DecodeError, ValueError):
        return SnapshotFailure.UNREACHABLE
