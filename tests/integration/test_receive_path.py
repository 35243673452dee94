"""The lean receive path, seen from a real aiortc publisher: NACK and RTX repair, REMB, PLI, and no decoding.

`media/receiver.py` replaces aiortc's per-packet handling on the server's video receiver
and keeps only what a snapshot server needs. Whether it still does each of those things is
visible at the publisher: the test instruments the publisher's own peer connection (its
outgoing RTP, before SRTP, as test_faults does, and the RTCP feedback its sender handles)
and leaves the server untouched. The server's side is read only to find its receivers and
to count: frames given up, decoder thread CPU, queued frames, RSS.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket, unpack_remb_fci

from streamsnap.media import receiver as receive_path_module
from streamsnap.media.aiortc_private import DECODER_QUEUE, HANDLE_RTP_PACKET, is_rtx, receiver_codecs
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.media.receiver import VideoReceivePath
from streamsnap.wcsclient import Publication, WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image
from tests.integration.test_faults import SendRtp, rtp_payload_offset, vp8_descriptor_length, wrap_rtp

pytestmark = pytest.mark.integration


@pytest.fixture(params=["native", "python"], autouse=True)
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on both ways of the receive path: the usual packet in C (media/_fastrtp.c), and all in Python."""
    monkeypatch.setattr(receive_path_module, "RECEIVE_PATH", request.param)
    return str(request.param)


@dataclass
class SentPacket:
    at: float
    ssrc: int
    sequence: int
    keyframe_start: bool
    "First packet of a VP8 keyframe."
    payload: bytes


@dataclass
class PublisherProbe:
    """What one publisher sent and the feedback it got, with a way to lose one media packet."""

    media_ssrc: int
    rtx_ssrc: int
    sent: list[SentPacket] = field(default_factory=list)
    feedback: list[tuple[float, Any]] = field(default_factory=list)
    "(time, RTCP packet) the publisher's sender handled."
    dropped: list[int] = field(default_factory=list)
    drop_one: bool = False
    "Drop the next media packet (then reset)."

    def media(self) -> list[SentPacket]:
        return [p for p in self.sent if p.ssrc == self.media_ssrc]

    def retransmitted(self) -> list[int]:
        """Original sequence numbers of the RTX packets sent (RFC 4588: the first two payload bytes)."""
        return [int.from_bytes(p.payload[:2], "big") for p in self.sent if p.ssrc == self.rtx_ssrc]

    def nacked(self) -> list[int]:
        return [seq for _, p in self.feedback if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK
                and p.media_ssrc == self.media_ssrc for seq in p.lost]

    def plis(self) -> list[float]:
        return [at for at, p in self.feedback if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI
                and p.media_ssrc == self.media_ssrc]

    def rembs(self) -> list[tuple[float, tuple[int, list[int]]]]:
        return [(at, unpack_remb_fci(p.fci)) for at, p in self.feedback
                if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP]

    def last_keyframe(self) -> float | None:
        return max((p.at for p in self.media() if p.keyframe_start), default=None)

    def outgoing(self, send: SendRtp) -> SendRtp:
        async def send_recorded(data: bytes) -> None:
            offset = rtp_payload_offset(data)
            if offset is not None:
                ssrc, sequence = int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")
                payload = data[offset:]
                if ssrc == self.media_ssrc and payload:
                    if self.drop_one:
                        self.drop_one = False
                        self.dropped.append(sequence)
                        return
                    frame_start = payload[0] & 0x17 == 0x10  # S bit, partition 0
                    body = payload[vp8_descriptor_length(payload):]
                    keyframe = frame_start and bool(body) and body[0] & 0x01 == 0
                    self.sent.append(SentPacket(time.monotonic(), ssrc, sequence, keyframe, payload))
                else:
                    self.sent.append(SentPacket(time.monotonic(), ssrc, sequence, False, payload))
            await send(data)

        return send_recorded


async def publish_probed(client: WcsClient, name: str, track: PatternTrack) -> tuple[Publication, PublisherProbe]:
    """Publish VP8 with the publisher's RTP output and RTCP feedback recorded from the first packet on."""
    # No `codec=`: preferring VP8 alone would leave RTX out of the offer. aiortc offers VP8 first.
    publication = await client.publish(name, [track], wait=False)
    pc = publication.pc
    assert pc is not None
    group = re.search(r"a=ssrc-group:FID (\d+) (\d+)", pc.localDescription.sdp)
    assert group, "the publisher offers no RTX"
    probe = PublisherProbe(int(group[1]), int(group[2]))
    wrap_rtp(publication, probe.outgoing)
    sender = pc.getSenders()[0]
    handle_rtcp: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def handle_recorded(packet: Any) -> None:
        probe.feedback.append((time.monotonic(), packet))
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = handle_recorded  # the DTLS transport routes the sender's feedback here
    await client.wait_status(publication, "PUBLISHING", timeout=20)
    answered = re.findall(r"a=rtpmap:\d+ ([\w-]+)/90000", pc.remoteDescription.sdp)
    assert answered[:2] == ["VP8", "rtx"], f"the server answered {answered}, not VP8 with RTX"
    return publication, probe


def server_video_receivers(*publishers: RTCPeerConnection) -> list[RTCRtpReceiver]:
    """The server's live video receivers: every started one in this process that no test publisher owns."""
    ours = {id(r) for pc in publishers for r in pc.getReceivers()}
    return [o for o in gc.get_objects() if isinstance(o, RTCRtpReceiver) and id(o) not in ours
            and o.track is not None and o.track.kind == "video" and o.transport.state == "connected"]


def receive_path(publication: Publication) -> tuple[RTCRtpReceiver, VideoReceivePath]:
    assert publication.pc is not None
    receivers = server_video_receivers(publication.pc)
    assert len(receivers) == 1, f"expected one server video receiver, found {len(receivers)}"
    handler = getattr(receivers[0], HANDLE_RTP_PACKET)
    path = getattr(handler, "__self__", None)
    assert isinstance(path, VideoReceivePath), f"aiortc's own packet handler runs: {handler!r}"
    assert path.takes_datagrams, "the lean path does not take the SRTP datagrams from the ICE sockets"
    assert path.native == (receive_path_module.RECEIVE_PATH == "native")
    return receivers[0], path


async def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 -- the publisher's records have no event to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"within {timeout} s: {what}")


async def test_lost_packet_is_nacked_and_repaired_over_rtx(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        publication, probe = await publish_probed(client, "lossy-once", track)
        receiver, path = receive_path(publication)
        assert any(is_rtx(codec) for codec in receiver_codecs(receiver).values()), "the server did not accept RTX"
        await client.snapshot("lossy-once")  # the picture path is warm; the group it may have asked for is cached
        await asyncio.sleep(0.3)
        gaps, packets = path.gaps, path.packets

        probe.drop_one = True
        await wait_until(lambda: probe.dropped, 2, "a media packet to drop")
        lost = probe.dropped[0]
        await wait_until(lambda: lost in probe.nacked(), 2, f"the server NACKs packet {lost}")
        await wait_until(lambda: lost in probe.retransmitted(), 2, f"the publisher resends {lost} over RTX")
        await asyncio.sleep(0.5)  # the frames after it are handed on (or given up after 4 frames)

        assert path.packets - packets > 10
        assert path.packets_from_socket > path.packets - 20, "packets went aiortc's way, not the socket's"
        assert path.gaps == gaps, "the retransmitted packet did not complete its frame: a gap was counted"
        picture = await client.snapshot("lossy-once")
        image = png_image(picture.png)
        assert image.size == (320, 240)
        assert 0 <= track.counter - read_counter(image) <= MAX_LAG_FRAMES
        print(f"\ndropped {lost}; NACKed {probe.nacked()}; resent over RTX {probe.retransmitted()}; gaps {path.gaps}")
    finally:
        await client.close()


async def test_remb_carries_the_configured_bitrate(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(max_publish_bitrate=1_234_000)
    client = await WcsClient.connect(server.ws_url)
    try:
        publication, probe = await publish_probed(client, "remb", PatternTrack(160, 120))
        await wait_until(lambda: len(probe.rembs()) >= 2, 4, "two REMBs reach the publisher")
        media_start = probe.media()[0].at
        (first, (bitrate, ssrcs)), (second, _) = probe.rembs()[:2]
        print(f"\nfirst REMB {first - media_start:.2f} s after media start, next {second - first:.2f} s later: "
              f"{bitrate} bit/s for {ssrcs}")
        assert first - media_start < 2.0
        assert 0.5 < second - first < 2.0  # once a second (the bound leaves room for a loaded machine)
        assert (bitrate, ssrcs) == (1_234_000, [probe.media_ssrc])
        assert all(remb == (1_234_000, [probe.media_ssrc]) for _, remb in probe.rembs())
        assert publication.status == "PUBLISHING"
    finally:
        await client.close()


async def test_snapshot_needing_a_keyframe_sends_a_pli(start_server: Callable[..., Any]) -> None:
    # A 15-frame bound: half a second after a keyframe, nothing decodable is cached.
    server: RunningServer = await start_server(gop_max_frames=15)
    client = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        publication, probe = await publish_probed(client, "pli", track)
        # The encoder also starts a group at start and when told a new bitrate; let the last one age.
        await wait_until(lambda: (k := probe.last_keyframe()) is not None and time.monotonic() - k > 1.0, 6,
                         "a second without a keyframe from the publisher")
        plis = len(probe.plis())
        asked = time.monotonic()
        picture = await client.snapshot("pli", timeout=8)
        new_plis = [at for at in probe.plis()[plis:] if at >= asked]
        assert new_plis, "the snapshot got a picture without a PLI reaching the publisher"
        keyframe = probe.last_keyframe()
        assert keyframe is not None and keyframe > new_plis[0], "no keyframe followed the PLI"
        print(f"\nPLI {new_plis[0] - asked:.3f} s after the request, keyframe {keyframe - new_plis[0]:.3f} s after it")
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
        assert publication.status == "PUBLISHING"
    finally:
        await client.close()


def thread_cpu_seconds(threads: list[threading.Thread]) -> float:
    times = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
    return float(sum(times.get(t.native_id or -1, 0.0) for t in threads))


async def test_idle_stream_is_not_decoded_and_holds_no_growing_queue(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        publication, _ = await publish_probed(client, "idle", PatternTrack(640, 480))
        receiver, path = receive_path(publication)
        decoder_input = getattr(receiver, DECODER_QUEUE)
        assert type(decoder_input).__module__.startswith("streamsnap."), (
            f"aiortc's decoder reads {type(decoder_input)!r}, not streamsnap's tap")
        decoders = [t for t in threading.enumerate() if t.name == "video-decoder" and t.is_alive()]
        assert decoders, "aiortc's decoder thread is not there to watch (renamed?)"
        await asyncio.sleep(1.0)  # past start-up

        process = psutil.Process()
        gc.collect()
        rss, cpu, packets = process.memory_info().rss, thread_cpu_seconds(decoders), path.packets
        queued = []
        for _ in range(6):
            await asyncio.sleep(0.5)
            queued.append(receiver.track._queue.qsize())  # decoded pictures waiting for a reader
        gc.collect()
        rss_growth = process.memory_info().rss - rss
        decoder_cpu = thread_cpu_seconds(decoders) - cpu
        print(f"\nover 3 s: {path.packets - packets} packets in, decoder threads {len(decoders)} busy "
              f"{decoder_cpu:.3f} s CPU, pictures queued {queued}, RSS {rss / 2**20:.1f} MiB "
              f"{rss_growth / 2**20:+.1f} MiB")
        assert path.packets - packets > 30, "frames stopped arriving"
        assert decoder_cpu < 0.02, f"aiortc's decoder thread worked {decoder_cpu:.3f} s"
        assert max(queued) == 0, f"decoded pictures queue up: {queued}"
        assert rss_growth < 16 * 2**20, f"RSS grew {rss_growth / 2**20:.1f} MiB in 3 s"
    finally:
        await client.close()
