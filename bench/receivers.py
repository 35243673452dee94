"""Reference receivers for the benchmarks: plain aiortc, as a snapshot server without streamsnap's engine would be.

    python bench/receivers.py --mode decode-all --port 8090   # aiortc default: every frame decoded and read
    python bench/receivers.py --mode floor --port 8090        # aiortc with decoding replaced by nothing

Each speaks just enough of the WCS protocol for bench/publisher.py (connection, publishStream, ping).
decode-all also answers `GET /streams/{name}/snapshot.png` with its stream's latest decoded frame,
encoded by streamsnap's own PNG encoder (`streamsnap.media.imaging.encode`: libpng, Up filter,
level 1) in a thread, so that comparing the two compares decoding strategies, not encoders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

import aioice.ice
import ifaddr
from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streamsnap.media.frames import EncodedFrame
from streamsnap.media.imaging import ImageSpec, Picture, encode

LATEST = web.AppKey("latest", dict)
"decode-all: the latest decoded frame of each stream, by name."


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
            for transceiver in pc.getTransceivers():
                if mode == "floor":
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
    parser.add_argument("--mode", choices=["decode-all", "floor"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    addresses = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if "127.0.0.1" in addresses else addresses
    app = web.Application()
    app["mode"] = args.mode
    app[LATEST] = {}
    app.router.add_get("/streams/{name}/snapshot.png", snapshot)
    app.router.add_get("/{tail:.*}", signaling)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
