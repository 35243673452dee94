"""Publish N streams replaying a pre-encoded clip (no encoding), answering PLIs with keyframes.

    python bench/publisher.py ws://127.0.0.1:8080/ --streams 10 --codec VP8 --size 640x480

Prints READY when every stream is PUBLISHING, then runs until killed, printing once a second
`STATS <bytes sent> <keyframes sent on request>` over all streams since READY (the upstream traffic).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import sys
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_PTIME

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.clips import Clip, load_clip
from streamsnap.wcsclient import WcsClient

_FORCE_KEYFRAME = "_RTCRtpSender__force_keyframe"


class ReplayTrack(MediaStreamTrack):
    """Sends a clip's encoded frames at 30 fps; a PLI makes the next frame a keyframe."""

    kind = "video"

    def __init__(self, clip: Clip, offset: int) -> None:
        super().__init__()
        self.clip = clip
        self.index = offset
        self.sender: Any = None
        self._start: float | None = None
        self._timestamp = 0
        self.sent_bytes = 0
        "Encoded bytes handed to the sender (RTP and SRTP overhead not counted)."
        self.keyframes_on_request = 0

    async def recv(self) -> av.Packet:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._timestamp += int(VIDEO_PTIME * VIDEO_CLOCK_RATE)
            await asyncio.sleep(max(0.0, self._start + self._timestamp / VIDEO_CLOCK_RATE - loop.time()))
        position = self.index % len(self.clip.frames)
        data = self.clip.frames[position]
        if self.sender is not None and getattr(self.sender, _FORCE_KEYFRAME, False):
            setattr(self.sender, _FORCE_KEYFRAME, False)
            data = self.clip.keyframes[position]
            self.keyframes_on_request += 1
        self.index += 1
        self.sent_bytes += len(data)
        packet = av.Packet(data)
        packet.pts = self._timestamp
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return packet


async def publish_all(url: str, streams: int, codec: str, width: int, height: int, prefix: str) -> None:
    clip = load_clip(codec, width, height)
    clients = []
    tracks = []
    for index in range(streams):
        client = await WcsClient.connect(url)
        track = ReplayTrack(clip, offset=index * 7)
        tracks.append(track)
        publication = await client.publish(f"{prefix}{index}", [track], codec=codec, wait=False)
        assert publication.pc is not None
        track.sender = publication.pc.getSenders()[0]
        clients.append((client, publication))
    for client, publication in clients:
        await client.wait_status(publication, "PUBLISHING", timeout=60)
    print("READY", flush=True)
    start_bytes = sum(t.sent_bytes for t in tracks)
    start_keyframes = sum(t.keyframes_on_request for t in tracks)
    while True:
        await asyncio.sleep(1.0)
        print(f"STATS {sum(t.sent_bytes for t in tracks) - start_bytes} "
              f"{sum(t.keyframes_on_request for t in tracks) - start_keyframes}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--codec", default="VP8", choices=["VP8", "H264"])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--prefix", default="s")
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    width, height = (int(v) for v in args.size.split("x"))
    asyncio.run(publish_all(args.url, args.streams, args.codec, width, height, args.prefix))


if __name__ == "__main__":
    main()
