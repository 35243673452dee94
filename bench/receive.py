"""Receive cost: µs of server CPU per received RTP packet, and cores per idle stream, beside the floor loops.

    python bench/receive.py                          # 40 and 100 streams, 20 s windows, each receiver twice
    python bench/receive.py --quick                  # 40 streams, 8 s windows, once
    python bench/receive.py --before /tmp/before/src # and streamsnap as another checkout's src/ has it

The same traffic for every receiver: N publishers replaying the pre-encoded clip of
bench/clips.py, VP8 640x480, 1.5 Mbit/s, 30 fps (about 160 RTP packets a second each; nothing
encoded while measuring), on CPU 1: streamsnap's WCS client and aiortc do the signalling, ICE
and DTLS, and the clip's packets (as aiortc's sender makes them) go through each sender's
SRTP from a lean loop, so that 100 streams fit on the publishers' core. The receiver runs
alone on CPU 0, nobody asking pictures:

  streamsnap          `streamsnap serve` (uvloop), this checkout: the receive path's native short way if built
  streamsnap-python   the same with STREAMSNAP_RECEIVE_PATH=python: every packet in Python
  before              `streamsnap serve` from the src/ given by --before (e.g. `git archive` of main)
  uvloop+unprotect    bench/receivers.py: aiortc's handshake, then each SRTP datagram unprotected
                      in the socket's datagram callback (uvloop) and dropped
  blocking+unprotect  bench/receivers.py: the sockets read by a thread blocked in epoll, recv()
                      until empty, unprotect, drop; no event loop on the way
  aiortc floor        bench/receivers.py --mode floor on uvloop: aiortc with its decoder replaced by nothing

µs per packet = the receiver's CPU (user + system, all threads) over the window / the RTP
packets it received in the window (sent by the publishers, less the drops counted on the
receiver's sockets). Cores per idle stream = CPU / window / streams.
The machine may be shared: the receivers of one stream count are measured one after another,
in turns (`--repeat`), so compare the ratios within a run; the table gives each figure's median.
Prints markdown tables and writes bench/results/receive-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import free_port, wait_listening  # noqa: E402

from bench.common import ONE_ADDRESS_FOR_MANY, PUBLISHER_CPU, RECEIVER_CPU, RESULTS, cpu_seconds  # noqa: E402

CODEC, WIDTH, HEIGHT = "VP8", 640, 480
RECEIVERS = ("streamsnap", "streamsnap-python", "uvloop+unprotect", "blocking+unprotect", "aiortc floor")


@dataclass
class Sample:
    receiver: str
    streams: int
    seconds: float
    cpu_seconds: float
    packets: int
    "RTP packets received in the window."
    dropped: int
    "Datagrams the receiver's sockets dropped in the window (its receive buffers were full)."
    lost: int = 0
    "Streams whose connection ended before the window did (a starved receiver or publisher)."

    @property
    def us_per_packet(self) -> float:
        return self.cpu_seconds / self.packets * 1e6 if self.packets else float("nan")

    @property
    def cores_per_stream(self) -> float:
        return self.cpu_seconds / self.seconds / self.streams


def receiver_command(receiver: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one receiver."""
    serve = [sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--ice-address", "127.0.0.1", "--log-level", "warning"]
    reference = [sys.executable, str(ROOT / "bench" / "receivers.py"), "--port", str(port)]
    if receiver == "streamsnap":
        return serve, {}
    if receiver == "streamsnap-python":
        return serve, {"STREAMSNAP_RECEIVE_PATH": "python"}
    if receiver.startswith("before="):
        return serve, {"PYTHONPATH": receiver.removeprefix("before=")}
    mode = {"uvloop+unprotect": ["--mode", "uvloop-unprotect"],
            "blocking+unprotect": ["--mode", "blocking-unprotect"],
            "aiortc floor": ["--mode", "floor", "--loop", "uvloop"]}[receiver]
    return reference + mode, {}


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def udp_drops(pid: int) -> int:
    """Datagrams dropped so far by the UDP sockets `pid` holds (receive buffer full)."""
    inodes = socket_inodes(pid)
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                drops += int(fields[12])
    return drops


class Publishers:
    """N publishers in one process on the publisher CPU; asks it how many RTP packets it sent."""

    def __init__(self, url: str, streams: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--publish", url, "--streams", str(streams)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {PUBLISHER_CPU}))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            self.close()
            raise RuntimeError(f"publishers did not start: {line!r}")

    def packets_sent(self) -> tuple[int, int]:
        """RTP packets sent so far, and streams whose connection was lost."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        _, sent, lost = self.proc.stdout.readline().split()
        return int(sent), int(lost)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def receiver_process(receiver: str, port: int) -> Iterator[subprocess.Popen[str]]:
    command, env = receiver_command(receiver, port)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **ONE_ADDRESS_FOR_MANY, **env},
                            preexec_fn=lambda: os.sched_setaffinity(0, {RECEIVER_CPU}))
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def measure(receiver: str, streams: int, warmup: float, seconds: float) -> Sample:
    port = free_port()
    with receiver_process(receiver, port) as proc:
        publishers = Publishers(f"ws://127.0.0.1:{port}/bench", streams)
        try:
            time.sleep(warmup)
            (sent, _), drops, cpu = publishers.packets_sent(), udp_drops(proc.pid), cpu_seconds(proc.pid)
            wall = time.monotonic()
            time.sleep(seconds)
            (sent_end, lost), drops_end, cpu_end = publishers.packets_sent(), udp_drops(proc.pid), cpu_seconds(proc.pid)
            elapsed = time.monotonic() - wall
        finally:
            publishers.close()
    dropped = drops_end - drops
    return Sample(receiver, streams, elapsed, cpu_end - cpu, sent_end - sent - dropped, dropped, lost)


class SilentTrack(MediaStreamTrack):
    """A video track that never gives a frame: aiortc's sender waits on it, and the replay below sends instead."""

    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Event().wait()


async def replay(sender: Any, payload_type: int, extensions: bytes, frames: list[list[bytes]], offset: int,
                 start: float, sent: list[int]) -> None:
    """Send the clip's packets at 30 fps through `sender`'s SRTP, counting them in `sent`."""
    loop = asyncio.get_running_loop()
    send_rtp = sender.transport._send_rtp  # protects with the sender's SRTP session, sends on its ICE socket
    ssrc, sequence, timestamp = sender._ssrc, random.randrange(0x10000), random.randrange(1 << 32)
    header = struct.Struct("!BBHII")
    index = offset
    deadline = start
    while True:
        payloads = frames[index % len(frames)]
        index += 1
        for number, payload in enumerate(payloads):
            marker = 0x80 if number == len(payloads) - 1 else 0
            packet = header.pack(0x90, marker | payload_type, sequence, timestamp, ssrc) + extensions + payload
            try:
                await send_rtp(packet)
            except ConnectionError:
                return  # the connection ended (counted as lost)
            sequence = (sequence + 1) & 0xFFFF
            sent[0] += 1
        timestamp = (timestamp + 3000) & 0xFFFFFFFF
        deadline += 1 / 30
        await asyncio.sleep(max(0.0, deadline - loop.time()))


async def publish(url: str, streams: int) -> None:
    """Publish `streams` replays of the clip; print READY, then answer each line of stdin with PACKETS <sent>.

    aiortc does the signalling, ICE and DTLS (through streamsnap's WCS client) and keeps sending
    its RTCP; the video is the clip's frames, packetized once as aiortc's sender does (VP8
    payload descriptors with a picture ID, at most 1300 bytes, and the two header extensions
    aiortc sends: abs-send-time and mid), sent through the sender's SRTP session at 30 fps. So
    a packet costs the publisher a protect and a send, and 100 streams fit on its core.
    """
    from aiortc.codecs.vpx import Vp8Encoder

    from bench.clips import load_clip
    from streamsnap.wcsclient import WcsClient

    clip = load_clip(CODEC, WIDTH, HEIGHT)
    frames = [Vp8Encoder._packetize(frame, index & 0x7FFF) for index, frame in enumerate(clip.frames)]
    loop = asyncio.get_running_loop()
    sent = [0]
    clients, tasks = [], []
    for index in range(streams):
        client = await WcsClient.connect(url)
        publication = await client.publish(f"s{index}", [SilentTrack()], codec=CODEC, wait=False)
        assert publication.pc is not None
        sdp = publication.pc.localDescription.sdp
        payload_type = int(re.findall(rf"a=rtpmap:(\d+) {CODEC}/90000", sdp)[0])
        abs_send_time = int(re.findall(r"a=extmap:(\d+) \S+abs-send-time", sdp)[0])
        mid = int(re.findall(r"a=extmap:(\d+) urn:ietf:params:rtp-hdrext:sdes:mid", sdp)[0])
        # One-byte header extensions (RFC 8285): abs-send-time (3 bytes), mid "0" (1 byte), padded to 2 words.
        extensions = b"\xbe\xde\x00\x02" + bytes([abs_send_time << 4 | 2, 0x12, 0x34, 0x56, mid << 4, 0x30, 0, 0])
        sender = publication.pc.getSenders()[0]
        async with asyncio.timeout(60):
            while sender.transport.state != "connected":  # noqa: ASYNC110 -- aiortc's state, polled
                await asyncio.sleep(0.01)
        tasks.append(asyncio.ensure_future(replay(sender, payload_type, extensions, frames, index * 7,
                                                  loop.time() + (index % 30) / 900, sent)))
        clients.append((client, publication))
    for client, publication in clients:
        await client.wait_status(publication, "PUBLISHING", timeout=60)
    print("READY", flush=True)
    requests: asyncio.Queue[str] = asyncio.Queue()
    threading.Thread(target=lambda: [loop.call_soon_threadsafe(requests.put_nowait, line) for line in sys.stdin],
                     daemon=True).start()
    while True:
        await requests.get()
        print(f"PACKETS {sent[0]} {sum(task.done() for task in tasks)}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="40,100", help="stream counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=2, help="turns over the receivers per stream count")
    parser.add_argument("--receivers", default=",".join(RECEIVERS))
    parser.add_argument("--before", metavar="SRC", help="also streamsnap from this src/ directory, as 'before'")
    parser.add_argument("--quick", action="store_true", help="40 streams, 8 s windows, one turn")
    parser.add_argument("--publish", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        import uvloop

        uvloop.run(publish(args.publish, int(args.streams)))
        return
    if args.quick:
        args.streams, args.seconds, args.warmup, args.repeat = "40", 8.0, 3.0, 1
    receivers = args.receivers.split(",")
    if args.before:
        receivers.insert(1, f"before={Path(args.before).resolve()}")
    samples: list[Sample] = []
    for streams in (int(n) for n in args.streams.split(",")):
        for turn in range(args.repeat):
            for receiver in receivers[turn % len(receivers):] + receivers[:turn % len(receivers)]:
                sample = measure(receiver, streams, args.warmup, args.seconds)
                samples.append(sample)
                rate = sample.packets / sample.seconds
                print(f"  {receiver.split('=')[0]:>20} {streams:>4} streams: {sample.us_per_packet:6.1f} µs/packet, "
                      f"{sample.cores_per_stream * 1000:5.2f} millicores/stream, {rate:7.0f} packets/s, "
                      f"{sample.dropped} dropped, {sample.lost} streams lost", flush=True)
    counts = sorted({s.streams for s in samples})
    print(f"\n### Receive cost ({CODEC} {WIDTH}x{HEIGHT}, 1.5 Mbit/s, 30 fps; medians of {args.repeat} turns)\n")
    print("| receiver | " + " | ".join(f"µs/packet at {n}" for n in counts) + " | "
          + " | ".join(f"millicores per idle stream at {n}" for n in counts) + " | packets/s/stream |")
    print("|---|" + "---|" * (2 * len(counts) + 1))
    for receiver in receivers:
        rows = {n: [s for s in samples if s.receiver == receiver and s.streams == n] for n in counts}
        cost = [median([s.us_per_packet for s in rows[n]]) for n in counts]
        cores = [median([s.cores_per_stream for s in rows[n]]) for n in counts]
        rate = median([s.packets / s.seconds / s.streams for n in counts for s in rows[n]])
        print(f"| {receiver.split('=')[0]} | " + " | ".join(f"{c:.1f}" for c in cost) + " | "
              + " | ".join(f"{c * 1000:.2f}" for c in cores) + f" | {rate:.0f} |")
    print()
    for ours in ("streamsnap", "streamsnap-python"):
        for n in counts:
            def of(name: str, measure: str, n: int = n) -> float:
                return median([getattr(s, measure) for s in samples
                               if s.receiver.split("=")[0] == name and s.streams == n])
            if not any(s.receiver == ours for s in samples):
                continue
            cost = of(ours, "us_per_packet")
            ratios = ", ".join(f"{cost / of(other, 'us_per_packet'):.2f}x {other}" for other in
                               ("uvloop+unprotect", "blocking+unprotect", "aiortc floor", "before")
                               if any(s.receiver.split("=")[0] == other for s in samples))
            fewer = ""
            if any(s.receiver == "aiortc floor" for s in samples):
                fewer = (f"; {of('aiortc floor', 'cores_per_stream') / of(ours, 'cores_per_stream'):.1f}x fewer "
                         "cores per idle stream than the aiortc floor")
            print(f"- {ours}, {n} streams: {cost:.1f} µs/packet = {ratios}{fewer}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"receive-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps([{**asdict(s), "us_per_packet": s.us_per_packet,
                                "cores_per_stream": s.cores_per_stream} for s in samples], indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
