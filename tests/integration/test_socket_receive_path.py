"""The lean receive path on its socket side: crafted RTP, sent as SRTP by a real publisher, taken from the ICE socket.

A publisher peer connection with a video transceiver and no track sends nothing by itself;
the test sends RTP packets it builds (through the publisher's own DTLS transport, so they
are protected with its keys and cross a real loopback socket) and watches what the
server-side `VideoReceivePath` makes of them: frames, gaps, NACKs at the publisher. The
order, losses and repairs are the test's, packet by packet: reordering and loss on the
socket path, where test_receive_path.py checks the same things with a real encoder.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import pytest
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtpPacket

from streamsnap.media import receiver as receive_path
from streamsnap.media.aiortc_private import (
    HOST_ADDRESSES_FUNCTION,
    receiver_codecs,
    receiver_remote_streams,
    replace_decoder_queue,
)
from streamsnap.media.receiver import MAX_WAIT_FRAMES, VideoReceivePath
from streamsnap.media.webrtc import ReceiverTap

pytestmark = pytest.mark.integration


@pytest.fixture(params=["python", "native"], autouse=True)
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on both ways: every packet in Python, and the usual ones in C (media/_fastrtp.c)."""
    monkeypatch.setattr(receive_path, "RECEIVE_PATH", request.param)
    return str(request.param)

START, MIDDLE = b"\x90\x80\x80\x01", b"\x80\x80\x80\x01"
"VP8 payload descriptors as aiortc and browsers send them: S bit (a frame's first packet) or not, 15-bit picture ID."


@dataclass
class Link:
    """A silent publisher connected to a server-side lean receive path."""

    publisher: RTCPeerConnection
    server: RTCPeerConnection
    path: VideoReceivePath
    media_ssrc: int
    rtx_ssrc: int
    payload_type: int
    rtx_payload_type: int
    frames: list[tuple[str, bytes, int]] = field(default_factory=list)
    gaps: int = 0
    feedback: list[Any] = field(default_factory=list)
    "RTCP packets the publisher's sender got."
    sequence: int = 65532
    "The next sequence number (near the wrap, to cross it)."

    async def send(self, data: bytes) -> None:
        """Send one RTP packet (as SRTP, through the publisher's DTLS transport)."""
        await self.publisher.getSenders()[0].transport._send_rtp(data)

    def packet(self, timestamp: int, body: bytes, *, start: bool = False, marker: bool = False,
               sequence: int | None = None) -> RtpPacket:
        if sequence is None:
            sequence, self.sequence = self.sequence, (self.sequence + 1) & 0xFFFF
        return RtpPacket(payload_type=self.payload_type, marker=int(marker), sequence_number=sequence,
                         timestamp=timestamp, ssrc=self.media_ssrc, payload=(START if start else MIDDLE) + body)

    def frame(self, timestamp: int, *bodies: bytes) -> list[RtpPacket]:
        """The packets of one frame: `bodies` in order, the first with the S bit, the last with the marker."""
        return [self.packet(timestamp, body, start=index == 0, marker=index == len(bodies) - 1)
                for index, body in enumerate(bodies)]

    def rtx(self, packet: RtpPacket, rtx_sequence: int) -> RtpPacket:
        """The RTX packet that repairs `packet` (RFC 4588)."""
        return RtpPacket(payload_type=self.rtx_payload_type, marker=packet.marker, sequence_number=rtx_sequence,
                         timestamp=packet.timestamp, ssrc=self.rtx_ssrc,
                         payload=packet.sequence_number.to_bytes(2, "big") + packet.payload)

    def nacked(self) -> list[int]:
        return [seq for p in self.feedback if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK
                for seq in p.lost]

    async def until(self, condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not condition():  # noqa: ASYNC110 -- the path's counters have no event to await
                    await asyncio.sleep(0.005)
        except TimeoutError:
            pytest.fail(f"within {timeout} s: {what} (frames {[(f[1], f[2]) for f in self.frames]}, "
                        f"gaps {self.gaps}, NACKed {self.nacked()})")


@asynccontextmanager
async def linked(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Link]:
    monkeypatch.setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    path: VideoReceivePath | None = None
    try:
        publisher.addTransceiver("video", direction="sendonly")  # no track: it sends only what the test sends
        await publisher.setLocalDescription(await publisher.createOffer())
        sdp = publisher.localDescription.sdp
        payload_type = int(re.findall(r"a=rtpmap:(\d+) VP8/90000", sdp)[0])
        rtx_payload_type = int(re.findall(rf"a=fmtp:(\d+) apt={payload_type}\r\n", sdp)[0])
        media_ssrc, rtx_ssrc = (int(s) for s in re.findall(r"a=ssrc-group:FID (\d+) (\d+)", sdp)[0])
        await server.setRemoteDescription(publisher.localDescription)
        receiver = server.getTransceivers()[0].receiver
        replace_decoder_queue(receiver, ReceiverTap(None))
        frames: list[tuple[str, bytes, int]] = []
        link: Link

        def on_gap() -> None:
            link.gaps += 1

        path = VideoReceivePath(receiver, lambda *frame: frames.append(frame), on_gap, 1_000_000)
        link = Link(publisher, server, path, media_ssrc, rtx_ssrc, payload_type, rtx_payload_type, frames)
        sender = publisher.getSenders()[0]
        handle_rtcp = sender._handle_rtcp_packet

        async def handle_recorded(packet: Any) -> None:
            link.feedback.append(packet)
            await handle_rtcp(packet)

        sender._handle_rtcp_packet = handle_recorded
        await server.setLocalDescription(await server.createAnswer())
        await publisher.setRemoteDescription(server.localDescription)
        await link.until(lambda: path.takes_datagrams and receiver_codecs(receiver)
                         and sender.transport.state == "connected", "connected, the path on the socket", 10)
        assert path.native == (receive_path.RECEIVE_PATH == "native")
        yield link
    finally:
        if path is not None:
            path.close()
        await asyncio.wait_for(publisher.close(), 5)
        await asyncio.wait_for(server.close(), 5)


async def send_all(link: Link, packets: list[RtpPacket]) -> None:
    for packet in packets:
        await link.send(packet.serialize())


async def test_frames_come_whole_from_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        packets = link.frame(1000, b"a", b"b", b"c") + link.frame(4000, b"d") + link.frame(7000, b"e", b"f")
        await send_all(link, packets)  # across the sequence number wrap
        await link.until(lambda: len(link.frames) == 3, "three frames")
        assert link.frames == [("VP8", b"abc", 1000), ("VP8", b"d", 4000), ("VP8", b"ef", 7000)]
        assert link.path.packets == link.path.packets_from_socket == 6, "packets went aiortc's way"
        assert link.gaps == 0 and link.path.gaps == 0 and link.nacked() == []
        statistics = receiver_remote_streams(link.server.getTransceivers()[0].receiver)[link.media_ssrc]
        assert (statistics.packets_received, statistics.packets_lost, statistics.max_seq) == (6, 0, 1)


async def test_reordered_packets_make_whole_frames_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        await send_all(link, link.frame(1000, b"a", b"b"))  # in sync
        await link.until(lambda: link.frames, "the first frame")
        first, second, third = (link.frame(ts, b"1", b"2", b"3") for ts in (4000, 7000, 10000))
        # within a frame, and across frames: the second frame's packets come before the first's last
        await send_all(link, [first[0], first[2], second[1], second[0], second[2], third[0], first[1], third[2],
                              third[1]])
        await link.until(lambda: len(link.frames) == 4, "every frame")
        assert [(data, ts) for _, data, ts in link.frames] == [(b"ab", 1000), (b"123", 4000), (b"123", 7000),
                                                               (b"123", 10000)]
        assert link.gaps == 0 and link.path.gaps == 0
        assert link.path.packets_from_socket == 11


async def test_a_lost_packet_is_nacked_and_repaired_over_rtx(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        await send_all(link, link.frame(1000, b"a"))
        frame = link.frame(4000, b"1", b"2", b"3")
        lost = frame[1]
        await send_all(link, [frame[0], frame[2], *link.frame(7000, b"x")])
        await link.until(lambda: lost.sequence_number in link.nacked(), f"a NACK of {lost.sequence_number}")
        assert link.nacked() == [lost.sequence_number]
        assert [data for _, data, _ in link.frames] == [b"a"], "a frame was handed on with a packet missing"
        await link.send(link.rtx(lost, 17).serialize())
        await link.until(lambda: len(link.frames) == 3, "the repaired frame and the one after it")
        assert [(data, ts) for _, data, ts in link.frames] == [(b"a", 1000), (b"123", 4000), (b"x", 7000)]
        assert link.gaps == 0
        streams = receiver_remote_streams(link.server.getTransceivers()[0].receiver)
        assert streams[link.rtx_ssrc].packets_received == 1 and streams[link.media_ssrc].packets_lost == 1


async def test_a_packet_lost_for_good_is_a_gap_and_sync_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        await send_all(link, link.frame(1000, b"a"))
        frame = link.frame(4000, b"1", b"2", b"3")
        later = [link.frame(7000 + 3000 * k, bytes([65 + k])) for k in range(MAX_WAIT_FRAMES + 2)]
        await send_all(link, [frame[0], frame[2]] + [p for f in later for p in f])
        await link.until(lambda: link.gaps, "the incomplete frame given up")
        await link.until(lambda: len(link.frames) == 1 + len(later), "the frames after it")
        assert [data for _, data, _ in link.frames] == [b"a"] + [bytes([65 + k]) for k in range(len(later))]
        # the lost packet, then the frame it belonged to (FrameAssembler's count), told once
        assert (link.path.gaps, link.gaps) == (2, 1)
        assert link.nacked() == [frame[1].sequence_number]


async def test_what_is_not_video_srtp_goes_on_and_forged_srtp_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        await send_all(link, link.frame(1000, b"a"))
        await link.until(lambda: link.frames, "the first frame")
        ice = link.publisher.getSenders()[0].transport.transport
        header = link.packet(4000, b"forged", start=True, marker=True, sequence=link.sequence).serialize()
        await ice._send(header + bytes(16))  # an RTP header of the stream and no valid authentication tag
        other = RtpPacket(payload_type=111, sequence_number=1, timestamp=1, ssrc=4242, payload=b"audio?")
        await link.send(other.serialize())  # a payload type the video receiver does not have: aiortc's
        await link.until(lambda: link.path.rejected, "the forged packet refused")
        await send_all(link, link.frame(4000, b"b"))
        await link.until(lambda: len(link.frames) == 2, "the next frame")
        assert [data for _, data, _ in link.frames] == [b"a", b"b"]
        assert link.path.rejected == 1 and link.path.packets_from_socket == 2 and link.path.failures == 0
        assert link.server.connectionState == "connected"


async def test_csrc_header_extension_and_padding_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    async with linked(monkeypatch) as link:
        await send_all(link, link.frame(1000, b"a"))
        await link.until(lambda: link.frames, "the first frame")
        header = bytearray(link.packet(4000, b"", marker=True).serialize()[:12])
        header[0] |= 0x20 | 0x10 | 2  # padding, extension, two CSRCs
        csrcs = (1).to_bytes(4, "big") + (2).to_bytes(4, "big")
        extension = b"\xbe\xde\x00\x02" + bytes([0x10, 0xAA, 0, 0]) + bytes(4)  # one-byte header extensions, 2 words
        padding = bytes(3) + b"\x04"
        await link.send(bytes(header) + csrcs + extension + START + b"body" + padding)
        await link.until(lambda: len(link.frames) == 2, "the frame")
        assert link.frames[1][1:] == (b"body", 4000)
        assert link.path.rejected == 0


def test_the_socket_path_on_uvloop(monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """`streamsnap serve` runs uvloop: losses, NACK and RTX repair there too."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_a_lost_packet_is_nacked_and_repaired_over_rtx(monkeypatch))
