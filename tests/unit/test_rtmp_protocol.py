"""The sans-I/O RTMP core and the FLV/H.264 conversion: every step without sockets, then hostile bytes."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsnap.config import GopSettings, RtmpSettings
from streamsnap.media.h264 import H264Error, avcc_to_annex_b, nal_types, parse_avc_config
from streamsnap.media.rtmp import RtmpSource
from streamsnap.protocol.rtmp import (
    COMMAND_AMF0,
    HANDSHAKE_SIZE,
    SET_CHUNK_SIZE,
    USER_CONTROL,
    VIDEO,
    Connected,
    PublishRequested,
    PublishStopped,
    RtmpConnection,
    RtmpError,
    State,
    VideoData,
    decode_amf0,
    encode_amf0,
)
from streamsnap.reasons import StreamEnd

pytestmark = pytest.mark.unit


def chunked(csid: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int = 128,
            timestamp: int = 0) -> bytes:
    """A message as a client writes it: a type-0 chunk, then type-3 continuations."""
    ts = min(timestamp, 0xFFFFFF)
    out = bytes([csid]) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
    out += stream_id.to_bytes(4, "little")
    extended = timestamp.to_bytes(4, "big") if timestamp >= 0xFFFFFF else b""
    out += extended + payload[:chunk_size]
    for start in range(chunk_size, len(payload), chunk_size):
        out += bytes([0xC0 | csid]) + extended + payload[start:start + chunk_size]
    return out


def command(*values: object, stream_id: int = 0, chunk_size: int = 128) -> bytes:
    payload = b"".join(encode_amf0(v) for v in values)  # type: ignore[arg-type]
    return chunked(3, COMMAND_AMF0, stream_id, payload, chunk_size)


def handshake(conn: RtmpConnection) -> bytes:
    c1 = bytes(range(256)) * 6
    assert conn.receive_data(b"\x03" + c1) == []
    answer = conn.data_to_send()
    assert answer[0] == 3 and len(answer) == 1 + 2 * HANDSHAKE_SIZE
    assert answer[1 + HANDSHAKE_SIZE:] == c1  # S2 echoes C1
    assert conn.receive_data(answer[1:1 + HANDSHAKE_SIZE]) == []  # C2
    assert conn.state is State.WAIT_CONNECT
    return answer


def publishing(conn: RtmpConnection, key: str = "cam?token=abc") -> list[object]:
    handshake(conn)
    events: list[object] = []
    events += conn.receive_data(command("connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live"}))
    events += conn.receive_data(command("releaseStream", 2.0, None, key))
    events += conn.receive_data(command("FCPublish", 3.0, None, key))
    events += conn.receive_data(command("createStream", 4.0, None))
    events += conn.receive_data(command("publish", 5.0, None, key, "live", stream_id=1))
    return events


def replies(data: bytes) -> list[list[object]]:
    """The AMF0 commands in the server's output (after its Set Chunk Size of 4096, single chunks)."""
    found = []
    pos = 0
    while pos < len(data):
        csid, size, type_id = data[pos] & 0x3F, int.from_bytes(data[pos + 4:pos + 7], "big"), data[pos + 7]
        assert csid >= 2
        payload = data[pos + 12:pos + 12 + size]
        if type_id == COMMAND_AMF0:
            found.append(decode_amf0(payload))
        pos += 12 + size
    return found


def test_a_publish_as_ffmpeg_does_it() -> None:
    conn = RtmpConnection(RtmpSettings())
    events = publishing(conn)
    assert events == [Connected("live", "rtmp://h/live"), PublishRequested("cam?token=abc", 1)]
    answers = replies(conn.data_to_send())
    assert [a[0] for a in answers] == ["_result", "_result", "_result", "_result"]
    connect_result = answers[0]
    assert connect_result[1] == 1.0
    assert isinstance(connect_result[3], dict) and connect_result[3]["code"] == "NetConnection.Connect.Success"
    assert answers[3][1:] == [4.0, None, 1.0]  # createStream's stream id
    conn.accept_publish(1, "Publishing")
    status = replies(conn.data_to_send())
    assert status[0][0] == "onStatus" and status[0][3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    video = b"\x17\x01\x00\x00\x00" + b"\x00\x00\x00\x02\x65\x88"
    assert conn.receive_data(chunked(6, VIDEO, 1, video, timestamp=40)) == [VideoData(40, video)]
    assert conn.receive_data(command("FCUnpublish", 6.0, None, "cam")) == [PublishStopped(1)]


def test_video_before_the_publish_is_accepted_is_dropped() -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    assert conn.receive_data(chunked(6, VIDEO, 1, b"\x17\x01\x00\x00\x00")) == []


def test_a_refused_publish_says_why_and_the_connection_is_done() -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.data_to_send()
    conn.refuse_publish(1, "NetStream.Publish.BadName", "Stream name is already in use")
    status = replies(conn.data_to_send())[0]
    assert status[3] == {"level": "error", "code": "NetStream.Publish.BadName",
                         "description": "Stream name is already in use"}
    assert conn.state is State.CLOSED and conn.receive_data(b"more") == []


def test_chunk_size_changes_and_byte_at_a_time_delivery() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    data = chunked(2, SET_CHUNK_SIZE, 0, (4096).to_bytes(4, "big"))
    data += command("connect", 1.0, {"app": "live"}, chunk_size=4096)
    events = []
    for byte in data:
        events += conn.receive_data(bytes([byte]))
    assert events == [Connected("live", "")]


def test_extended_timestamps_and_type_3_continuations() -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.accept_publish(1, "")
    video = b"\x27\x01\x00\x00\x00" + bytes(300)
    events = conn.receive_data(chunked(6, VIDEO, 1, video, timestamp=0x1234567))
    assert events == [VideoData(0x1234567, video)]


@pytest.mark.parametrize("data, words", [
    (b"GET / HTTP/1.1\r\n\r\n", "not RTMP"),
    (b"\x06" + bytes(1536), "not RTMP"),
])
def test_garbage_instead_of_a_handshake(data: bytes, words: str) -> None:
    with pytest.raises(RtmpError, match=words):
        RtmpConnection(RtmpSettings()).receive_data(data)


def test_limits() -> None:
    conn = RtmpConnection(RtmpSettings(max_chunk_size=65536, max_message_bytes=100_000))
    handshake(conn)
    with pytest.raises(RtmpError, match="chunk size"):
        conn.receive_data(chunked(2, SET_CHUNK_SIZE, 0, (0x7FFFFFFF).to_bytes(4, "big")))
    conn = RtmpConnection(RtmpSettings(max_message_bytes=100_000))
    handshake(conn)
    with pytest.raises(RtmpError, match=r"over rtmp\.max_message_bytes"):
        conn.receive_data(b"\x06" + bytes(3) + (200_000).to_bytes(3, "big") + b"\x09" + bytes(4))
    conn = RtmpConnection(RtmpSettings(max_chunk_streams=4))
    handshake(conn)
    with pytest.raises(RtmpError, match="too many chunk streams"):
        for csid in range(10, 20):
            conn.receive_data(bytes([csid]) + bytes(3) + (50).to_bytes(3, "big") + b"\x09" + bytes(4) + bytes(50))
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    with pytest.raises(RtmpError, match="before connect"):
        conn.receive_data(command("publish", 5.0, None, "cam"))


def test_an_ack_follows_the_peer_window() -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.data_to_send()
    conn.receive_data(chunked(2, 5, 0, (1000).to_bytes(4, "big")))
    conn.accept_publish(1, "")
    conn.data_to_send()
    conn.receive_data(chunked(6, VIDEO, 1, bytes(2000), chunk_size=128))
    assert b"\x03" in conn.data_to_send()[:12]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_hostile_bytes_after_the_handshake_raise_rtmp_error_or_pass(data: bytes) -> None:
    conn = RtmpConnection(RtmpSettings(max_message_bytes=65536))
    handshake(conn)
    try:
        conn.receive_data(data)
    except RtmpError:
        assert conn.state is State.CLOSED
    assert len(conn._buffer) <= 65536 + 1024


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20), st.integers(min_value=0, max_value=2))
def test_hostile_messages_after_connect(payloads: list[bytes], which: int) -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.accept_publish(1, "")
    type_id = (COMMAND_AMF0, VIDEO, 18)[which]
    for payload in payloads:
        try:
            conn.receive_data(chunked(5, type_id, 1, payload))
        except RtmpError:
            return


# Issue 22, item 4: work bounded before it is done.


def test_a_command_is_refused_by_the_length_its_header_announces() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    conn.receive_data(command("connect", 1.0, {"app": "live"}))
    header = bytes([3]) + bytes(3) + (1 << 20).to_bytes(3, "big") + bytes([COMMAND_AMF0]) + bytes(4)
    with pytest.raises(RtmpError, match=r"command of 1048576 bytes over rtmp\.max_command_bytes \(4096\)"):
        conn.receive_data(header)  # not one byte of the body was sent, nor kept
    assert conn.state is State.CLOSED


def test_a_type_3_header_starting_a_message_is_checked_too() -> None:
    # A small message on a chunk stream, then the publish ends: a type-3 header repeats the old
    # length for a new message, which must meet the limits of the state the connection is in now.
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.accept_publish(1, "")
    video = b"\x27\x01\x00\x00\x00" + bytes(9000)
    assert len(conn.receive_data(chunked(6, VIDEO, 1, video, chunk_size=128))) == 1
    assert conn.receive_data(command("FCUnpublish", 6.0, None, "cam")) == [PublishStopped(1)]
    with pytest.raises(RtmpError, match="before publishing"):
        conn.receive_data(bytes([0xC6]) + video[:128])


def test_before_a_publish_is_accepted_every_message_is_command_sized() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    conn.receive_data(command("connect", 1.0, {"app": "live"}))
    with pytest.raises(RtmpError, match=r"message of 5000 bytes before publishing, over rtmp\.max_command_bytes"):
        conn.receive_data(chunked(6, VIDEO, 0, bytes(5000)))
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.accept_publish(1, "")
    video = b"\x17\x01\x00\x00\x00" + bytes(100_000)  # a keyframe, once publishing
    assert conn.receive_data(chunked(6, VIDEO, 1, video, chunk_size=128)) == [VideoData(0, video)]


@pytest.mark.parametrize("size, refused", [(1, True), (127, True), (128, False), (65536, False), (65537, True)])
def test_chunk_sizes_an_encoder_uses_and_no_smaller(size: int, refused: bool) -> None:
    conn = RtmpConnection(RtmpSettings(max_chunk_size=65536))
    handshake(conn)
    message = chunked(2, SET_CHUNK_SIZE, 0, size.to_bytes(4, "big"))
    if refused:
        with pytest.raises(RtmpError, match=r"chunk size \d+ refused \(128 to rtmp\.max_chunk_size, 65536\)"):
            conn.receive_data(message)
    else:
        assert conn.receive_data(message) == []


def test_the_bytes_before_publish_are_bounded_and_not_after() -> None:
    conn = RtmpConnection(RtmpSettings(max_bytes_before_publish=8192))
    handshake(conn)
    conn.receive_data(command("connect", 1.0, {"app": "live"}))
    with pytest.raises(RtmpError, match=r"bytes before publish, over rtmp\.max_bytes_before_publish \(8192\)"):
        for _ in range(1000):
            conn.receive_data(command("getStreamLength", 0.0, None, "x" * 100))
    conn = RtmpConnection(RtmpSettings(max_bytes_before_publish=8192))
    publishing(conn)
    conn.accept_publish(1, "")
    for _ in range(100):
        conn.receive_data(chunked(6, VIDEO, 1, b"\x27\x01\x00\x00\x00" + bytes(1000)))


def test_nothing_after_publish_is_parsed_until_the_publish_is_accepted() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    video = b"\x17\x01\x00\x00\x00" + bytes(3000)
    pipelined = (command("connect", 1.0, {"app": "live"}) + command("publish", 5.0, None, "cam", "live", stream_id=1)
                 + chunked(6, VIDEO, 1, video))
    assert conn.receive_data(pipelined) == [Connected("live", ""), PublishRequested("cam", 1)]
    assert conn.receive_data(b"") == [] and not conn.backlog  # waiting for the shell's answer
    conn.accept_publish(1, "")
    assert conn.receive_data(b"") == [VideoData(0, video)]


def test_a_refused_publish_parses_nothing_more() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    conn.receive_data(command("connect", 1.0, {"app": "live"}) + command("publish", 5.0, None, "cam", stream_id=1)
                      + command("x" * 100, 7.0, None))
    conn.data_to_send()
    conn.refuse_publish(1, "NetStream.Publish.Denied", "Restricted access")
    assert conn.receive_data(b"") == []
    assert [r[0] for r in replies(conn.data_to_send())] == ["onStatus"]


def test_parsing_in_bounded_steps() -> None:
    conn = RtmpConnection(RtmpSettings())
    publishing(conn)
    conn.accept_publish(1, "")
    conn.data_to_send()
    # 600 one-chunk messages: a step of 128 takes 128 chunks and leaves the rest buffered.
    ping = chunked(2, USER_CONTROL, 0, b"\x00\x06\x00\x00\x00\x01")
    conn.receive_data(ping * 600, max_work=128)
    steps = 1
    while conn.backlog:
        conn.receive_data(b"", max_work=128)
        steps += 1
    assert steps == 5 and not conn._buffer
    # A completed message costs one unit per 512 of its bytes: a 64 KiB frame ends a step.
    conn.receive_data(chunked(2, SET_CHUNK_SIZE, 0, (65536).to_bytes(4, "big")))
    frame = b"\x27\x01\x00\x00\x00" + bytes(66000)
    events = conn.receive_data(chunked(6, VIDEO, 1, frame, chunk_size=65536) * 3, max_work=128)
    assert events == [VideoData(0, frame)] and conn.backlog
    assert conn.receive_data(b"", max_work=128) == [VideoData(0, frame)]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=64), st.lists(st.integers(min_value=1, max_value=3000), max_size=12))
def test_steps_and_any_cut_of_the_bytes_give_the_same_events(max_work: int, cuts: list[int]) -> None:
    data = b"\x03" + bytes(range(256)) * 6
    key = "cam?token=abc"
    session = (command("connect", 1.0, {"app": "live"}) + command("createStream", 4.0, None)
               + command("publish", 5.0, None, key, "live", stream_id=1))
    media = b"".join(chunked(6, VIDEO, 1, b"\x27\x01\x00\x00\x00" + bytes([i]) * (i * 97), timestamp=i * 40)
                     for i in range(1, 12))
    whole = RtmpConnection(RtmpSettings())
    expected = whole.receive_data(data) + whole.receive_data(data[1:1 + HANDSHAKE_SIZE]) + whole.receive_data(session)
    whole.accept_publish(1, "")
    expected += whole.receive_data(media)
    stepped = RtmpConnection(RtmpSettings())
    events: list[object] = []
    stream = data + data[1:1 + HANDSHAKE_SIZE] + session + media
    pieces, pos = [], 0
    for cut in cuts:
        pieces.append(stream[pos:pos + cut])
        pos += cut
    pieces.append(stream[pos:])
    for piece in pieces:  # as the shell does: a step per turn of its loop until no backlog is left
        events += stepped.receive_data(piece, max_work=max_work)
        while stepped.backlog or stepped.state is State.PUBLISH_ASKED:
            if stepped.state is State.PUBLISH_ASKED:
                stepped.accept_publish(1, "")
            events += stepped.receive_data(b"", max_work=max_work)
    assert events == expected


def test_an_unknown_command_is_answered_without_repeating_its_name_at_length() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    conn.receive_data(command("connect", 1.0, {"app": "live"}))
    conn.data_to_send()
    conn.receive_data(command("y" * 4000, 2.0, None))
    answer = conn.data_to_send()
    assert len(answer) < 200
    error = replies(answer)[0]
    assert error[:3] == ["_error", 2.0, None]
    assert error[3] == {"level": "error", "code": "NetConnection.Call.Failed",
                        "description": "y" * 64 + "… is not supported"}
    conn.receive_data(command("z" * 4000, 0.0, None))  # no transaction id: no answer at all
    assert conn.data_to_send() == b""


def test_an_error_quotes_at_most_the_start_of_a_peers_string() -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    with pytest.raises(RtmpError) as raised:
        conn.receive_data(command("p" * 3000, 1.0, None))
    assert str(raised.value) == repr("p" * 64) + " before connect"


@pytest.mark.parametrize("body, words", [
    (b"\x0a\x00\x00\x00\x01" * 100, "AMF0 nested too deep"),
    (b"\x02\x00\x07conn", "AMF0 value runs past the message"),
    (b"\x11", "AMF0 marker 0x11 not supported"),
])
def test_a_command_that_is_not_amf0_closes_the_connection_in_its_words(body: bytes, words: str) -> None:
    conn = RtmpConnection(RtmpSettings())
    handshake(conn)
    with pytest.raises(RtmpError, match=words):
        conn.receive_data(chunked(3, COMMAND_AMF0, 0, body))
    assert conn.state is State.CLOSED


SPS = b"\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04"
PPS = b"\x68\xce\x3c\x80"


def avc_config() -> bytes:
    return (b"\x01\x42\xc0\x1e\xff\xe1" + len(SPS).to_bytes(2, "big") + SPS + b"\x01"
            + len(PPS).to_bytes(2, "big") + PPS)


def test_avc_sequence_header_and_annex_b() -> None:
    config = parse_avc_config(avc_config())
    assert (config.length_size, config.sps, config.pps) == (4, (SPS,), (PPS,))
    frame = struct.pack(">I", 3) + b"\x65\x88\x80" + struct.pack(">I", 2) + b"\x06\x05"
    assert avcc_to_annex_b(frame, 4) == [b"\x65\x88\x80", b"\x06\x05"]
    with pytest.raises(H264Error):
        avcc_to_annex_b(struct.pack(">I", 99) + b"\x65", 4)
    with pytest.raises(H264Error):
        parse_avc_config(b"\x01\x42\xc0\x1e\xff\xe1\x00\x50")


async def test_an_rtmp_source_turns_flv_tags_into_decodable_access_units() -> None:
    closed: list[bool] = []
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: closed.append(True))
    await source.start()
    source.feed_video(0, b"\x17\x00\x00\x00\x00" + avc_config())
    assert source.video is None  # the sequence header alone is no frame
    source.feed_video(0, b"\x17\x01\x00\x00\x00" + struct.pack(">I", 3) + b"\x65\x88\x80")
    source.feed_video(66, b"\x27\x01\x00\x00\x00" + struct.pack(">I", 2) + b"\x41\x9a")
    assert source.media_started.done() and source.has_video
    assert source.video is not None
    group = source.video.group()
    assert [f.keyframe for f in group] == [True, False]
    assert group[0].data.startswith(b"\x00\x00\x00\x01" + SPS)
    assert nal_types(group[0].data) == {7, 8, 5}
    assert group[1].timestamp == 66 * 90
    assert source.stats().codec == "H264"
    assert not await source.request_keyframe()
    await source.close(StreamEnd.TERMINATED)
    assert closed == [True] and source.ended.result() is StreamEnd.TERMINATED


async def test_an_rtmp_source_ends_on_a_sequence_header_that_is_not_one() -> None:
    closed: list[bool] = []
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: closed.append(True))
    source.feed_video(0, b"\x17\x00\x00\x00\x00" + avc_config()[:-2])  # the PPS cut short
    assert await asyncio.wait_for(source.ended, 1) is StreamEnd.ERROR
    assert source.video is None


async def test_an_rtmp_source_ends_on_a_frame_whose_nal_length_overruns() -> None:
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: None)
    source.feed_video(0, b"\x17\x00\x00\x00\x00" + avc_config())
    source.feed_video(0, b"\x17\x01\x00\x00\x00" + struct.pack(">I", 99) + b"\x65\x88")
    assert await asyncio.wait_for(source.ended, 1) is StreamEnd.ERROR
    assert source.video is None


async def test_an_rtmp_source_refuses_codecs_other_than_h264() -> None:
    source = RtmpSource("cam", GopSettings(), on_start=lambda: None, disconnect=lambda: None)
    source.feed_video(0, b"\x12" + bytes(10))  # Sorenson H.263
    assert await asyncio.wait_for(source.ended, 1) is StreamEnd.NO_COMMON_CODECS
