"""The aiortc/aioice contract: every private name streamsnap relies on, checked against the installed versions.

`streamsnap.media.aiortc_private.PRIVATE_NAMES` lists them; the first test is parametrized
over that list, so a name added there is checked here without more code. The tests after
it check behaviour that a signature cannot show (that aiortc's decoder thread reads from
the replaced queue, that the DTLS transport calls the replaced handler, ...). Every failure
message names the private name and the installed version: an upgrade that changes one
fails here, loudly, instead of quietly bringing aiortc's decoder back.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import inspect
import queue
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aioice
import aioice.ice
import pylibsrtp
import pytest
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtpPacket, unpack_remb_fci

from streamsnap.media import aiortc_private
from streamsnap.media.aiortc_private import (
    DATAGRAM_RECEIVED,
    DECODER_QUEUE,
    HANDLE_RTP_PACKET,
    HOST_ADDRESSES_FUNCTION,
    ICE_CONNECTION,
    ICE_PROTOCOLS,
    PRIVATE_NAMES,
    RTCP_PSFB_APP,
    RX_SRTP,
    SEND_RTCP,
    SEND_RTCP_NACK,
    SEND_RTCP_PLI,
    STATISTICS_READ,
    Kind,
    OperationError,
    PrivateName,
    installed_version,
    intercept_datagrams,
    is_rtx,
    pack_remb_fci,
    receiver_codecs,
    receiver_remote_streams,
    receiver_rtcp_ssrc,
    receiver_rtx_ssrc,
    replace_decoder_queue,
    replace_host_addresses,
    replace_rtp_handler,
    send_rtcp,
    send_rtcp_nack,
    send_rtcp_pli,
    srtp_receive_session,
)
from streamsnap.media.pattern import PatternTrack
from streamsnap.media.receiver import ReceiveStatistics, VideoReceivePath
from tests.syntax import parse

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "streamsnap"
MEDIA_SSRC, RTX_SSRC = 1111, 2222
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})


def broken(entry: PrivateName | str, problem: str) -> str:
    """The failure message: which private name, which installed version, what changed."""
    if isinstance(entry, str):
        entry = next(e for e in PRIVATE_NAMES if e.label.endswith(entry))
    return (f"{entry.label} ({entry.kind.value}; streamsnap: {entry.use}) {problem} "
            f"in {entry.package} {installed_version(entry.package)}. streamsnap was tested with the versions "
            "pinned in pyproject.toml; adapt streamsnap/media/aiortc_private.py and its users first.")


async def video_receiver() -> tuple[RTCRtpReceiver, list[RTCPeerConnection]]:
    """A receiver as streamsnap gets one: the answerer's, after setRemoteDescription of a video offer."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offerer.addTransceiver("video", direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await answerer.setRemoteDescription(offerer.localDescription)
    receiver = answerer.getTransceivers()[0].receiver
    return receiver, [offerer, answerer]


@pytest.fixture
async def receiver() -> AsyncIterator[RTCRtpReceiver]:
    made, pcs = await video_receiver()
    yield made
    for pc in pcs:
        await asyncio.wait_for(pc.close(), 5)


# Instances for the INSTANCE_ATTRIBUTE checks, by owner class; a new owner needs a line here.
def instance_factories(receiver: RTCRtpReceiver) -> dict[str, Callable[[], object]]:
    return {
        "aiortc.rtcrtpreceiver.RTCRtpReceiver": lambda: receiver,
        "aiortc.rtcdtlstransport.RTCDtlsTransport": lambda: receiver.transport,
        "aiortc.rtcicetransport.RTCIceTransport": lambda: receiver.transport.transport,
        "aioice.ice.Connection": lambda: aioice.Connection(ice_controlling=False),
        "pylibsrtp.Session": pylibsrtp.Session,
    }


def parameters_problem(function: Any, expected: tuple[str, ...], *, skip_self: bool) -> str | None:
    """Why `function` cannot be called the way streamsnap calls it (None when it can)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as exc:
        return f"has no signature to check ({exc})"
    if skip_self:
        parameters = parameters[1:]
    shown = ", ".join(str(p) for p in parameters)
    names = tuple(p.name for p in parameters[: len(expected)])
    if names != expected or any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in parameters[: len(expected)]):
        return f"takes ({shown}) where streamsnap relies on ({', '.join(expected)})"
    for extra in parameters[len(expected):]:
        if extra.default is extra.empty and extra.kind not in (extra.VAR_POSITIONAL, extra.VAR_KEYWORD):
            return f"takes ({shown}): a new required parameter {extra.name!r}"
    return None


def fresh_module(name: str) -> ModuleType:
    """A new copy of module `name`, as its source defines it (not as this process may have patched it)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=lambda entry: entry.label)
async def test_private_name_has_the_shape_streamsnap_relies_on(entry: PrivateName, receiver: RTCRtpReceiver) -> None:
    try:
        owner: Any = importlib.import_module(entry.module)
    except ImportError as exc:
        pytest.fail(broken(entry, f"cannot be imported ({exc})"))
    *path, name = entry.qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            pytest.fail(broken(entry, f"is missing: there is no {part}"))

    if entry.kind is Kind.INSTANCE_ATTRIBUTE:
        owner_label = f"{entry.module}.{'.'.join(path)}"
        factory = instance_factories(receiver).get(owner_label)
        assert factory is not None, f"add a factory for {owner_label} to instance_factories()"
        instance = factory()
        if not hasattr(instance, name):
            pytest.fail(broken(entry, f"is missing: a new {owner_label} has no attribute {name!r}"))
        value = getattr(instance, name)
        if not isinstance(value, entry.types):
            pytest.fail(broken(entry, f"changed shape: it is a {type(value).__name__}, not one of "
                                      f"{[t.__name__ for t in entry.types]}"))
        return

    if not hasattr(owner, name):
        pytest.fail(broken(entry, "is missing"))
    target = getattr(owner, name)
    if entry.kind is Kind.FUNCTION and not path and getattr(target, "__module__", None) != entry.module:
        # Replaced in this process (streamsnap replaces aioice's address lookup): check the original.
        target = getattr(fresh_module(entry.module), name, None)
        if target is None:
            pytest.fail(broken(entry, "is missing"))
    problem: str | None = None
    if entry.kind is Kind.CONSTANT:
        if target != entry.value:
            problem = f"changed value: {target!r}, not {entry.value!r}"
    elif entry.kind is Kind.C_FUNCTION:
        ffi = importlib.import_module(entry.module).ffi
        if ffi.typeof(target).cname != entry.value:
            problem = f"changed type: {ffi.typeof(target).cname}, not {entry.value}"
    elif entry.kind is Kind.EXCEPTION:
        if not (inspect.isclass(target) and issubclass(target, Exception)):
            problem = f"is no longer an exception class: {target!r}"
    elif entry.kind is Kind.CLASS:
        problem = (f"is no longer a class: {target!r}" if not inspect.isclass(target)
                   else parameters_problem(target, entry.parameters, skip_self=False))
    elif entry.kind is Kind.FUNCTION:
        problem = (f"is no longer a function: {target!r}" if not inspect.isfunction(target)
                   else parameters_problem(target, entry.parameters, skip_self=False))
    elif entry.kind is Kind.METHOD:
        if not inspect.isfunction(target):
            problem = f"is no longer a plain method: {target!r}"
        elif inspect.iscoroutinefunction(target) != entry.coroutine:
            problem = "is no longer a coroutine function" if entry.coroutine else "became a coroutine function"
        else:
            problem = parameters_problem(target, entry.parameters, skip_self=True)
    if problem is not None:
        pytest.fail(broken(entry, problem))


def test_the_constants_name_entries_of_the_list() -> None:
    """The names code uses (constants) are the names the contract test checks."""
    labels = {entry.label for entry in PRIVATE_NAMES}
    receiver_names = [DECODER_QUEUE, aiortc_private.CODECS, aiortc_private.RTX_SSRC, aiortc_private.REMOTE_STREAMS,
                      aiortc_private.RTCP_SSRC, HANDLE_RTP_PACKET, SEND_RTCP, SEND_RTCP_NACK, SEND_RTCP_PLI]
    for name in receiver_names:
        assert f"aiortc.rtcrtpreceiver.RTCRtpReceiver.{name}" in labels, f"{name} is not in PRIVATE_NAMES"
    assert f"aioice.ice.{HOST_ADDRESSES_FUNCTION}" in labels
    assert f"aiortc.rtcdtlstransport.RTCDtlsTransport.{RX_SRTP}" in labels
    assert f"aiortc.rtcicetransport.RTCIceTransport.{ICE_CONNECTION}" in labels
    assert f"aioice.ice.Connection.{ICE_PROTOCOLS}" in labels
    assert f"aioice.ice.StunProtocol.{DATAGRAM_RECEIVED}" in labels
    # Everything aiortc_private re-exports from aiortc/aioice is described in the list.
    for exported in aiortc_private.__all__:
        value = getattr(aiortc_private, exported)
        if isinstance(value, (str, tuple)) or getattr(value, "__module__", "").startswith("streamsnap."):
            continue  # streamsnap's own: the names, the list, the helpers
        assert any(entry.qualname == exported for entry in PRIVATE_NAMES), f"{exported} is not in PRIVATE_NAMES"


class RecordingTap:
    """Stands where the decoder queue is, as streamsnap's tap does; records who reads it."""

    def __init__(self) -> None:
        self.read_by: list[str] = []
        self.read = threading.Event()
        self.stopped = threading.Event()

    def put(self, item: Any) -> None:
        if item is None:
            self.stopped.set()

    def get(self) -> None:
        self.read_by.append(threading.current_thread().name)
        self.read.set()
        self.stopped.wait(10)


async def start_receiving(receiver: RTCRtpReceiver) -> set[threading.Thread]:
    """`receive()` as the peer connection calls it once connected; return the threads it started."""
    before = set(threading.enumerate())
    parameters = RTCRtpReceiveParameters(
        codecs=[VP8, RTX],
        encodings=[RTCRtpDecodingParameters(ssrc=MEDIA_SSRC, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=RTX_SSRC))],
    )
    await asyncio.wait_for(receiver.receive(parameters), 5)
    return set(threading.enumerate()) - before


async def stop_receiving(receiver: RTCRtpReceiver, started: set[threading.Thread]) -> None:
    """`stop()`, which joins the decoder thread: first unblock a thread that reads a queue other than the tap."""
    for thread in started:
        # Only when the contract is broken: aiortc's thread waits on its own queue, which stop() would not
        # wake, and the join would hang the run instead of failing the test.
        for arg in getattr(thread, "_args", ()):
            if isinstance(arg, queue.Queue):
                arg.put(None)
    await asyncio.wait_for(receiver.stop(), 5)


async def test_decoder_thread_reads_the_replaced_queue(receiver: RTCRtpReceiver) -> None:
    """Without this, aiortc decodes every frame of every stream and queues the pictures without bound."""
    tap = RecordingTap()
    replace_decoder_queue(receiver, tap)
    started = await start_receiving(receiver)
    try:
        read = await asyncio.to_thread(tap.read.wait, 5)
        assert read and tap.read_by and tap.read_by[0] != threading.current_thread().name, broken(
            DECODER_QUEUE, "is no longer what the decoder thread started by receive() reads from")
    finally:
        await stop_receiving(receiver, started)
    assert tap.stopped.is_set(), broken(DECODER_QUEUE, "is no longer told to stop (put(None)) by stop()")


async def test_receive_fills_the_dicts_the_receive_path_reads(receiver: RTCRtpReceiver) -> None:
    codecs, rtx_ssrc = receiver_codecs(receiver), receiver_rtx_ssrc(receiver)
    streams = receiver_remote_streams(receiver)
    replace_decoder_queue(receiver, RecordingTap())
    started = await start_receiving(receiver)
    try:
        assert receiver_codecs(receiver) is codecs and codecs == {96: VP8, 97: RTX}, broken(
            aiortc_private.CODECS, f"is not filled by receive() with payload type -> codec (it is {codecs!r})")
        assert receiver_rtx_ssrc(receiver) is rtx_ssrc and rtx_ssrc == {RTX_SSRC: MEDIA_SSRC}, broken(
            aiortc_private.RTX_SSRC, f"is not filled by receive() with RTX SSRC -> media SSRC (it is {rtx_ssrc!r})")
        assert receiver_remote_streams(receiver) is streams, broken(
            aiortc_private.REMOTE_STREAMS, "was replaced by receive(): aiortc's reports would not read ours")
        stats = StreamStatistics(90000)
        stats.add(RtpPacket(payload_type=96, sequence_number=5, timestamp=0, ssrc=MEDIA_SSRC))
        streams[MEDIA_SSRC] = stats
        report = await asyncio.wait_for(receiver.getStats(), 5)
        inbound = [s for s in report.values() if s.type == "inbound-rtp"]
        assert [s.packetsReceived for s in inbound] == [1], broken(
            aiortc_private.REMOTE_STREAMS, "is no longer what aiortc's statistics and receiver reports read")
    finally:
        await stop_receiving(receiver, started)


async def test_dtls_transport_calls_the_replaced_rtp_handler(receiver: RTCRtpReceiver) -> None:
    handled: list[tuple[int, int]] = []

    async def handler(packet: RtpPacket, arrival_time_ms: int) -> None:
        handled.append((packet.sequence_number, arrival_time_ms))

    replace_rtp_handler(receiver, handler)
    replace_decoder_queue(receiver, RecordingTap())
    started = await start_receiving(receiver)
    try:
        packet = RtpPacket(payload_type=96, sequence_number=7, timestamp=90, ssrc=MEDIA_SSRC, payload=b"\x10x")
        # As the DTLS transport does for each SRTP packet once decrypted.
        await asyncio.wait_for(receiver.transport._handle_rtp_data(packet.serialize(), arrival_time_ms=1234), 5)
    finally:
        await stop_receiving(receiver, started)
    assert handled == [(7, 1234)], broken(
        HANDLE_RTP_PACKET, "replaced on the instance is no longer what the DTLS transport calls per RTP packet")


class SentRtcp(list[Any]):
    """The RTCP packets a receiver sends, caught where its transport would encrypt them."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        receiver.transport._send_rtp = self._send

    async def _send(self, data: bytes) -> None:
        self.extend(RtcpPacket.parse(data))
        self.arrived.set()

    async def first(self, wanted: Callable[[Any], bool], timeout: float) -> Any:
        """The first packet sent that is `wanted`, waiting for it up to `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not any(wanted(p) for p in self):
                self.arrived.clear()
                await self.arrived.wait()
        return next(p for p in self if wanted(p))


async def test_rtcp_senders(receiver: RTCRtpReceiver) -> None:
    sent = SentRtcp(receiver)
    rtcp_ssrc = receiver_rtcp_ssrc(receiver)
    assert isinstance(rtcp_ssrc, int), broken(
        aiortc_private.RTCP_SSRC, f"is not set by the peer connection to the SSRC of its RTCP (it is {rtcp_ssrc!r})")

    await asyncio.wait_for(send_rtcp_nack(receiver, MEDIA_SSRC, [5, 6]), 5)
    assert [(type(p), p.fmt, p.ssrc, p.media_ssrc, p.lost) for p in sent] == [
        (RtcpRtpfbPacket, 1, rtcp_ssrc, MEDIA_SSRC, [5, 6])], broken(SEND_RTCP_NACK, f"sent {sent!r}, not a NACK")
    sent.clear()

    await asyncio.wait_for(send_rtcp_pli(receiver, MEDIA_SSRC), 5)
    assert [(type(p), p.fmt, p.ssrc, p.media_ssrc) for p in sent] == [
        (RtcpPsfbPacket, 1, rtcp_ssrc, MEDIA_SSRC)], broken(SEND_RTCP_PLI, f"sent {sent!r}, not a PLI")
    sent.clear()

    remb = aiortc_private.RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                         fci=pack_remb_fci(1_234_000, [MEDIA_SSRC]))
    await asyncio.wait_for(send_rtcp(receiver, remb), 5)
    assert [(type(p), p.fmt, unpack_remb_fci(p.fci)) for p in sent] == [
        (RtcpPsfbPacket, RTCP_PSFB_APP, (1_234_000, [MEDIA_SSRC]))], broken(SEND_RTCP, f"sent {sent!r}, not the REMB")


def vp8_packet(sequence: int, timestamp: int, *, start: bool, marker: bool, data: bytes) -> RtpPacket:
    return RtpPacket(payload_type=96, marker=int(marker), sequence_number=sequence, timestamp=timestamp,
                     ssrc=MEDIA_SSRC, payload=(b"\x10" if start else b"\x00") + data)


async def test_lean_receive_path_through_a_real_receiver(receiver: RTCRtpReceiver) -> None:
    """Every receiver name at once, as streamsnap uses them: NACK, RTX repair, frames, REMB, PLI."""
    sent = SentRtcp(receiver)
    frames: list[tuple[str, bytes, int]] = []
    gaps: list[None] = []
    path = VideoReceivePath(receiver, lambda *frame: frames.append(frame), lambda: gaps.append(None), 1_234_000)
    replace_decoder_queue(receiver, RecordingTap())
    started = await start_receiving(receiver)
    transport = receiver.transport
    try:
        lost = vp8_packet(11, 100, start=False, marker=True, data=b"B")
        for packet in (vp8_packet(10, 100, start=True, marker=False, data=b"A"),
                       vp8_packet(12, 200, start=True, marker=True, data=b"C")):
            await asyncio.wait_for(transport._handle_rtp_data(packet.serialize(), arrival_time_ms=0), 5)
        nacks = [p for p in sent if isinstance(p, RtcpRtpfbPacket)]
        assert [(p.media_ssrc, p.lost) for p in nacks] == [(MEDIA_SSRC, [11])], "no NACK for the lost packet"
        assert frames == [], "a frame was handed on with a packet missing"

        rtx = RtpPacket(payload_type=97, marker=1, sequence_number=500, timestamp=100, ssrc=RTX_SSRC,
                        payload=(11).to_bytes(2, "big") + lost.payload)
        await asyncio.wait_for(transport._handle_rtp_data(rtx.serialize(), arrival_time_ms=0), 5)
        assert frames == [("VP8", b"AB", 100), ("VP8", b"C", 200)], broken(
            aiortc_private.RTX_SSRC, f"did not let the RTX packet repair the frame (frames: {frames!r})")
        assert not gaps and path.gaps == 0
        assert receiver_remote_streams(receiver)[MEDIA_SSRC].packets_received == 2
        assert receiver_remote_streams(receiver)[RTX_SSRC].packets_received == 1

        remb = await sent.first(lambda p: isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP, 5)
        assert (remb.ssrc, unpack_remb_fci(remb.fci)) == (receiver_rtcp_ssrc(receiver), (1_234_000, [MEDIA_SSRC]))

        assert await asyncio.wait_for(path.request_keyframe(), 5)
        assert [(p.fmt, p.media_ssrc) for p in sent if isinstance(p, RtcpPsfbPacket) and p.fmt == 1] == [
            (1, MEDIA_SSRC)]
    finally:
        path.close()
        await stop_receiving(receiver, started)


def test_payload_helpers() -> None:
    assert is_rtx(RTX) and not is_rtx(VP8), broken("is_rtx", "no longer tells RTX")
    assert unpack_remb_fci(pack_remb_fci(2_500_000, [1, 2])) == (2_500_000, [1, 2]), broken(
        "pack_remb_fci", "no longer encodes bitrate and SSRCs")


async def test_receiver_reports_and_stats_read_streamsnaps_statistics(receiver: RTCRtpReceiver) -> None:
    """The receive path puts its own statistics objects where aiortc keeps its StreamStatistics: aiortc must read
    them (and only the attributes in STATISTICS_READ) for its receiver reports and getStats()."""
    sent = SentRtcp(receiver)
    replace_decoder_queue(receiver, RecordingTap())
    started = await start_receiving(receiver)
    try:
        ours = ReceiveStatistics(90000)
        for sequence in (65534, 65535, 2, 3):  # a wrap, then two lost
            ours.add(sequence, sequence * 3000)
        read: list[str] = []

        class Watched(ReceiveStatistics):
            __slots__ = ()

            def __getattribute__(self, name: str) -> Any:
                if sys._getframe(1).f_globals.get("__name__", "").startswith("aiortc"):
                    read.append(name)  # what aiortc reads (not what our own properties read)
                return super().__getattribute__(name)

        watched = Watched(90000)
        for sequence in (65534, 65535, 2, 3):
            watched.add(sequence, sequence * 3000)
        read.clear()
        receiver_remote_streams(receiver)[MEDIA_SSRC] = watched
        report = await asyncio.wait_for(receiver.getStats(), 5)
        inbound = [(s.packetsReceived, s.packetsLost) for s in report.values() if s.type == "inbound-rtp"]
        assert inbound == [(4, 2)], broken(aiortc_private.REMOTE_STREAMS, f"getStats() no longer reads our counts: "
                                                                          f"{inbound}")
        rr = await sent.first(lambda p: isinstance(p, RtcpRrPacket), 5)
        blocks = [(r.ssrc, r.packets_lost, r.highest_sequence, r.fraction_lost) for r in rr.reports]
        assert blocks == [(MEDIA_SSRC, ours.packets_lost, 3, (2 << 8) // 6)], broken(
            aiortc_private.REMOTE_STREAMS, f"receiver reports no longer carry our statistics: {blocks}")
        unknown = set(read) - set(STATISTICS_READ)
        assert read and not unknown, broken(aiortc_private.REMOTE_STREAMS,
                                            f"is read for more than streamsnap provides: {unknown}")
    finally:
        await stop_receiving(receiver, started)


async def connected_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[RTCPeerConnection, RTCPeerConnection, int, int]:
    """A publisher sending video to an answerer on loopback, as streamsnap's are; with the publisher's SSRC and the
    VP8 payload type it sends."""
    monkeypatch.setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    offerer.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    sdp = offerer.localDescription.sdp
    ssrc = int(re.findall(r"a=ssrc:(\d+) ", sdp)[0])
    payload_type = int(re.findall(r"a=rtpmap:(\d+) VP8/90000", sdp)[0])
    return offerer, answerer, ssrc, payload_type


async def take_srtp_from_the_ice_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once DTLS is connected, the ICE sockets' datagram callbacks can be replaced: SRTP taken there is unprotected
    by the DTLS transport's session, and after `restore()` aiortc gets the datagrams again."""
    offerer, answerer, ssrc, payload_type = await connected_pair(monkeypatch)
    receiver = answerer.getTransceivers()[0].receiver
    dtls = receiver.transport
    taken: list[RtpPacket] = []
    through_aiortc: list[int] = []
    restore: list[Callable[[], None]] = []

    async def handler(packet: RtpPacket, arrival_time_ms: int) -> None:
        through_aiortc.append(packet.sequence_number)

    replace_rtp_handler(receiver, handler)
    replace_decoder_queue(receiver, RecordingTap())

    def on_state() -> None:
        if dtls.state != "connected" or restore:
            return
        session = srtp_receive_session(dtls)
        assert session is not None, broken(RX_SRTP, "is not set when the DTLS transport says it is connected")

        def take(original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
            def datagram_received(data: bytes, addr: Any) -> None:
                if 127 < data[0] < 192 and not 191 < data[1] < 224:
                    taken.append(RtpPacket.parse(session.unprotect(data)))
                else:
                    original(data, addr)
            return datagram_received

        restore.append(intercept_datagrams(dtls, take))

    dtls.on("statechange", on_state)
    try:
        async with asyncio.timeout(10):
            while len(taken) < 20:  # noqa: ASYNC110 -- the callback has no event to await
                await asyncio.sleep(0.02)
        seen = {(p.ssrc, p.payload_type) for p in taken}
        assert seen == {(ssrc, payload_type)}, broken(DATAGRAM_RECEIVED, f"replaced sees {seen}, not the publisher")
        assert not through_aiortc, broken(DATAGRAM_RECEIVED, "replaced: aiortc still got packets")
        restore[0]()
        count = len(taken)
        async with asyncio.timeout(5):
            while len(through_aiortc) < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert len(taken) == count, broken(DATAGRAM_RECEIVED, "could not be put back")
        assert answerer.connectionState == "connected"
    finally:
        await asyncio.wait_for(offerer.close(), 5)
        await asyncio.wait_for(answerer.close(), 5)


async def test_srtp_can_be_taken_from_the_ice_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    await take_srtp_from_the_ice_sockets(monkeypatch)


def test_srtp_can_be_taken_from_the_ice_sockets_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """`streamsnap serve` runs uvloop, whose UDP transport also looks the callback up on the protocol per datagram."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(take_srtp_from_the_ice_sockets(monkeypatch))


async def test_no_common_codec_raises_operation_error() -> None:
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        offerer.addTransceiver("video", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        sdp = re.sub(r"VP8/90000|H264/90000|rtx/90000", "X-NONE/90000", offerer.localDescription.sdp)
        with pytest.raises(OperationError):
            await asyncio.wait_for(answerer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer")), 5)
    finally:
        await offerer.close()
        await answerer.close()


async def test_host_addresses_replacement_decides_the_host_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, HOST_ADDRESSES_FUNCTION, getattr(aioice.ice, HOST_ADDRESSES_FUNCTION))
    calls: list[tuple[bool, bool]] = []

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        calls.append((use_ipv4, use_ipv6))
        return ["127.0.0.1"]

    replace_host_addresses(loopback)
    connection = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    try:
        await asyncio.wait_for(connection.gather_candidates(), 5)
        hosts = [(c.type, c.host) for c in connection.local_candidates]
    finally:
        await asyncio.wait_for(connection.close(), 5)
    assert calls == [(True, False)] and hosts == [("host", "127.0.0.1")], broken(
        HOST_ADDRESSES_FUNCTION, f"replaced is no longer what candidate gathering asks (calls {calls}, got {hosts})")


def test_replacing_a_missing_name_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aioice.ice, HOST_ADDRESSES_FUNCTION)
    with pytest.raises(aiortc_private.PrivateNameMissing, match=r"aioice\.ice\.get_host_addresses .*aioice \d"):
        replace_host_addresses(lambda use_ipv4, use_ipv6: [])

    class Renamed:
        pass

    with pytest.raises(aiortc_private.PrivateNameMissing, match="_RTCRtpReceiver__decoder_queue"):
        replace_decoder_queue(Renamed(), RecordingTap())
    with pytest.raises(aiortc_private.PrivateNameMissing, match="_handle_rtp_packet"):
        replace_rtp_handler(Renamed(), RecordingTap().get)  # type: ignore[arg-type]


# Public modules of aiortc and aioice: anything else they have is private to them.
PUBLIC_MODULES = {"aiortc", "aiortc.contrib.media", "aioice"}
MANGLED = re.compile(r"_RTC\w+?__\w+")


def exported(module: str, name: str) -> bool:
    """Whether `name` of `module` is also exported by its package's top level (so public, wherever imported from)."""
    package = importlib.import_module(module.split(".")[0])
    public = getattr(package, "__all__", ())
    return name in public and getattr(package, name) is getattr(importlib.import_module(module), name, None)


def private_uses(path: Path) -> list[str]:
    """Where `path` spells an aiortc/aioice private name itself instead of going through aiortc_private."""
    tree = parse(path)
    # Private attributes and methods (underscored), and the private modules' functions and classes
    # (reached as attributes when their module is imported): `.add` or `.missing` are too common to tell.
    underscored = {entry.qualname.rsplit(".", 1)[-1] for entry in PRIVATE_NAMES if entry.qualname.count(".") == 1}
    underscored = {name for name in underscored if name.startswith("_")}
    underscored |= {entry.qualname for entry in PRIVATE_NAMES if "." not in entry.qualname}
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("aiortc", "aioice"):
            if node.module not in PUBLIC_MODULES:
                hidden = [alias.name for alias in node.names if not exported(node.module, alias.name)]
                if hidden:
                    found.append(f"{where} imports {', '.join(hidden)} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("aiortc", "aioice") and alias.name not in PUBLIC_MODULES:
                    found.append(f"{where} imports {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr in underscored:
            found.append(f"{where} uses .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MANGLED.search(node.value) or node.value in underscored:
                found.append(f"{where} spells {node.value!r}")
    return found


def test_private_names_are_spelled_only_in_aiortc_private() -> None:
    """A private name used elsewhere would escape this contract test; use aiortc_private's constants and helpers."""
    found = [use for path in sorted(SRC.rglob("*.py")) if path.name != "aiortc_private.py"
             for use in private_uses(path)]
    assert found == [], "private aiortc/aioice names outside media/aiortc_private.py:\n" + "\n".join(found)
