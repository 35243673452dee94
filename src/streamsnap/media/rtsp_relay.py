"""The relay in front of FFmpeg for one attempt of a camera pull (asyncio, on the node's loop).

FFmpeg never connects to a camera, never resolves a name and never follows a redirect: streamsnap
resolves the camera's host once, checks the addresses, and `CameraRelay.open` connects to a checked
address itself; FFmpeg is given `rtsp://[user:pass@]127.0.0.1:<relay port>/<path>` (the credentials
stay in the url so that its basic and digest authentication work) and talks to the relay only.
Every byte the camera sends passes `RtspGuard` (`media/rtsp_guard.py`) before FFmpeg sees it.
An rtsps:// camera is connected with TLS (its certificate checked against the host as written, unless
the pull opted out); FFmpeg still speaks plain RTSP, to the relay on 127.0.0.1 only.

For UDP transport the relay holds two UDP port pairs: one towards the camera (its SETUP names
them as the client ports) that takes datagrams from the checked camera address only, and one on
127.0.0.1 that FFmpeg is told are the server ports. FFmpeg's own RTP/RTCP (receiver reports, the
NAT "punch" packets) go to the camera's checked address and the server ports it answered, never to
a `source=` it named.

Time: the relay closes both sides (so FFmpeg's blocking open returns at once, and its thread ends)
when the probe deadline passes before the source calls `opened`, and whenever the source closes it.
Memory: one bounded parse buffer each way, and back-pressure: a side whose peer does not read is
not read either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any, cast

from streamsnap.media.rtsp_guard import (
    ClientPorts,
    Event,
    GuardLimits,
    GuardRefusal,
    Redirected,
    RtspGuard,
    ServerPorts,
    UdpPorts,
)
from streamsnap.reasons import PublishError, StreamEnd

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
RATE_WINDOW = 0.25
"Seconds over which a camera's packet rate is counted (a quarter of `packets_per_second` each)."
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Side(asyncio.Protocol):
    """One TCP side of the relay (the camera's or FFmpeg's)."""

    def __init__(self, relay: CameraRelay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: asyncio.Transport | None = None
        self._holds: set[str] = set()
        "Why reading is paused: the peer's buffer is full, or the peer is not there yet."

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.relay._connected(self)

    def data_received(self, data: bytes) -> None:
        self.relay._received(self, data)

    def eof_received(self) -> bool | None:
        self.relay._ended(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay._ended(self)

    def pause_writing(self) -> None:
        self.relay._peer_of(self).hold("peer full")

    def resume_writing(self) -> None:
        self.relay._peer_of(self).release("peer full")

    def hold(self, why: str) -> None:
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._holds.add(why)

    def release(self, why: str) -> None:
        if why in self._holds:
            self._holds.discard(why)
            if not self._holds and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()


class _Datagrams(asyncio.DatagramProtocol):
    """One UDP socket of the relay; what it receives goes to `relay._datagram`."""

    def __init__(self, relay: CameraRelay, role: str) -> None:
        self.relay = relay
        self.role = role
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Neither CPython's selector datagram transport nor uvloop's subclasses DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.relay._datagram(self.role, data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from a port that is gone: nothing to do
        pass


class _Refused(asyncio.Protocol):
    """A second connection to a relay's port (only FFmpeg's is taken)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class CameraRelay:
    """The relay of one attempt: FFmpeg on one side, a checked camera address on the other."""

    def __init__(self, guard: RtspGuard, shown: str) -> None:
        self.guard = guard
        self.shown = shown
        "The camera's url without credentials, for words."
        self.port = 0
        "The port FFmpeg connects to on 127.0.0.1."
        self.redirect: str | None = None
        "Where the camera redirected (not followed here), if it did."
        self.failure: PublishError | None = None
        "Why the relay ended the attempt, if it did."
        self.finished = asyncio.get_running_loop().create_future()
        "Resolved when the relay has closed both sides."
        self.camera = _Side(self, "camera")
        self.client = _Side(self, "FFmpeg")
        self.camera_address: IPAddress | None = None
        self._listener: asyncio.Server | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._udp: dict[str, _Datagrams] = {}
        self._client_ports: tuple[int, int] | None = None
        self._server_ports: tuple[int, int] | None = None
        self._accepted = False
        self._window = (0.0, 0)
        "The packet rate's current window: when it ends (the loop's clock), and the camera's packets before it."
        self._udp_packets = 0

    @classmethod
    async def open(cls, addresses: Sequence[IPAddress], port: int, *, transport: str, limits: GuardLimits,
                   deadline: float, shown: str, tls: ssl.SSLContext | None = None, host: str = "") -> CameraRelay:
        """Connect to the first of `addresses` that answers and listen for FFmpeg; raises `PublishError`.

        `deadline` (the loop's clock) ends the attempt unless `opened` was called before it. With `tls` the
        camera is spoken to over TLS, its certificate checked against `host` (the name as written).
        """
        loop = asyncio.get_running_loop()
        relay = cls(RtspGuard(limits, transport), shown)
        relay._deadline = loop.call_at(deadline, relay._expire)
        try:
            await relay._connect(addresses, port, deadline, tls, host)
            if transport == "udp":
                relay.guard.udp = await relay._bind_udp()
            relay._listener = await loop.create_server(relay._accept, LOOPBACK, 0, backlog=1)
            if relay.finished.done():  # the deadline passed meanwhile
                raise relay.failure or PublishError(StreamEnd.SOURCE_TIMEOUT, f"{shown} did not answer")
        except BaseException:
            relay.close()
            raise
        relay.port = relay._listener.sockets[0].getsockname()[1]
        return relay

    def opened(self) -> None:
        """FFmpeg has opened the camera: the probe deadline no longer applies."""
        if self._deadline is not None:
            self._deadline.cancel()

    def close(self, failure: PublishError | None = None) -> None:
        """Close both sides at once (FFmpeg's reads end), and every socket of the relay; idempotent."""
        if failure is not None and self.failure is None and self.redirect is None:
            self.failure = failure
        for side in (self.camera, self.client):
            if side.transport is not None:
                side.transport.abort()
        self._release_sockets()
        if not self.finished.done():
            self.finished.set_result(None)

    def _release_sockets(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._listener is not None:
            self._listener.close()
        for datagrams in self._udp.values():
            if datagrams.transport is not None:
                datagrams.transport.close()

    # Setting up.

    async def _connect(self, addresses: Sequence[IPAddress], port: int, deadline: float,
                       tls: ssl.SSLContext | None, host: str) -> None:
        loop = asyncio.get_running_loop()
        words = "no address"
        for address in addresses:
            try:
                async with asyncio.timeout_at(deadline):
                    if tls is None:
                        await loop.create_connection(lambda: self.camera, str(address), port)
                    else:
                        await loop.create_connection(lambda: self.camera, str(address), port, ssl=tls,
                                                     server_hostname=host,
                                                     ssl_handshake_timeout=max(0.1, deadline - loop.time()))
            except TimeoutError:
                raise PublishError(StreamEnd.SOURCE_TIMEOUT, f"{self.shown} did not answer") from None
            except ssl.SSLCertVerificationError as exc:
                raise PublishError(StreamEnd.SOURCE_UNTRUSTED,
                                   f"{self.shown}: certificate not trusted ({exc.verify_message}); the authorities "
                                   f"are rtsp.ca_file or the system's") from None
            except ssl.SSLError as exc:
                words = f"TLS: {exc.reason or type(exc).__name__}"
                continue
            except OSError as exc:
                words = exc.strerror or type(exc).__name__
                continue
            self.camera_address = address
            return
        raise PublishError(StreamEnd.SOURCE_UNREACHABLE, f"{self.shown}: {words}")

    async def _bind_udp(self) -> UdpPorts:
        """Two port pairs (RTP even, RTCP the next): towards the camera, and on 127.0.0.1 for FFmpeg."""
        assert self.camera.transport is not None
        local = self.camera.transport.get_extra_info("sockname")[0]
        camera = await self._bind_pair(local, "camera")
        loopback = await self._bind_pair(LOOPBACK, "loopback")
        return UdpPorts(camera, loopback)

    async def _bind_pair(self, host: str, role: str) -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(32):
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1] & ~1
            if port == 0 or port + 1 > 65535:
                continue
            try:
                _, rtp = await loop.create_datagram_endpoint(lambda: _Datagrams(self, f"{role} rtp"),
                                                             local_addr=(host, port))
            except OSError:
                continue
            try:
                _, rtcp = await loop.create_datagram_endpoint(lambda: _Datagrams(self, f"{role} rtcp"),
                                                              local_addr=(host, port + 1))
            except OSError:
                if rtp.transport is not None:
                    rtp.transport.close()
                continue
            self._udp[f"{role} rtp"], self._udp[f"{role} rtcp"] = rtp, rtcp
            return port, port + 1
        raise PublishError(StreamEnd.ERROR, "no free UDP port pair")

    # Both sides' bytes.

    def _accept(self) -> asyncio.BaseProtocol:
        """The protocol of a connection to the relay's port: FFmpeg's, the first; any other is refused."""
        if self.client.transport is None and not self._accepted:
            self._accepted = True
            return self.client
        return _Refused()

    def _peer_of(self, side: _Side) -> _Side:
        return self.client if side is self.camera else self.camera

    def _connected(self, side: _Side) -> None:
        if self.finished.done():  # a connection that completed after the relay closed (the deadline)
            if side.transport is not None:
                side.transport.abort()
            return
        if side is self.camera:
            side.hold("no FFmpeg yet")  # nothing is read from the camera before FFmpeg is there to hear it
            return
        if self._listener is not None:
            self._listener.close()  # one connection: FFmpeg's
        self.camera.release("no FFmpeg yet")

    def _received(self, side: _Side, data: bytes) -> None:
        if self.finished.done():
            return
        try:
            if side is self.camera:
                out, events = self.guard.from_camera(data, self._budget())
            else:
                out, events = self.guard.from_client(data)
        except GuardRefusal as refusal:
            logger.info("camera %s: %s", self.shown, refusal.words)
            self.close(PublishError(refusal.reason, f"{self.shown} {refusal.words}"))
            return
        peer = self._peer_of(side)
        if out and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(out)
        for event in events:
            self._event(event)
        if side is self.camera:
            if self.guard.backlog:
                # Over its packet rate: the rest waits for the next window, and the camera is not read meanwhile
                # (TCP pushes back on it); the work of one read is bounded by the rate, whatever it holds.
                self.camera.hold("rate")
                asyncio.get_running_loop().call_at(self._window[0], self._received, self.camera, b"")
            else:
                self.camera.release("rate")

    def _event(self, event: Event) -> None:
        if isinstance(event, Redirected):
            self.redirect = event.location
            self.close()
        elif isinstance(event, ClientPorts):
            self._client_ports = (event.rtp, event.rtcp)
        elif isinstance(event, ServerPorts):
            self._server_ports = (event.rtp, event.rtcp)

    def _ended(self, side: _Side) -> None:
        """One side closed: the other is closed once what it was sent is flushed (a camera's last answer)."""
        if self.finished.done():
            return
        for each in (self._peer_of(side), side):
            if each.transport is not None:
                each.transport.close()
        self._release_sockets()
        self.finished.set_result(None)

    def _budget(self) -> int:
        """The camera's packets (interleaved and UDP) left in this window of its `packets_per_second`."""
        now = asyncio.get_running_loop().time()
        sent = self.guard.camera_packets + self._udp_packets
        if now >= self._window[0]:
            self._window = (now + RATE_WINDOW, sent)
        return max(0, int(self.guard.limits.packets_per_second * RATE_WINDOW) - (sent - self._window[1]))

    def _expire(self) -> None:
        logger.info("camera %s: no video within the open timeout", self.shown)
        self.close(PublishError(StreamEnd.SOURCE_TIMEOUT, f"{self.shown} did not describe and send its video "
                                                          f"within rtsp.open_timeout"))

    def _datagram(self, role: str, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.finished.done():
            return
        if role.startswith("camera"):
            try:
                sender = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            except ValueError:
                return
            if sender != self.camera_address or self._client_ports is None:
                return  # only the checked camera address is heard
            if self._budget() <= 0:
                return  # over its packet rate: UDP has no back-pressure, the rest of the window is dropped
            self._udp_packets += 1
            if role == "camera rtp":
                try:
                    if not self.guard.check_udp_rtp(data):
                        return
                except GuardRefusal as refusal:
                    logger.info("camera %s: %s", self.shown, refusal.words)
                    self.close(PublishError(refusal.reason, f"{self.shown} {refusal.words}"))
                    return
                self._send("loopback rtp", data, (LOOPBACK, self._client_ports[0]))
            else:
                self._send("loopback rtcp", data, (LOOPBACK, self._client_ports[1]))
            return
        # From FFmpeg, on 127.0.0.1: to the camera's checked address, at the server ports it answered.
        if self._client_ports is None or self._server_ports is None or self.camera_address is None:
            return
        rtp = role == "loopback rtp"
        if addr[0] != LOOPBACK or addr[1] != self._client_ports[0 if rtp else 1]:
            return
        self._send("camera rtp" if rtp else "camera rtcp", data,
                   (str(self.camera_address), self._server_ports[0 if rtp else 1]))

    def _send(self, role: str, data: bytes, to: tuple[str, int]) -> None:
        datagrams = self._udp.get(role)
        if datagrams is not None and datagrams.transport is not None and not datagrams.transport.is_closing():
            datagrams.transport.sendto(data, to)
