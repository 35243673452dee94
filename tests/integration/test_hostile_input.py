"""Hostile clients over a real socket: each gets a WCS answer or a clean close, and nobody else notices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import Publication, PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image
from tests.integration.baseline import assert_back_to_baseline, take_baseline

pytestmark = pytest.mark.integration

MAX_LAG_FRAMES = 20


async def assert_still_serving(server: RunningServer, name: str, track: PatternTrack) -> None:
    """A fresh session still gets a true picture of `name`."""
    viewer = await WcsClient.connect(server.ws_url)
    try:
        picture = await viewer.snapshot(name)
        assert 0 <= track.counter - read_counter(png_image(picture.png)) <= MAX_LAG_FRAMES
    finally:
        await viewer.close()


async def next_fail(client: WcsClient) -> dict[str, Any]:
    return await asyncio.wait_for(client.fails.get(), 5)


async def test_oversized_frame_is_closed_with_1009(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(max_message_bytes=64 * 1024)
    bystander = await WcsClient.connect(server.ws_url)
    track = PatternTrack(320, 240)
    await bystander.publish("bystander", [track])
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_str(json.dumps({"message": "connection", "data": [{"custom": {"x": "y" * 70_000}}]}))
        frame = await asyncio.wait_for(ws.receive(), 5)
        assert frame.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG == 1009
    # a frame just under the limit is fine
    client = await WcsClient.connect(server.ws_url, custom={"x": "y" * 60_000})
    await client.close()
    await assert_still_serving(server, "bystander", track)
    await bystander.close()


@pytest.mark.parametrize(
    ("frame", "api_method", "info"),
    [
        ('{"message": "snapshot", "data": {"name": "a", "mediaSessionId": "b"}}', "snapshot", "`data` must be a list"),
        ('{"message": "snapshot", "data": [{"name": "a"}]}', "snapshot", "mediaSessionId"),
        ('{"message": "publishStream", "data": [{"mediaSessionId": "x", "name": "n", "sdp": 5}]}', "publishStream",
         "`sdp` must be a non-empty string"),
        ('{"message": "snapshot", "data": [[1, 2]]}', "snapshot", "Malformed message"),
        ('{"message": 12, "data": []}', "unknown", "Malformed message"),
        ('{"data": []}', "unknown", "Malformed message"),
        ("[" * 5000 + "]" * 5000, "unknown", "Malformed message"),
        ('{"message": "snapshot", "data": [{"name": "' + "n" * 300 + '", "mediaSessionId": "b"}]}', "snapshot",
         "`name` must be a string of 1 to 256 characters"),
        ('{"message": "\\u0000\\u2028", "data": [null]}', "\x00\u2028", "Method is not supported"),
        ('{"message": "\\ud800", "data": [null]}', "unknown", "Malformed message"),
    ],
    ids=["data-not-list", "missing-field", "wrong-type", "payload-not-object", "name-not-string", "no-name",
         "deep-nesting", "name-too-long", "odd-unicode-method", "lone-surrogate"],
)
async def test_malformed_frames_get_fail(server: RunningServer, frame: str, api_method: str, info: str) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        await client.ws.send_str(frame)
        fail = await next_fail(client)
        assert fail["apiMethod"] == api_method
        assert info in fail["info"]
        assert "Traceback" not in fail["info"]
        await client.send("ping")  # the session goes on
        track = PatternTrack(160, 120)
        await client.publish("after-bad-frame", [track])
        picture = await client.snapshot("after-bad-frame")
        assert png_image(picture.png).size == (160, 120)
    finally:
        await client.close()


async def test_snapshot_before_connection_is_refused(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_str(json.dumps({"message": "snapshot", "data": [{"name": "x", "mediaSessionId": "s1"}]}))
        answer = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        assert answer == {"message": "fail", "data": [
            {"apiMethod": "snapshot", "info": "Session is not established", "id": "s1"}]}
        await ws.send_str(json.dumps({"message": "connection", "data": [{}]}))
        answer = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        assert answer["message"] == "getUserData"


async def test_publish_twice_with_one_media_session_id(server: RunningServer) -> None:
    client = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        publication = await client.publish("twice", [track])
        pc = RTCPeerConnection()
        pc.addTransceiver(PatternTrack(320, 240), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        await client.send("publishStream", {"mediaSessionId": publication.id, "name": "twice-again",
                                            "sdp": pc.localDescription.sdp})
        await pc.close()
        fail = await next_fail(client)
        assert fail == {"apiMethod": "StreamStatusEvent", "info": "MediaSessionId is already in use",
                        "id": publication.id, "status": "FAILED"}
        await assert_still_serving(server, "twice", track)
    finally:
        await client.close()


def _offer_lines(sdp: str) -> list[str]:
    return [line for line in sdp.split("\r\n") if line]


async def _publish_raw(client: WcsClient, stream_id: str, name: str, sdp: str,
                       pc: RTCPeerConnection | None = None) -> Publication:
    publication = Publication(stream_id, name, pc)
    client.publications[stream_id] = publication
    await client.send("publishStream", {"mediaSessionId": stream_id, "name": name, "sdp": sdp})
    return publication


async def test_hostile_sdp(server: RunningServer) -> None:
    """No video, a 10k-line SDP and binary junk are refused with FAILED; nothing is left behind."""
    baseline = take_baseline()
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    good = _offer_lines(pc.localDescription.sdp)
    await pc.close()
    junk_lines = [f"a=x-junk-{i}:{'z' * 40}" for i in range(10_000)]
    cases = {
        "no-media": ("\r\n".join(good[:4]) + "\r\n", "No common codecs"),
        "ten-thousand-lines": ("\r\n".join(good[:4] + junk_lines) + "\r\n", "Invalid SDP"),  # sdp_max_lines
        "only-unknown-codec": ("\r\n".join(
            line.replace("VP8/90000", "XYZ/90000").replace("H264/90000", "XYZ/90000")
            .replace("rtx/90000", "XYZ/90000") for line in good) + "\r\n", "No common codecs"),
        "binary-junk": ("\x00\x01\x02 v=0\r\nm=video x\r\n", None),
    }
    client = await WcsClient.connect(server.ws_url)
    try:
        for index, (case, (sdp, info)) in enumerate(cases.items()):
            publication = await _publish_raw(client, f"sdp-{index}", f"sdp-{case}", sdp)
            with pytest.raises(PublishFailed) as failed:
                await client.wait_status(publication, "PUBLISHING", timeout=10)
            assert failed.value.status == "FAILED", case
            if info is not None:
                assert failed.value.info == info, case
            else:
                assert failed.value.info in ("Invalid SDP", "No common codecs"), case
        await client.publish("after-hostile-sdp", [PatternTrack(160, 120)])
    finally:
        await client.close()
    await assert_back_to_baseline(server, baseline)


async def test_message_flood_closes_only_the_flooder(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(message_rate=20.0, message_burst=40)
    other = await WcsClient.connect(server.ws_url)
    flooder = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        await other.publish("calm", [track])
        for _ in range(200):
            if flooder.ws.closed:
                break
            await flooder.ws.send_str('{"message": "ping", "data": [null]}')
        await asyncio.wait_for(flooder.closed, 5)
        assert flooder.ws.close_code == 1008
        fail = await next_fail(flooder)
        assert fail["info"] == "Failed by error: too many messages"
        # a client within the rate is never cut off
        for _ in range(30):
            await other.send("ping")
            await asyncio.sleep(0.06)
        assert not other.closed.done()
        await assert_still_serving(server, "calm", track)
    finally:
        await flooder.close()
        await other.close()


async def _refused_connection(server: RunningServer) -> tuple[dict[str, Any], int | None]:
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        first = await asyncio.wait_for(ws.receive(), 5)
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        return json.loads(first.data)["data"][0], ws.close_code


async def test_connection_limits(start_server: Callable[..., Any]) -> None:
    per_ip = await start_server(max_connections_per_ip=2)
    clients = [await WcsClient.connect(per_ip.ws_url) for _ in range(2)]
    fail, code = await _refused_connection(per_ip)
    assert fail == {"apiMethod": "connection", "info": "Too many sessions from 127.0.0.1"}
    assert code == 1013
    await clients.pop().close()
    await asyncio.sleep(0.2)
    clients.append(await WcsClient.connect(per_ip.ws_url))  # a freed place can be taken again

    total = await start_server(max_sessions=1)
    clients.append(await WcsClient.connect(total.ws_url))
    fail, code = await _refused_connection(total)
    assert fail == {"apiMethod": "connection", "info": "Too many sessions on this server"}
    for client in clients:
        assert not client.closed.done()
        await client.close()


async def test_server_wide_stream_limit(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(max_streams=1)
    first = await WcsClient.connect(server.ws_url)
    second = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(160, 120)
        await first.publish("one", [track])
        with pytest.raises(PublishFailed) as refused:
            await second.publish("two", [PatternTrack(160, 120)])
        assert refused.value.info == "Failed by error: too many streams on this server"
        await assert_still_serving(server, "one", track)
    finally:
        await first.close()
        await second.close()


async def test_pending_snapshot_limits(start_server: Callable[..., Any]) -> None:
    """Per session and server-wide: requests over the limit fail at once, the others are served."""
    server: RunningServer = await start_server(max_pending_snapshots=3, max_snapshots_in_flight=4,
                                               keyframe_timeout=2.0)
    publisher = await WcsClient.connect(server.ws_url)
    greedy = await WcsClient.connect(server.ws_url)
    other = await WcsClient.connect(server.ws_url)
    try:
        # a stream whose media never starts keeps its snapshots pending until keyframe_timeout
        await publisher.publish("stuck", [PatternTrack(160, 120)], wait=False)
        results = await asyncio.gather(*(greedy.snapshot("stuck") for _ in range(5)), return_exceptions=True)
        infos = sorted(str(r.info) if isinstance(r, SnapshotFailed) else "ok" for r in results)
        assert infos.count("Failed by error: too many snapshots in flight") == 2, infos
        results = await asyncio.gather(*(greedy.snapshot("stuck") for _ in range(3)),
                                       *(other.snapshot("stuck") for _ in range(2)), return_exceptions=True)
        infos = [str(r.info) if isinstance(r, SnapshotFailed) else "ok" for r in results]
        assert infos.count("Failed by error: too many snapshots in flight on this server") == 1, infos
    finally:
        await publisher.close()
        await greedy.close()
        await other.close()


async def test_dtls_with_a_wrong_fingerprint_fails(start_server: Callable[..., Any]) -> None:
    """The offer's fingerprint does not match the publisher's certificate: FAILED, nothing left behind."""
    server: RunningServer = await start_server(connect_timeout=8.0)
    baseline = take_baseline()
    client = await WcsClient.connect(server.ws_url)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        lines = []
        for line in _offer_lines(pc.localDescription.sdp):
            if line.startswith("a=fingerprint:sha-256 "):
                line = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)
            lines.append(line)
        publication = await _publish_raw(client, "bad-fp", "bad-fingerprint", "\r\n".join(lines) + "\r\n", pc)
        with pytest.raises(PublishFailed) as failed:
            await client.wait_status(publication, "PUBLISHING", timeout=15)
        assert failed.value.status == "FAILED"
        assert failed.value.info in ("Failed by DTLS error", "Failed by ICE timeout")
    finally:
        await pc.close()
        await client.close()
    await assert_back_to_baseline(server, baseline)


async def test_offer_for_a_peer_that_never_connects_times_out(start_server: Callable[..., Any]) -> None:
    """ICE never completes (the offerer is gone): FAILED "Failed by ICE timeout" after connect_timeout."""
    server: RunningServer = await start_server(connect_timeout=2.0)
    baseline = take_baseline()
    client = await WcsClient.connect(server.ws_url)
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()  # nobody will answer the server's connectivity checks
    try:
        publication = await _publish_raw(client, "gone", "gone", sdp)
        with pytest.raises(PublishFailed) as failed:
            await client.wait_status(publication, "PUBLISHING", timeout=10)
        assert failed.value.info in ("Failed by ICE timeout", "Failed by ICE error")
    finally:
        await client.close()
    await assert_back_to_baseline(server, baseline)


async def test_answer_applies_to_the_offering_peer(server: RunningServer) -> None:
    """Sanity for the raw-publish helper used above: a well-formed raw offer publishes."""
    client = await WcsClient.connect(server.ws_url)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        publication = await _publish_raw(client, "raw", "raw", pc.localDescription.sdp, pc)
        await client.wait_status(publication, "PUBLISHING", timeout=15)
        assert isinstance(pc.remoteDescription, RTCSessionDescription)
    finally:
        await pc.close()
        await client.close()
