"""The RTSP guard between FFmpeg and a camera (media/rtsp_guard.py), driven without I/O: every bound,
every rewrite, and hostile bytes of any shape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsnap.media.rtsp_guard import (
    HEAD_MAX_BYTES,
    ClientPorts,
    FrameBounds,
    GuardLimits,
    GuardRefusal,
    Played,
    Redirected,
    RtspGuard,
    ServerPorts,
    UdpPorts,
    choose_video_track,
)
from streamsnap.reasons import StreamEnd
from tests.harness.hostile_rtsp import h264_frames, packetize, rtp_packet

pytestmark = pytest.mark.unit

LIMITS = GuardLimits(sdp_bytes=65536, tracks=8, frame_bytes=4 * 1024 * 1024, frame_packets=4096, frame_nals=1024,
                     packets_per_second=10_000)
SDP = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=cam\r\nt=0 0\r\na=control:*\r\n"
       b"m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:track0\r\n"
       b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:track1\r\n"
       b"m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n")


def reply(cseq: int, status: str = "200 OK", headers: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{headers}{length}\r\n".encode() + body


def request(method: str, cseq: int, headers: str = "", url: str = "rtsp://127.0.0.1:9000/cam") -> bytes:
    return f"{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n".encode()


def interleaved(channel: int, packet: bytes) -> bytes:
    return b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet


def set_up(guard: RtspGuard, transport: str = "RTP/AVP/TCP;unicast;interleaved=0-1") -> None:
    """OPTIONS, DESCRIBE, SETUP and PLAY, answered."""
    for cseq, method in enumerate(("OPTIONS", "DESCRIBE", "SETUP", "PLAY"), 1):
        guard.from_client(request(method, cseq, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                                  if method == "SETUP" else ""))
        if method == "DESCRIBE":
            guard.from_camera(reply(cseq, body=SDP))
        elif method == "SETUP":
            guard.from_camera(reply(cseq, headers=f"Session: 1\r\nTransport: {transport}\r\n"))
        else:
            guard.from_camera(reply(cseq))


def test_a_good_exchange_passes_with_one_video_track() -> None:
    guard = RtspGuard(LIMITS, "tcp")
    out, events = guard.from_client(request("DESCRIBE", 2, "Authorization: Basic dTpw\r\n"))
    assert b"Authorization: Basic dTpw" in out and events == []
    out, events = guard.from_camera(reply(2, headers="Content-Type: application/sdp\r\n", body=SDP))
    head, body = out.split(b"\r\n\r\n", 1)
    assert body.count(b"m=") == 1 and b"m=video 0 RTP/AVP 96" in body and b"a=control:track1" in body
    assert b"PCMU" not in body and b"onvif" not in body and b"a=control:*" in body
    assert f"Content-Length: {len(body)}".encode() in head
    guard.from_client(request("SETUP", 3, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"))
    out, _ = guard.from_camera(reply(3, headers="Session: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;"
                                                "ssrc=1234ABCD;source=10.9.9.9;destination=10.8.8.8;mode=PLAY\r\n"))
    assert b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1234ABCD\r\n" in out
    guard.from_client(request("PLAY", 4))
    out, events = guard.from_camera(reply(4))
    assert events == [Played()]
    # RTP of the track and its RTCP pass; channels never set up do not.
    frame = next(iter(packetize(h264_frames()[0])))[0]
    media = interleaved(0, rtp_packet(frame, sequence=1, timestamp=0, marker=True))
    out, _ = guard.from_camera(media + interleaved(1, b"\x80\xc8" + b"\x00" * 26) + interleaved(4, b"x" * 40))
    assert out == media + interleaved(1, b"\x80\xc8" + b"\x00" * 26)


def test_bytes_in_any_chunks_give_the_same_result() -> None:
    whole = RtspGuard(LIMITS, "tcp")
    whole.from_client(request("DESCRIBE", 2))
    expected, _ = whole.from_camera(reply(2, body=SDP))
    dripped = RtspGuard(LIMITS, "tcp")
    dripped.from_client(request("DESCRIBE", 2))
    data = reply(2, body=SDP)
    assert b"".join(dripped.from_camera(data[i:i + 1])[0] for i in range(len(data))) == expected


def test_a_frame_budget_leaves_the_rest_for_later() -> None:
    guard = RtspGuard(LIMITS, "tcp")
    set_up(guard)
    packets = [interleaved(0, packet) for packets in frames_of(3) for packet in packets]
    out, _ = guard.from_camera(b"".join(packets), frames=2)
    assert out == b"".join(packets[:2]) and guard.backlog
    out, _ = guard.from_camera(b"", frames=0)
    assert out == b"" and guard.backlog
    out, _ = guard.from_camera(b"", frames=len(packets))
    assert out == b"".join(packets[2:]) and not guard.backlog
    assert guard.camera_packets == len(packets)


def test_a_redirect_is_reported_and_never_passed_on() -> None:
    guard = RtspGuard(LIMITS, "tcp")
    guard.from_client(request("DESCRIBE", 2))
    out, events = guard.from_camera(reply(2, "302 Moved", "Location: rtsp://10.0.0.9/x\r\n") + reply(3))
    assert out == b"" and events == [Redirected("rtsp://10.0.0.9/x")]
    with pytest.raises(GuardRefusal):
        RtspGuard(LIMITS, "tcp").from_camera(reply(2, "301 Moved"))


@pytest.mark.parametrize("data, words", [
    (b"RTSP/1.0 200 OK\r\nX: " + b"a" * HEAD_MAX_BYTES, "head over"),
    (b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 314572800\r\n\r\n", "body of 314572800 bytes"),
    (b"RTSP/1.0 200 OK\r\nContent-Length: -5\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\n\r\n", "does not speak RTSP"),
    (b"\x00\x01\x02\r\n\r\n", "does not speak RTSP"),
    (b"RTSP/1.0 200 OK\r\nno colon here\r\n\r\n", "header that is not one"),
])
def test_what_the_camera_may_not_send(data: bytes, words: str) -> None:
    with pytest.raises(GuardRefusal) as refused:
        RtspGuard(LIMITS, "tcp").from_camera(data)
    assert words in refused.value.words
    assert refused.value.reason is StreamEnd.INVALID_SDP


def test_the_body_bound_holds_before_the_body_arrives() -> None:
    guard = RtspGuard(LIMITS, "tcp")
    with pytest.raises(GuardRefusal) as refused:
        guard.from_camera(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 65537\r\n\r\n")  # not one byte of it yet
    assert "rtsp.max_sdp_bytes" in refused.value.words


def test_descriptions_with_too_many_tracks_or_no_video_the_engine_decodes() -> None:
    many = b"v=0\r\n" + b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" * 9
    with pytest.raises(GuardRefusal) as refused:
        choose_video_track(many, 8)
    assert refused.value.reason is StreamEnd.INVALID_SDP and "rtsp.max_tracks" in refused.value.words
    with pytest.raises(GuardRefusal) as refused:
        choose_video_track(b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 MP4V-ES/90000\r\n"
                           b"m=audio 0 RTP/AVP 0\r\n", 8)
    assert refused.value.reason is StreamEnd.UNSUPPORTED_CODEC and "video MP4V-ES" in refused.value.words
    # The format FFmpeg would take is the first of the m= line; of the sections, the first it decodes.
    both = b"v=0\r\nm=video 0 RTP/AVP 97 96\r\na=rtpmap:96 H264/90000\r\na=rtpmap:97 H265/90000\r\n"
    assert choose_video_track(both, 8)[1] == "H265"
    sections = (b"v=0\r\nm=audio 0 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP9/90000\r\n"
                b"m=video 0 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n")
    description, codec = choose_video_track(sections, 8)
    assert codec == "H264" and description == b"v=0\r\nm=video 0 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n"


@pytest.mark.parametrize("transport", ["RTP/AVP/TCP;multicast;interleaved=0-1", "RTP/AVP;unicast;server_port=5-6",
                                       "RTP/AVP/TCP;unicast", "RTP/AVP/TCP;unicast;interleaved=300-301",
                                       "RDT/AVP/TCP;unicast;interleaved=0-1"])
def test_setup_replies_ffmpeg_may_not_use(transport: str) -> None:
    with pytest.raises(GuardRefusal):
        set_up(RtspGuard(LIMITS, "tcp"), transport)


def test_one_setup_only() -> None:
    guard = RtspGuard(LIMITS, "tcp")
    set_up(guard)
    guard.from_client(request("SETUP", 9))
    with pytest.raises(GuardRefusal):
        guard.from_camera(reply(9, headers="Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n"))


def test_udp_ports_are_the_relays_both_ways() -> None:
    guard = RtspGuard(LIMITS, "udp", UdpPorts(camera=(40000, 40001), loopback=(50000, 50001)))
    out, events = guard.from_client(request("SETUP", 3, "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001\r\n"))
    assert b"client_port=40000-40001" in out and b"5000" not in out
    assert events == [ClientPorts(5000, 5001)]
    out, events = guard.from_camera(reply(3, headers="Session: 1\r\nTransport: RTP/AVP;unicast;client_port=40000-"
                                                     "40001;server_port=6970-6971;source=169.254.169.254\r\n"))
    assert events == [ServerPorts(6970, 6971)]
    assert b"Transport: RTP/AVP;unicast;client_port=5000-5001;server_port=50000-50001\r\n" in out
    assert b"169.254" not in out


def frames_of(count: int) -> list[list[bytes]]:
    frames = h264_frames()
    sequence = 0
    out = []
    for index in range(count):
        packets = []
        for payload, marker in packetize(frames[index % len(frames)]):
            packets.append(rtp_packet(payload, sequence=sequence, timestamp=index * 6000, marker=marker))
            sequence += 1
        out.append(packets)
    return out


def test_real_frames_pass_the_frame_bounds() -> None:
    bounds = FrameBounds(GuardLimits(65536, 8, frame_bytes=2000, frame_packets=16, frame_nals=16,
                                     packets_per_second=10_000))
    for packets in frames_of(60):
        assert all(bounds.check(packet) for packet in packets)


def test_an_endless_fragment_is_stopped_whatever_the_marker_bits_say() -> None:
    bounds = FrameBounds(LIMITS)
    start = rtp_packet(bytes([0x7C, 0x85]) + b"\x88" * 1400, sequence=0, timestamp=0, marker=True)
    assert bounds.check(start)
    with pytest.raises(GuardRefusal) as refused:
        for sequence in range(1, 10_000):
            bounds.check(rtp_packet(bytes([0x7C, 0x05]) + b"\x88" * 1400, sequence=sequence,
                                    timestamp=sequence, marker=True))
    assert "gop.max_bytes" in refused.value.words
    assert sequence * 1400 <= LIMITS.frame_bytes + 1400


def test_frames_of_too_many_packets_or_nal_units() -> None:
    bounds = FrameBounds(LIMITS)
    with pytest.raises(GuardRefusal) as refused:  # small fragments pending: one NAL unit, many packets
        for sequence in range(5000):
            bounds.check(rtp_packet(bytes([0x7C, 0x85 if sequence == 0 else 0x05]) + b"z" * 10, sequence=sequence,
                                    timestamp=0, marker=False))
    assert "webrtc.rtp_max_packets_per_frame" in refused.value.words
    slice_continued = bytes([0x41, 0x40])  # a P slice whose first macroblock is not 0: the same picture
    stap = bytes([0x18]) + b"".join(len(unit).to_bytes(2, "big") + unit for unit in [slice_continued] * 300)
    bounds = FrameBounds(LIMITS)
    with pytest.raises(GuardRefusal) as refused:
        for sequence in range(5):
            bounds.check(rtp_packet(stap, sequence=sequence, timestamp=0, marker=True))
    assert "rtsp.max_frame_nals" in refused.value.words
    # Parameter sets repeated forever start no picture either (FFmpeg's parser gathers them all).
    bounds = FrameBounds(GuardLimits(65536, 8, frame_bytes=10_000, frame_packets=4096, frame_nals=1024,
                                     packets_per_second=10_000))
    with pytest.raises(GuardRefusal):
        for sequence in range(1000):
            bounds.check(rtp_packet(bytes([0x67]) + b"s" * 100, sequence=sequence, timestamp=sequence, marker=True))


def test_packets_that_are_not_h264_rtp_are_dropped() -> None:
    bounds = FrameBounds(LIMITS)
    assert not bounds.check(b"\x00" * 20)  # not RTP version 2
    assert not bounds.check(rtp_packet(b"", sequence=1, timestamp=0, marker=True))
    assert not bounds.check(rtp_packet(bytes([0x1D, 0x80]) + b"x", sequence=1, timestamp=0, marker=True))  # FU-B
    assert not bounds.check(bytes([0x90]) + b"\x60" + b"\x00" * 10 + b"\x00\x00\xff\xff")  # extension past the end


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.sampled_from(["tcp", "udp"]))
def test_any_bytes_from_a_camera_are_passed_refused_or_dropped(chunks: list[bytes], transport: str) -> None:
    guard = RtspGuard(LIMITS, transport, UdpPorts((40000, 40001), (50000, 50001)) if transport == "udp" else None)
    guard.from_client(request("DESCRIBE", 1) + request("SETUP", 2, "Transport: RTP/AVP/UDP;unicast;client_port="
                                                                   "5000-5001\r\n"))
    try:
        for chunk in chunks:
            guard.from_camera(chunk)
            guard.check_udp_rtp(chunk)
    except GuardRefusal as refused:
        assert refused.words


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"$", b"\x00", b"\x10", b"RTSP/1.0 200 OK\r\n", b"CSeq: 1\r\n", b"\r\n",
                                 b"Content-Length: 4\r\n", b"Transport: RTP/AVP/TCP;interleaved=0-1\r\n",
                                 b"Location: rtsp://x/\r\n", b"RTSP/1.0 302 Found\r\n", b"\x80\x60" + b"\x00" * 10]),
                max_size=60))
def test_rtsp_shaped_bytes_never_break_the_guard(pieces: list[bytes]) -> None:
    guard = RtspGuard(LIMITS, "tcp")
    guard.from_client(request("DESCRIBE", 1) + request("SETUP", 2))
    try:
        guard.from_camera(b"".join(pieces))
    except GuardRefusal:
        pass
