"""A real aiortc publisher on loopback, real snapshots, checked by their pixels."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiortc import AudioStreamTrack

from streamsnap.media.pattern import FPS, SECOND_COLOURS, PatternTrack, read_colour, read_counter
from streamsnap.wcsclient import PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer, png_image

pytestmark = pytest.mark.integration



def assert_colour(picture: Any, counter: int) -> None:
    expected = SECOND_COLOURS[(counter // FPS) % len(SECOND_COLOURS)]
    actual = read_colour(picture)
    assert all(abs(int(a) - int(e)) < 40 for a, e in zip(actual, expected, strict=True)), (actual, expected)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_snapshots_show_the_picture_of_their_moment(server: RunningServer, codec: str) -> None:
    track = PatternTrack(640, 480)
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("cam", [track], codec=codec)
        await asyncio.sleep(1.0)

        first = await viewer.snapshot("cam")
        published_then = track.counter
        image = png_image(first.png)
        assert image.size == (640, 480)
        first_counter = read_counter(image)
        assert 0 <= published_then - first_counter <= MAX_LAG_FRAMES
        assert_colour(image, first_counter)
        assert (first.payload["width"], first.payload["height"]) == (640, 480)
        assert first.payload["frameAgeMs"] < 1000

        await asyncio.sleep(1.5)
        second = await viewer.snapshot("cam")
        published_then = track.counter
        image = png_image(second.png)
        second_counter = read_counter(image)
        assert 0 <= published_then - second_counter <= MAX_LAG_FRAMES
        assert second_counter - first_counter >= 1.5 * FPS - MAX_LAG_FRAMES
        assert_colour(image, second_counter)

        assert server.node is not None
        stream = await server.node.registry.lookup("cam")
        assert stream is not None and stream.codec == codec  # the record, as listings show it
    finally:
        await publisher.close()
        await viewer.close()


async def test_native_size_is_kept(server: RunningServer) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("small", [PatternTrack(320, 240)])
        picture = await publisher.snapshot("small")
        assert png_image(picture.png).size == (320, 240)
    finally:
        await publisher.close()


async def test_a_second_publisher_of_a_live_name_is_refused(server: RunningServer) -> None:
    first = await WcsClient.connect(server.ws_url)
    second = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        await first.publish("taken", [track])
        with pytest.raises(PublishFailed) as refused:
            await second.publish("taken", [PatternTrack(320, 240)])
        assert refused.value.status == "FAILED"
        assert refused.value.info == "Stream name is already in use"
        # the first publisher is untouched
        picture = await second.snapshot("taken")
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await first.close()
        await second.close()


async def test_unpublish_then_snapshot_is_not_found(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        publication = await client.publish("going", [PatternTrack(320, 240)])
        await client.snapshot("going")
        await client.unpublish(publication)
        event = await client.wait_status(publication, "UNPUBLISHED", timeout=5)
        assert event["info"] == "Stopped by publisher stop"
        with pytest.raises(SnapshotFailed) as failed:
            await client.snapshot("going")
        assert failed.value.info == "Stream not found"
        # the name is free again
        await client.publish("going", [PatternTrack(320, 240)])
    finally:
        await client.close()


async def test_snapshot_of_unknown_name(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        with pytest.raises(SnapshotFailed) as failed:
            await client.snapshot("nobody")
        assert failed.value.info == "Stream not found"
    finally:
        await client.close()


async def test_closed_publisher_socket_ends_its_stream(server: RunningServer) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("dropped", [PatternTrack(320, 240)])
        await viewer.snapshot("dropped")
        await publisher.ws.close()  # the socket goes; the peer connection is left behind
        async with asyncio.timeout(5):
            while True:
                try:
                    await viewer.snapshot("dropped")
                except SnapshotFailed as exc:
                    assert exc.info == "Stream not found"
                    break
                await asyncio.sleep(0.1)
        assert server.node is not None
        assert await server.node.registry.all() == []
    finally:
        await publisher.close()
        await viewer.close()


async def test_twenty_snapshots_at_once_are_all_answered(server: RunningServer) -> None:
    track = PatternTrack(640, 480)
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("busy", [track])
        await viewer.snapshot("busy")
        pictures = await asyncio.gather(*(viewer.snapshot("busy") for _ in range(20)))
        published_then = track.counter
        assert len(pictures) == 20
        for picture in pictures:
            image = png_image(picture.png)
            assert image.size == (640, 480)
            assert 0 <= published_then - read_counter(image) <= MAX_LAG_FRAMES
    finally:
        await publisher.close()
        await viewer.close()


async def test_audio_is_accepted_and_a_stream_without_video_says_so(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        await client.publish("voice", [AudioStreamTrack()])
        with pytest.raises(SnapshotFailed) as failed:
            await client.snapshot("voice")
        assert failed.value.info == "Stream has no video"
        track = PatternTrack(320, 240)
        await client.publish("both", [track, AudioStreamTrack()])
        picture = await client.snapshot("both")
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await client.close()


async def test_bad_messages_get_fail_and_the_session_goes_on(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    other = await WcsClient.connect(server.ws_url)
    try:
        await client.ws.send_str("this is not json")
        fail = await asyncio.wait_for(client.fails.get(), 5)
        assert fail["info"].startswith("Malformed message")
        await client.ws.send_str(json.dumps({"message": "snapshot", "data": [{"name": 42}]}))
        fail = await asyncio.wait_for(client.fails.get(), 5)
        assert fail["apiMethod"] == "snapshot" and "Malformed message" in fail["info"]
        await client.send("playStream", {"mediaSessionId": "p1", "name": "x"})
        fail = await asyncio.wait_for(client.fails.get(), 5)
        assert fail == {"apiMethod": "playStream", "info": "Method is not supported", "id": "p1"}
        await client.send("noSuchMessage", {})
        fail = await asyncio.wait_for(client.fails.get(), 5)
        assert fail["apiMethod"] == "noSuchMessage"
        await client.ws.send_bytes(b"\x00\x01")
        fail = await asyncio.wait_for(client.fails.get(), 5)
        assert "binary" in fail["info"]
        # the session and the server still work
        track = PatternTrack(320, 240)
        await client.publish("after-garbage", [track])
        picture = await other.snapshot("after-garbage")
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await client.close()
        await other.close()


SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
SDP_ICE = (
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=ice-ufrag:abcd\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
)


@pytest.mark.parametrize(
    ("sdp", "info"),
    [
        (SDP_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", "Invalid SDP"),
        (SDP_HEAD, "No common codecs"),
        (SDP_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n" + SDP_ICE, "No common codecs"),
    ],
)
async def test_publish_with_unusable_sdp_fails_cleanly(server: RunningServer, sdp: str, info: str) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        watched = client.watch("bad-sdp", "bad")
        await client.send("publishStream", {"mediaSessionId": "bad-sdp", "name": "bad", "sdp": sdp})
        with pytest.raises(PublishFailed) as failed:
            await client.wait_status(watched, "PUBLISHING", timeout=5)
        assert failed.value.status == "FAILED"
        assert failed.value.info == info
        assert server.node is not None
        assert await server.node.registry.all() == []
        track = PatternTrack(320, 240)
        await client.publish("bad", [track])  # the name was released
    finally:
        await client.close()
