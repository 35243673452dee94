"""Camera pulls: RTSP cameras run as streams of the publishing service, started three ways.

- On demand: a picture of a stream name that is an `rtsp://` or `rtsps://` url starts a pull (the snapshot
  service's `on_demand` hook), waits for it to publish, and the pull stops after
  `idle_timeout` seconds without pictures.
- By REST (`/rest-api/rtsp/startup`): pulled until it ends or is terminated.
- From the config file (`[[cameras]]`): pulled from start and kept up, reconnecting with
  exponential back-off and jitter whatever ended it (except a terminate or the shutdown).

An `rtsps://` camera is pulled over TCP inside TLS (default port 322), its certificate verified
against the system's authorities or `rtsp.ca_file`; a configured or REST camera may opt out
(`tls_verify = false`, `"tlsVerify": false`), a picture's on-demand pull never does.

A pull's stream name is the name it was given, or else its url without credentials: the
credentials go to the camera only, never to names, listings, logs or metrics.

No request makes the server connect where the operator did not say: pictures and REST may pull
only hosts in `rtsp.allowed_hosts` (empty, the default: none; the refusal names the setting),
and a configured camera is the operator's own. Every attempt resolves the host once and connects
to a checked address itself (`media/rtsp_relay.py`: FFmpeg never resolves, never follows a
redirect); each redirect target is checked the same way (for a configured camera, its own
addresses are allowed too). Loopback, link-local and cloud metadata addresses are only ever
allowed by an entry inside their own range, however wide the others.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import random
import secrets
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamsnap.access import Grant, Right
from streamsnap.config import Camera, RtspSettings
from streamsnap.credentials import public_url, redact
from streamsnap.media.rtsp import Destinations
from streamsnap.media.source import Source
from streamsnap.reasons import PublishError, SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.service.publishing import STOP_WAIT, PublishingService, PublishRequest
from streamsnap.service.snapshots import Requester
from streamsnap.streams import SourceKind
from streamsnap.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

SCHEMES = ("rtsp", "rtsps")
MAX_URI_LENGTH = 2048

PICTURE_FAILURES: dict[StreamEnd, SnapshotFailure] = {
    StreamEnd.BAD_SOURCE_URI: SnapshotFailure.BAD_SOURCE_URI,
    StreamEnd.SOURCE_NOT_ALLOWED: SnapshotFailure.SOURCE_NOT_ALLOWED,
    StreamEnd.SOURCE_UNREACHABLE: SnapshotFailure.SOURCE_UNREACHABLE,
    StreamEnd.SOURCE_CLOSED: SnapshotFailure.SOURCE_UNREACHABLE,
    StreamEnd.SOURCE_UNAUTHORIZED: SnapshotFailure.SOURCE_UNAUTHORIZED,
    StreamEnd.SOURCE_UNTRUSTED: SnapshotFailure.SOURCE_UNTRUSTED,
    StreamEnd.SOURCE_NOT_FOUND: SnapshotFailure.SOURCE_NOT_FOUND,
    StreamEnd.SOURCE_TIMEOUT: SnapshotFailure.SOURCE_TIMEOUT,
    StreamEnd.ICE_TIMEOUT: SnapshotFailure.SOURCE_TIMEOUT,  # the publishing service's "no media in time"
    StreamEnd.RTP_TIMEOUT: SnapshotFailure.SOURCE_TIMEOUT,
    StreamEnd.UNSUPPORTED_CODEC: SnapshotFailure.UNSUPPORTED_SOURCE,
    StreamEnd.INVALID_SDP: SnapshotFailure.UNSUPPORTED_SOURCE,
    StreamEnd.RESTRICTED: SnapshotFailure.RESTRICTED,
    StreamEnd.TOO_MANY_STREAMS: SnapshotFailure.SERVER_BUSY,
    StreamEnd.SHUTTING_DOWN: SnapshotFailure.SHUTTING_DOWN,
}
"Why no picture was made, when a pull started for it failed."


def redact_credentials_in_logs() -> None:
    """Take camera credentials out of every log record made from now on (idempotent).

    Camera urls reach log lines this module does not write: a stream name as a client gave
    it, and the request path of an image url in the access log.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts_credentials", False):
        return

    def redacting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return record

    redacting.redacts_credentials = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting)


def picture_failure(reason: StreamEnd) -> SnapshotFailure:
    """The picture failure of a pull that ended with `reason` before publishing."""
    return PICTURE_FAILURES.get(reason, SnapshotFailure.SOURCE_UNREACHABLE)


class PullOrigin(enum.StrEnum):
    """Who started a pull (it decides how long it lasts)."""

    ON_DEMAND = "on_demand"
    "A picture of an rtsp:// name; stops when idle."
    REST = "rest"
    "REST startup; until it ends or is terminated."
    CONFIG = "config"
    "The config file; kept up."


class PullStatus(enum.StrEnum):
    """Where a pull is."""

    CONNECTING = "CONNECTING"
    PUBLISHING = "PUBLISHING"
    RECONNECTING = "RECONNECTING"
    "A configured camera between two attempts."
    ENDED = "ENDED"


RECONNECT_MIN = 0.5
"First wait before a configured camera is tried again (doubling up to `rtsp.reconnect_max`)."


@dataclass(frozen=True)
class PullInfo:
    """A pull as listings show it (no credentials)."""

    name: str
    uri: str
    "The url without credentials."
    transport: str
    tls_verify: bool
    "For rtsps://: whether the camera's certificate is verified."
    origin: PullOrigin
    status: PullStatus
    reason: StreamEnd | None
    "Why the last attempt ended, if one did."
    attempts: int


SourceFactory = Callable[[str, str, str, Destinations, bool], Source]
"""Builds a camera's source from (stream name, url with credentials, transport, where it may connect, whether an
rtsps:// camera's certificate is verified)."""


@dataclass(eq=False)
class _Pull:
    name: str
    uri: str
    transport: str
    tls_verify: bool
    origin: PullOrigin
    grant: Grant
    hook_fields: Mapping[str, Any]
    last_used: float
    status: PullStatus = PullStatus.CONNECTING
    reason: StreamEnd | None = None
    attempts: int = 0
    stopping: bool = False
    source: Source | None = None
    task: asyncio.Task[None] | None = None
    ready: asyncio.Future[StreamEnd | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    "None once publishing, or why the attempt ended first."

    def info(self) -> PullInfo:
        return PullInfo(self.name, public_url(self.uri), self.transport, self.tls_verify, self.origin, self.status,
                         self.reason, self.attempts)


class _PullListener:
    """How a pull hears of its stream from the publishing service."""

    def __init__(self, pull: _Pull, clock: Callable[[], float]) -> None:
        self.pull = pull
        self.clock = clock

    async def answered(self, sdp: str) -> None:
        """Cameras answer nothing."""

    async def publishing(self) -> None:
        self.pull.status = PullStatus.PUBLISHING
        self.pull.last_used = self.clock()  # idle from now on, however long the camera took
        if not self.pull.ready.done():
            self.pull.ready.set_result(None)

    async def ended(self, reason: StreamEnd) -> None:
        self.pull.reason = reason
        self.pull.status = PullStatus.ENDED
        if not self.pull.ready.done():
            self.pull.ready.set_result(reason)


def check_uri(uri: str) -> urllib.parse.SplitResult:
    """The parts of a camera url that can be pulled; raises `PublishError(BAD_SOURCE_URI)` (words without it)."""
    if len(uri) > MAX_URI_LENGTH or any(ord(char) <= 32 or ord(char) == 127 for char in uri):
        raise PublishError(StreamEnd.BAD_SOURCE_URI, "too long, or spaces or control characters in it")
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, "not a url, or a bad port") from None
    if parts.scheme.lower() not in SCHEMES:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, f"scheme {parts.scheme!r} is not one of {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, "no host")
    if port == 0:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, "port 0")
    return parts


def is_camera_url(name: str) -> bool:
    """Whether a stream name is a camera url (`rtsp://…`, `rtsps://…`, any case)."""
    scheme, colon_slashes, _ = name.partition("://")
    return bool(colon_slashes) and scheme.lower() in SCHEMES


def pull_transport(uri: str, asked: str | None, default: str) -> str:
    """The transport a pull of `uri` uses: an rtsps:// camera's media stay inside its TLS connection (tcp);
    raises `PublishError(BAD_SOURCE_URI)` when udp is asked of one."""
    if uri[:8].lower() != "rtsps://":
        return asked or default
    if asked == "udp":
        raise PublishError(StreamEnd.BAD_SOURCE_URI, "an rtsps:// camera is pulled over tcp, not udp")
    return "tcp"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SPECIAL_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(network) for network in (
    "169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32",  # cloud metadata
    "127.0.0.0/8", "::1/128",  # loopback
    "169.254.0.0/16", "fe80::/10",  # link-local
    "0.0.0.0/8", "::/128",  # "this host": a connection to 0.0.0.0 reaches loopback
    "224.0.0.0/4", "255.255.255.255/32", "ff00::/8",  # multicast, broadcast
))
"""Addresses a wider allowed range never covers: an entry inside the range itself is needed (metadata
addresses first: link-local `169.254.0.0/16` listed does not cover `169.254.169.254`)."""

OFF_WORDS = "pulling cameras not in [[cameras]] is off: list the hosts that may be pulled in rtsp.allowed_hosts"


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _special(address: IPAddress) -> IPNetwork | None:
    return next((network for network in SPECIAL_NETWORKS if address in network), None)


def _mapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it maps (what a connection to it reaches)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _plain(address: IPAddress) -> IPAddress:
    """`address` as the allow-list sees it: mapped IPv4 as IPv4, without an IPv6 scope."""
    address = _mapped(address)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


async def resolve(host: str) -> list[IPAddress]:
    """The addresses of `host` (one look-up; none for an address); raises `PublishError(SOURCE_UNREACHABLE)`."""
    try:
        return [_mapped(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise PublishError(StreamEnd.SOURCE_UNREACHABLE, f"cannot resolve {host}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = _mapped(ipaddress.ip_address(str(info[4][0])))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise PublishError(StreamEnd.SOURCE_UNREACHABLE, f"cannot resolve {host}")
    return addresses


class HostPolicy:
    """Which camera hosts pictures and REST may pull (`rtsp.allowed_hosts`): names as written, addresses and
    networks; loopback, link-local and metadata addresses only by an entry inside their own range."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.names: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in allowed:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                self.names.add(entry.lower().rstrip("."))
                continue
            if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and \
                    network.network_address.ipv4_mapped is not None:
                network = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
            self.networks.append(network)

    @property
    def closed(self) -> bool:
        """Whether nothing may be pulled but the configured cameras (nothing is listed)."""
        return not self.names and not self.networks

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether `address` (one of `host`'s) may be connected."""
        address = _plain(address)
        special = _special(address)
        if special is not None:  # only an entry inside its own range: 0.0.0.0/0 does not open loopback
            return any(address in network and network.subnet_of(special)  # type: ignore[arg-type]
                       for network in self.networks if network.version == special.version)
        if host.lower().rstrip(".") in self.names:
            return True
        return any(address in network for network in self.networks)

    async def addresses(self, host: str, also: Sequence[IPAddress] = ()) -> list[IPAddress]:
        """The addresses of `host` that may be connected (resolved once; `also`: allowed besides the list);
        raises `PublishError(SOURCE_NOT_ALLOWED)` when there is none, naming the host as written only."""
        if self.closed and not also:
            raise PublishError(StreamEnd.SOURCE_NOT_ALLOWED, OFF_WORDS)
        refusal = PublishError(StreamEnd.SOURCE_NOT_ALLOWED, f"{host} is not among rtsp.allowed_hosts (loopback, "
                                                             "link-local and metadata addresses need their own entry)")
        literal = _is_address(host)
        if not also and not self.networks and not literal and host.lower().rstrip(".") not in self.names:
            raise refusal  # refused without a look-up: a client cannot make the server ask its resolver either
        allowed = [address for address in await resolve(host)
                   if _plain(address) in also or self.allows(host, address)]
        if not allowed:
            raise refusal
        return allowed

    async def check(self, host: str) -> None:
        """Raise `PublishError(SOURCE_NOT_ALLOWED)` unless `host` may be pulled (some address of it allowed)."""
        await self.addresses(host)


class CameraPulls:
    """The node's camera pulls, each running as a stream of the publishing service."""

    def __init__(self, settings: RtspSettings, publishing: PublishingService, make_source: SourceFactory,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.publishing = publishing
        self.make_source = make_source
        self.clock = clock
        self.hosts = HostPolicy(settings.allowed_hosts)
        self.start_timeout = settings.open_timeout + publishing.limits.connect_timeout + 1
        "Seconds a caller waits for a pull to publish: the camera's answer, then its media."
        self._pulls: dict[str, _Pull] = {}
        self._closing = False

    def pulls(self) -> list[PullInfo]:
        """Every pull, as listings show it."""
        return [pull.info() for pull in self._pulls.values()]

    def find(self, name_or_uri: str) -> PullInfo | None:
        """The pull of that stream name or url (with or without credentials), or None."""
        pull = self._find(name_or_uri)
        return pull.info() if pull is not None else None

    async def on_demand(self, name: str, requester: Requester) -> str | None:
        """The snapshot service's hook: for an rtsp:// name, the stream to picture once its pull publishes."""
        if not self.settings.on_demand or not is_camera_url(name):
            return None
        stream = public_url(name)
        pull = self._pulls.get(stream)
        if pull is not None and pull.origin is PullOrigin.ON_DEMAND and pull.task is not None and (
                pull.stopping or pull.status is PullStatus.ENDED):
            await asyncio.wait([pull.task], timeout=STOP_WAIT)  # it is on its way out (idle): start afresh
            pull = self._pulls.get(stream)
        try:
            if pull is None:
                pull = await self._start(name, stream, PullOrigin.ON_DEMAND, requester.grant,
                                         requester.hook_fields, None, tls_verify=True)
        except PublishError as exc:
            raise SnapshotError(picture_failure(exc.reason), exc.detail) from None
        reason = await self._wait(pull)
        if requester.address is not None:  # the server's own pictures (thumbnails) do not keep a pull up
            pull.last_used = self.clock()  # after the wait: the idle time counts from a picture, not the ask
        if reason is StreamEnd.NAME_IN_USE:  # another kind of stream has that name: picture it
            return stream
        if reason is not None:
            raise SnapshotError(picture_failure(reason))
        return stream

    async def start(self, uri: str, name: str | None, grant: Grant, hook_fields: Mapping[str, Any],
                    transport: str | None = None, *, tls_verify: bool = True) -> PullInfo:
        """Pull `uri` as stream `name` (default: the url without credentials) until it ends or is terminated.

        Returns once it publishes; raises `PublishError` with the reason it did not.
        """
        stream = name or public_url(uri)
        if stream in self._pulls:
            raise PublishError(StreamEnd.NAME_IN_USE)
        pull = await self._start(uri, stream, PullOrigin.REST, grant, hook_fields, transport, tls_verify=tls_verify)
        reason = await self._wait(pull)
        if reason is not None:
            raise PublishError(reason)
        return pull.info()

    def start_camera(self, camera: Camera, grant: Grant) -> None:
        """Pull a configured camera from now on, reconnecting whatever ends it (until `close`)."""
        transport = pull_transport(camera.uri, camera.transport, self.settings.transport)
        pull = _Pull(camera.name, camera.uri, transport, camera.tls_verify, PullOrigin.CONFIG, grant,
                     {"source": "config"}, self.clock())
        self._pulls[camera.name] = pull
        pull.task = asyncio.ensure_future(self._run(pull))

    async def terminate(self, name_or_uri: str) -> bool:
        """Stop the pull of that stream name or url; False when there is none."""
        pull = self._find(name_or_uri)
        if pull is None:
            return False
        await self._stop(pull, StreamEnd.TERMINATED)
        return True

    async def watch_idle(self) -> None:
        """Stop on-demand pulls nobody asked a picture of for `idle_timeout` seconds (runs until cancelled)."""
        limit = self.settings.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = self.clock()
            for pull in list(self._pulls.values()):
                if (pull.origin is PullOrigin.ON_DEMAND and pull.status is PullStatus.PUBLISHING
                        and now - pull.last_used > limit and not pull.stopping):
                    logger.info("camera %s idle for %.0f s: stopping", public_url(pull.uri), limit,
                                extra={"stream": pull.name})
                    pull.stopping = True
                    if pull.source is not None:
                        await pull.source.close(StreamEnd.IDLE)

    async def close(self) -> None:
        """Stop every pull (server shutdown)."""
        self._closing = True
        await asyncio.gather(*(self._stop(pull, StreamEnd.SHUTTING_DOWN) for pull in list(self._pulls.values())),
                             return_exceptions=True)

    def _find(self, name_or_uri: str) -> _Pull | None:
        pull = self._pulls.get(name_or_uri)
        if pull is None:
            shown = public_url(name_or_uri)
            pull = next((p for p in self._pulls.values() if public_url(p.uri) == shown), None)
        return pull

    async def _start(self, uri: str, name: str, origin: PullOrigin, grant: Grant,
                     hook_fields: Mapping[str, Any], transport: str | None, *, tls_verify: bool) -> _Pull:
        """Check the url and its host, then run the pull in its own task; raises `PublishError`."""
        if self._closing:
            raise PublishError(StreamEnd.SHUTTING_DOWN)
        parts = check_uri(uri)
        transport = pull_transport(uri, transport, self.settings.transport)
        try:
            await self.hosts.check(parts.hostname or "")
        except PublishError as refused:
            logger.info("pull of %s refused: %s", public_url(uri), refused.detail, extra={"stream": name})
            raise
        pull = self._pulls.get(name)
        if pull is not None:  # started by someone else while the host was checked
            return pull
        pull = self._pulls[name] = _Pull(name, uri, transport, tls_verify, origin, grant, hook_fields, self.clock())
        pull.task = asyncio.ensure_future(self._run(pull))
        return pull

    async def _wait(self, pull: _Pull) -> StreamEnd | None:
        """None once `pull` publishes, or why its attempt ended first."""
        try:
            return await asyncio.wait_for(asyncio.shield(pull.ready), self.start_timeout)
        except TimeoutError:
            return StreamEnd.SOURCE_TIMEOUT

    def _source_of(self, pull: _Pull) -> Callable[[str], Source]:
        def make(name: str) -> Source:
            pull.source = self.make_source(name, pull.uri, pull.transport, self._destinations(pull), pull.tls_verify)
            return pull.source
        return make

    def _destinations(self, pull: _Pull) -> Destinations:
        """Where `pull`'s attempt may connect: its camera's addresses, then each redirect target's.

        A configured camera is the operator's own: its host is connected whatever it resolves to, and
        its redirects may go to `rtsp.allowed_hosts` and to that camera's own addresses. Anything else is
        held to `rtsp.allowed_hosts` at every hop.
        """
        own: list[IPAddress] = []

        async def destinations(host: str, hop: int) -> list[IPAddress]:
            if hop == 0 and pull.origin is PullOrigin.CONFIG:
                addresses = await resolve(host)
                own[:] = [_plain(address) for address in addresses]
                return addresses
            return await self.hosts.addresses(host, also=own)
        return destinations

    async def _run(self, pull: _Pull) -> None:
        """Run `pull`'s stream; a configured camera again and again, with back-off, until stopped."""
        delay = RECONNECT_MIN
        shown = public_url(pull.uri)
        try:
            while True:
                if pull.ready.done():
                    pull.ready = asyncio.get_running_loop().create_future()
                pull.status = PullStatus.CONNECTING
                pull.attempts += 1
                request = PublishRequest(
                    name=pull.name, media_session_id=secrets.token_hex(8), grant=pull.grant,
                    make_source=self._source_of(pull), kind=SourceKind.RTSP, right=Right.PULL,
                    hook_fields={**pull.hook_fields, "uri": shown, "origin": pull.origin.value},
                    # A REST startup counts against its caller's address; on-demand and configured pulls are the
                    # server's own (their names are the operator's and the allow-list's).
                    client_address=pull.hook_fields.get("clientAddress") if pull.origin is PullOrigin.REST else None,
                )
                reason = await self.publishing.publish(request, _PullListener(pull, self.clock))
                published = pull.ready.done() and pull.ready.result() is None
                pull.source = None
                if (pull.origin is not PullOrigin.CONFIG or pull.stopping or self._closing
                        or reason in (StreamEnd.TERMINATED, StreamEnd.SHUTTING_DOWN)):
                    return
                if published:
                    delay = RECONNECT_MIN
                pull.status = PullStatus.RECONNECTING
                wait = random.uniform(delay / 2, delay)  # jitter: cameras of one dead switch do not return in step
                logger.info("camera %s (%s) ended: %s; again in %.1f s", pull.name, shown, reason, wait,
                            extra={"stream": pull.name})
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.settings.reconnect_max)
        finally:
            pull.status = PullStatus.ENDED
            if self._pulls.get(pull.name) is pull:
                del self._pulls[pull.name]
            if not pull.ready.done():
                pull.ready.set_result(pull.reason or StreamEnd.STOPPED_BY_PUBLISHER)

    async def _stop(self, pull: _Pull, reason: StreamEnd) -> None:
        pull.stopping = True
        task = pull.task
        if pull.source is not None:  # publishing (else between two attempts, or not started: nothing to tell)
            await pull.source.close(reason)
            if task is not None:
                await asyncio.wait([task], timeout=STOP_WAIT)
        await cancel_and_wait(task)
