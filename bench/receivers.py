"""Reference receivers for the benchmarks: plain aiortc, as a snapshot server without streamsnap's engine would be,
and the floors of receiving at all.

    python bench/receivers.py --mode decode-all --port 8090   # aiortc default: every frame decoded and read
    python bench/receivers.py --mode floor --port 8090        # aiortc with decoding replaced by nothing
    python bench/receivers.py --mode uvloop-unprotect --port 8090
    python bench/receivers.py --mode blocking-unprotect --port 8090

Each speaks just enough of the WCS protocol for bench/publisher.py (connection, publishStream, ping).
decode-all also answers `GET /streams/{name}/snapshot.png` with its stream's latest decoded frame,
encoded by streamsnap's own PNG encoder (`streamsnap.media.imaging.encode`: libpng, Up filter,
level 1) in a thread, so that comparing the two compares decoding strategies, not encoders.

The two floor loops do nothing with a packet but unprotect it (pylibsrtp, with the keys of
aiortc's DTLS handshake, which still runs as usual): what receiving SRTP costs in Python before
any RTP work. uvloop-unprotect takes each SRTP datagram in the ICE socket's datagram callback
(uvloop); blocking-unprotect takes the sockets off the event loop and reads them in a plain
thread that blocks in epoll and recv()s each socket dry. STUN, DTLS and SRTCP still go to
aioice/aiortc, so the peer connections stay up. Both answer `GET /packets` with the count of
SRTP packets they unprotected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import aioice.ice
import ifaddr
import pylibsrtp
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamsnap.media.aiortc_private import intercept_datagrams, srtp_receive_session
from streamsnap.media.frames import EncodedFrame
from streamsnap.media.imaging import ImageSpec, Picture, encode

LATEST = web.AppKey("latest", dict)
"decode-all: the latest decoded frame of each stream, by name."
FLOOR = web.AppKey("floor", object)
"uvloop-unprotect and blocking-unprotect: the floor loop."
DatagramHandler = Callable[[bytes, Any], None]


def is_srtp(data: bytes) -> bool:
    """An SRTP packet (RTP version 2, not an RTCP packet type): STUN starts 0-3, DTLS 20-63 (RFC 7983)."""
    return len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224


class Floor:
    """Takes the SRTP datagrams of each peer connection's ICE sockets once DTLS is connected; counts them."""

    def __init__(self) -> None:
        self.packets = 0
        "SRTP packets unprotected (forged or replayed ones included: they cost the same)."

    def attach(self, pc: RTCPeerConnection) -> None:
        """Take over the sockets of `pc` as soon as its DTLS transport is connected."""
        transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
        for dtls in transports.values():
            def on_state(dtls: Any = dtls) -> None:
                if dtls.state == "connected":
                    session = srtp_receive_session(dtls)
                    assert session is not None
                    intercept_datagrams(dtls, lambda original: self.take(original, session))
            dtls.on("statechange", on_state)

    def take(self, original: DatagramHandler, session: pylibsrtp.Session) -> DatagramHandler:
        raise NotImplementedError


class UvloopFloor(Floor):
    """In the datagram callback: unprotect, and nothing else."""

    def take(self, original: DatagramHandler, session: pylibsrtp.Session) -> DatagramHandler:
        unprotect = session.unprotect

        def datagram_received(data: bytes, addr: Any) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 224 and len(data) >= 12:
                self.packets += 1
                try:
                    unprotect(data)
                except pylibsrtp.Error:
                    pass
            else:
                original(data, addr)

        return datagram_received


class BlockingFloor(Floor):
    """A thread blocked in epoll reads the sockets dry and unprotects; the event loop no longer reads them."""

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._epoll = select.epoll()
        self._sockets: dict[int, tuple[socket.socket, Callable[[bytes], bytes], DatagramHandler]] = {}
        threading.Thread(target=self._run, name="blocking-floor", daemon=True).start()

    def take(self, original: DatagramHandler, session: pylibsrtp.Session) -> DatagramHandler:
        protocol = original.__self__  # type: ignore[attr-defined]
        fd = protocol.transport.get_extra_info("socket").fileno()
        self._loop._remove_reader(fd)  # type: ignore[attr-defined]  # asyncio's selector loop: stop reading it
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        self._sockets[sock.fileno()] = (sock, session.unprotect, original)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        return original

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                sock, unprotect, original = self._sockets[fd]
                while True:
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    except OSError:
                        self._epoll.unregister(fd)
                        break
                    if 127 < data[0] < 192 and not 191 < data[1] < 224 and len(data) >= 12:
                        self.packets += 1
                        try:
                            unprotect(data)
                        except pylibsrtp.Error:
                            pass
                    else:  # STUN, DTLS, SRTCP: back to aioice on the event loop
                        self._loop.call_soon_threadsafe(original, data, addr)


async def packets(request: web.Request) -> web.Response:
    """The floors: SRTP packets unprotected so far."""
    floor = request.app[FLOOR]
    assert isinstance(floor, Floor)
    return web.json_response({"packets": floor.packets})


class DiscardingQueue:
    """Stands in for aiortc's decoder input queue: frames are dropped, nothing is decoded."""

    def __init__(self) -> None:
        import threading

        self._stopped = threading.Event()

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()

    def get(self) -> None:
        self._stopped.wait()


async def drain(track: Any, latest: dict[str, Any], name: str) -> None:
    """Keep the stream's latest decoded frame, with the time its first frame came (to tell how late the
    decoder runs: the publisher sends in real time)."""
    loop = asyncio.get_running_loop()
    first: tuple[float, int] | None = None
    try:
        while True:
            frame = await track.recv()
            if first is None:
                first = (loop.time(), frame.pts)
            latest[name] = (frame, first)
    except MediaStreamError:
        pass


async def snapshot(request: web.Request) -> web.Response:
    """decode-all: the latest decoded frame of a stream as PNG (streamsnap's encoder, in a thread)."""
    held = request.app[LATEST].get(request.match_info["name"])
    if held is None:
        return web.Response(status=404)
    frame, (first_arrival, first_pts) = held
    # How old the depicted moment is: behind real time by however far the decoder lags (90 kHz clock).
    age = asyncio.get_running_loop().time() - first_arrival - (frame.pts - first_pts) / 90_000
    picture = Picture(frame, EncodedFrame(b"", 0, True, 0.0), 1)
    data = await asyncio.to_thread(encode, picture, ImageSpec(), 1)
    return web.Response(body=data, content_type="image/png", headers={"X-Frame-Age-Ms": f"{max(0.0, age) * 1000:.0f}"})


async def signaling(request: web.Request) -> web.WebSocketResponse:
    mode = request.app["mode"]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    pcs: list[RTCPeerConnection] = []
    tasks: set[asyncio.Task[None]] = set()
    async for frame in ws:
        if frame.type is not WSMsgType.TEXT:
            continue
        message = json.loads(frame.data)
        body = (message.get("data") or [None])[0]
        if message["message"] == "connection":
            await ws.send_str(json.dumps({"message": "getUserData", "data": [{"sessionId": "x", "authToken": "y"}]}))
        elif message["message"] == "publishStream":
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            if mode in ("uvloop-unprotect", "blocking-unprotect"):
                floor = request.app[FLOOR]
                assert isinstance(floor, Floor)
                floor.attach(pc)
            for transceiver in pc.getTransceivers():
                if mode in ("floor", "uvloop-unprotect", "blocking-unprotect"):
                    transceiver.receiver._RTCRtpReceiver__decoder_queue = DiscardingQueue()
                else:
                    task = asyncio.ensure_future(drain(transceiver.receiver.track, request.app[LATEST], body["name"]))
                    tasks.add(task)
            await pc.setLocalDescription(await pc.createAnswer())
            sid = body["mediaSessionId"]
            await ws.send_str(json.dumps({"message": "setRemoteSDP", "data": [sid, pc.localDescription.sdp]}))
            await ws.send_str(json.dumps({"message": "notifyStreamStatusEvent", "data": [
                {"mediaSessionId": sid, "name": body["name"], "status": "PUBLISHING", "info": ""}]}))
    for pc in pcs:
        await pc.close()
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["decode-all", "floor", "uvloop-unprotect", "blocking-unprotect"],
                        required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"],
                        help="event loop (default: uvloop for uvloop-unprotect, else asyncio)")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loop = args.loop or ("uvloop" if args.mode == "uvloop-unprotect" else "asyncio")
    if args.mode == "blocking-unprotect" and loop != "asyncio":
        parser.error("blocking-unprotect takes the sockets off asyncio's selector loop: --loop asyncio")
    addresses = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if "127.0.0.1" in addresses else addresses

    async def make_app() -> web.Application:
        app = web.Application()
        app["mode"] = args.mode
        app[LATEST] = {}
        if args.mode in ("uvloop-unprotect", "blocking-unprotect"):
            app[FLOOR] = UvloopFloor() if args.mode == "uvloop-unprotect" else BlockingFloor()
            app.router.add_get("/packets", packets)
        app.router.add_get("/streams/{name}/snapshot.png", snapshot)
        app.router.add_get("/{tail:.*}", signaling)
        return app

    if loop == "uvloop":
        import uvloop

        web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, loop=uvloop.new_event_loop())
    else:
        web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
