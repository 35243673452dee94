"""The native short way (media/_fastrtp.c) against the Python way: the same packets, the same frames, NACKs and counts.

A `VideoReceivePath` is driven here without a network: its receiver and DTLS transport are
stand-ins holding the attributes aiortc's have (spelled through aiortc_private's names),
and the datagrams are SRTP made with a known key, fed to the handler the path puts on the
ICE socket's protocol. Every scenario runs through both ways, packet by packet.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtcdtlstransport import SRTP_AEAD_AES_128_GCM
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy, Session

from streamsnap.media import aiortc_private, receiver
from streamsnap.media.receiver import MAX_WAIT_FRAMES, VideoReceivePath

pytestmark = pytest.mark.unit

MEDIA, RTX, OTHER = 1111, 2222, 3333
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX_CODEC = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
KEY = bytes(range(SRTP_AEAD_AES_128_GCM.key_length + SRTP_AEAD_AES_128_GCM.salt_length))
START, MIDDLE = b"\x90\x80\x80\x01", b"\x80\x80\x80\x01"


def session(direction: int) -> Session:
    policy = Policy(key=KEY, ssrc_type=direction, srtp_profile=SRTP_AEAD_AES_128_GCM.libsrtp_profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


class Protocol:
    """Stands for aioice's StunProtocol: what the path does not take ends up here."""

    def __init__(self) -> None:
        self.passed_on: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.passed_on.append(data)


class Ice:
    def __init__(self, protocol: Protocol) -> None:
        connection = type("Connection", (), {})()
        setattr(connection, aiortc_private.ICE_PROTOCOLS, [protocol])
        setattr(self, aiortc_private.ICE_CONNECTION, connection)


class Dtls:
    """Stands for aiortc's RTCDtlsTransport: a state, its event, its SRTP session, its ICE transport."""

    def __init__(self, protocol: Protocol) -> None:
        self.state = "new"
        self.transport = Ice(protocol)
        self.listeners: list[Callable[[], None]] = []
        setattr(self, aiortc_private.RX_SRTP, None)

    def on(self, event: str, listener: Callable[[], None]) -> None:
        self.listeners.append(listener)

    def remove_listener(self, event: str, listener: Callable[[], None]) -> None:
        self.listeners.remove(listener)

    def connect(self) -> None:
        setattr(self, aiortc_private.RX_SRTP, session(Policy.SSRC_ANY_INBOUND))
        self.state = "connected"
        for listener in list(self.listeners):
            listener()


class Receiver:
    """Stands for aiortc's RTCRtpReceiver after receive(): its dicts, its RTCP senders (recorded)."""

    def __init__(self) -> None:
        self.protocol = Protocol()
        self.transport = Dtls(self.protocol)
        self.nacks: list[tuple[int, list[int]]] = []
        setattr(self, aiortc_private.CODECS, {96: VP8, 97: RTX_CODEC})
        setattr(self, aiortc_private.RTX_SSRC, {RTX: MEDIA})
        setattr(self, aiortc_private.REMOTE_STREAMS, {})
        setattr(self, aiortc_private.RTCP_SSRC, None)  # no REMB sent

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        raise AssertionError("replaced by the path")

    async def _send_rtcp_nack(self, media_ssrc: int, lost: list[int]) -> None:
        self.nacks.append((media_ssrc, lost))

    async def _send_rtcp(self, packet: Any) -> None:
        pass


class Run:
    """One receive path, fed datagrams."""

    def __init__(self, way: str, monkeypatch: pytest.MonkeyPatch, **limits: Any) -> None:
        monkeypatch.setattr(receiver, "RECEIVE_PATH", way)
        self.receiver = Receiver()
        self.frames: list[tuple[str, bytes, int]] = []
        self.gaps = 0
        self.path = VideoReceivePath(self.receiver, lambda *frame: self.frames.append(frame), self.count_gap,
                                     1_000_000, **limits)
        self.receiver.transport.connect()
        assert self.path.takes_datagrams and self.path.native == (way == "native")

    def count_gap(self) -> None:
        self.gaps += 1

    def feed(self, datagram: bytes) -> None:
        self.receiver.protocol.datagram_received(datagram, ("127.0.0.1", 9))

    def outcome(self) -> dict[str, Any]:
        streams = getattr(self.receiver, aiortc_private.REMOTE_STREAMS)
        return {
            "frames": list(self.frames), "gaps": (self.gaps, self.path.gaps), "nacks": list(self.receiver.nacks),
            "passed on": len(self.receiver.protocol.passed_on), "pending": self.path.pending_bytes,
            "counts": (self.path.packets, self.path.packets_from_socket, self.path.rejected, self.path.dropped,
                       self.path.oversized, self.path.failures),
            "statistics": {ssrc: (s.packets_received, s.packets_lost, s.max_seq, s.packets_expected)
                           for ssrc, s in sorted(streams.items())},
        }


async def both_ways(monkeypatch: pytest.MonkeyPatch, datagrams: list[bytes],
                    **limits: Any) -> tuple[dict[str, Any], Run]:
    """Feed `datagrams` to a Python path and a native one; their outcomes after each datagram must agree.
    Returns the outcome and the native run."""
    python, native = Run("python", monkeypatch, **limits), Run("native", monkeypatch, **limits)
    for index, datagram in enumerate(datagrams):
        python.feed(datagram)
        native.feed(datagram)
        await asyncio.sleep(0)  # the NACK tasks
        assert native.outcome() == python.outcome(), f"after datagram {index}"
    for run in (python, native):
        run.path.close()
    assert native.outcome() == python.outcome(), "after closing"
    return native.outcome(), native


class Publisher:
    """Makes the datagrams of a VP8 stream (and its RTX), protected as a publisher would."""

    def __init__(self, sequence: int = 65530, timestamp: int = 0xFFFFF000) -> None:
        self.session = session(Policy.SSRC_ANY_OUTBOUND)
        self.sequence, self.timestamp, self.rtx_sequence = sequence, timestamp, 100
        self.sent: dict[int, RtpPacket] = {}

    def protect(self, packet: RtpPacket | bytes) -> bytes:
        return self.session.protect(packet if isinstance(packet, bytes) else packet.serialize())

    def frame(self, *bodies: bytes) -> list[RtpPacket]:
        packets = []
        for index, body in enumerate(bodies):
            packet = RtpPacket(payload_type=96, marker=int(index == len(bodies) - 1), sequence_number=self.sequence,
                               timestamp=self.timestamp, ssrc=MEDIA, payload=(MIDDLE if index else START) + body)
            self.sent[self.sequence] = packet
            packets.append(packet)
            self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + 3000) & 0xFFFFFFFF
        return packets

    def rtx(self, sequence: int) -> RtpPacket:
        original = self.sent[sequence]
        self.rtx_sequence += 1
        return RtpPacket(payload_type=97, marker=original.marker, sequence_number=self.rtx_sequence,
                         timestamp=original.timestamp, ssrc=RTX,
                         payload=sequence.to_bytes(2, "big") + original.payload)


def test_the_native_short_way_is_built() -> None:
    """`make test` builds it (a C compiler and Python's headers are there): a silent fallback would hide a bug."""
    assert receiver._fastrtp is not None, "streamsnap.media._fastrtp was not built; see the pip install log"
    assert receiver.RECEIVE_PATH == os.environ.get("STREAMSNAP_RECEIVE_PATH", "native")


async def test_in_order_frames_take_the_native_way(monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = Publisher()
    datagrams = [publisher.protect(p) for _ in range(20) for p in publisher.frame(b"a" * 900, b"b" * 900, b"c")]
    native, run = await both_ways(monkeypatch, datagrams)
    assert len(native["frames"]) == 20 and native["frames"][0] == ("VP8", b"a" * 900 + b"b" * 900 + b"c", 0xFFFFF000)
    fast = run.path._fast
    assert fast is not None and fast.packets >= 57, f"only {fast.packets} of 60 packets took the native way"
    assert native["statistics"][MEDIA][:3] == (60, 0, (65530 + 59) & 0xFFFF)


async def test_reordering_loss_repair_and_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = Publisher()
    p = publisher
    frames = [p.frame(b"1", b"2", b"3") for _ in range(12)]
    order = [*frames[0], *frames[1]]
    order += [frames[2][0], frames[2][2], frames[2][1]]  # reordered within a frame
    order += [frames[3][0], frames[4][0], frames[3][1], frames[3][2], *frames[4][1:]]  # across frames
    order += [frames[5][0], frames[5][2], *frames[6]]  # frames[5][1] lost...
    order += [p.rtx(frames[5][1].sequence_number)]  # ...and repaired
    order += [frames[7][0], frames[7][2], *[q for f in frames[8:12] for q in f]]  # frames[7][1] lost for good
    order += [q for _ in range(MAX_WAIT_FRAMES) for q in p.frame(b"x")]
    datagrams = [p.protect(packet) for packet in order]
    datagrams.insert(5, datagrams[4])  # a replayed datagram: SRTP refuses it
    native, _ = await both_ways(monkeypatch, datagrams)
    assert native["gaps"] == (1, 2)  # the frame lost for good (its lost packet, then itself), told once
    assert {media for media, _ in native["nacks"]} == {MEDIA}
    nacked = {sequence for _, lost in native["nacks"] for sequence in lost}
    assert {frames[5][1].sequence_number, frames[7][1].sequence_number} <= nacked
    assert [data for _, data, _ in native["frames"]] == [b"123"] * 11 + [b"x"] * MAX_WAIT_FRAMES
    assert native["counts"][2] == 1  # the replayed one


async def test_what_the_native_way_leaves_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Padding only, a frame over the caps, another SSRC, another payload type, STUN, a header that lies."""
    p = Publisher()
    datagrams = [p.protect(q) for f in (p.frame(b"a"), p.frame(b"b", b"c")) for q in f]
    padding = RtpPacket(payload_type=96, sequence_number=p.sequence, timestamp=p.timestamp, ssrc=MEDIA)
    padding.padding_size = 8
    p.sequence = (p.sequence + 1) & 0xFFFF
    datagrams.append(p.protect(padding))
    datagrams += [p.protect(q) for q in p.frame(b"d" * 600, b"e" * 600, b"f" * 600, b"g" * 600)]  # over 2000 bytes
    datagrams += [p.protect(q) for f in (p.frame(b"h"), p.frame(b"i")) for q in f]
    other = RtpPacket(payload_type=96, marker=1, sequence_number=7, timestamp=5, ssrc=OTHER, payload=START + b"o")
    audio = RtpPacket(payload_type=111, sequence_number=8, timestamp=5, ssrc=4444, payload=b"opus")
    datagrams += [p.protect(other), p.protect(audio), b"\x00\x01\x00\x00" + bytes(16)]
    lying = bytearray(p.protect(p.frame(b"j")[0]))
    lying[0] |= 0x0F  # fifteen CSRCs it does not have (the header is outside SRTP's encryption, but authenticated)
    datagrams.append(bytes(lying))
    datagrams += [p.protect(q) for q in p.frame(b"k")]
    native, _ = await both_ways(monkeypatch, datagrams, max_pending_bytes=2000)
    assert native["passed on"] == 2  # the audio and the STUN
    assert native["counts"][4] >= 1  # the frame over the caps


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A VP8 stream with its RTX, mostly in order, with some packets lost, replayed, swapped, repaired or not."""
    publisher = Publisher(sequence=draw(st.integers(0, 0xFFFF)), timestamp=draw(st.integers(0, 0xFFFFFFFF)))
    packets: list[RtpPacket] = []
    for _ in range(draw(st.integers(1, 14))):
        packets += publisher.frame(*(bytes([65 + k]) * draw(st.sampled_from([1, 300, 1100]))
                                     for k in range(draw(st.integers(1, 4)))))
    datagrams = [publisher.protect(packet) for packet in packets]
    for _ in range(draw(st.integers(0, 6))):
        index = draw(st.integers(0, len(datagrams) - 1))
        action = draw(st.sampled_from(["lose", "replay", "swap", "repair", "lose and repair"]))
        if action in ("lose", "lose and repair") and len(datagrams) > 1:
            del datagrams[index]
        if action == "replay":
            datagrams.insert(draw(st.integers(index, len(datagrams))), datagrams[index])
        elif action == "swap" and index + 1 < len(datagrams):
            datagrams[index], datagrams[index + 1] = datagrams[index + 1], datagrams[index]
        elif action in ("repair", "lose and repair"):
            sequence = draw(st.sampled_from(sorted(publisher.sent)))
            datagrams.insert(draw(st.integers(0, len(datagrams))), publisher.protect(publisher.rtx(sequence)))
    return datagrams


@given(streams(), st.sampled_from([{}, {"max_pending_bytes": 1500}, {"max_packets_per_frame": 2}]))
@settings(max_examples=150, deadline=None)
def test_the_two_ways_agree_on_any_stream(datagrams: list[bytes], limits: dict[str, int]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        asyncio.run(both_ways(monkeypatch, datagrams, **limits))


async def test_a_long_lossy_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """2000 frames, 3% lost and half of those repaired late: the native way leaves and comes back many times."""
    rng = random.Random(5)
    publisher = Publisher()
    datagrams: list[bytes] = []
    repairs: list[tuple[int, int]] = []
    for _ in range(2000):
        for packet in publisher.frame(*(b"p" * 200 for _ in range(rng.randint(1, 5)))):
            if rng.random() < 0.03:
                if rng.random() < 0.5:
                    repairs.append((len(datagrams) + rng.randint(2, 30), packet.sequence_number))
                continue
            datagrams.append(publisher.protect(packet))
    for at, sequence in sorted(repairs, reverse=True):
        datagrams.insert(min(at, len(datagrams)), publisher.protect(publisher.rtx(sequence)))
    native, run = await both_ways(monkeypatch, datagrams)
    assert native["gaps"][0] > 0 and len(native["frames"]) > 1000
    fast = run.path._fast
    assert fast is not None and fast.packets > len(datagrams) // 3, (
        f"the native way was not taken back: {fast.packets} of {len(datagrams)} packets")


def test_the_way_is_chosen_once_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    assert receiver._receive_path(None) == receiver._receive_path("") == "native"
    assert receiver._receive_path("python") == "python" and receiver._receive_path("native") == "native"
    assert receiver._receive_path("fast") == "native"
    assert "STREAMSNAP_RECEIVE_PATH=fast: not native or python; receiving the native way" in caplog.text
