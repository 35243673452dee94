"""Faults of real publishers: silence, dead sockets, lossy networks, garbage media; nothing may leak."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from av import VideoFrame

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import Publication, PublishFailed, SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image
from tests.integration.baseline import assert_back_to_baseline, take_baseline

pytestmark = pytest.mark.integration


class StallingTrack(PatternTrack):
    """A pattern that stops producing frames (the encoder, hence RTP, goes silent) when told."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.stalled = asyncio.Event()
        self._never = asyncio.Event()

    async def recv(self) -> VideoFrame:
        if self.stalled.is_set():
            await self._never.wait()
        frame: VideoFrame = await super().recv()
        return frame


SendRtp = Callable[[bytes], Awaitable[None]]


def wrap_rtp(publication: Publication, wrapper: Callable[[SendRtp], SendRtp]) -> None:
    """Put `wrapper` between the publisher's RTP/RTCP output and its DTLS transport (before SRTP)."""
    assert publication.pc is not None
    for sender in publication.pc.getSenders():
        transport = sender.transport
        transport._send_rtp = wrapper(transport._send_rtp)


def rtp_payload_offset(data: bytes) -> int | None:
    """Offset of the RTP payload, or None for RTCP."""
    if 192 <= data[1] <= 223:
        return None
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2: offset + 4], "big")
    return offset


def vp8_descriptor_length(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 4.2)."""
    length = 1
    if payload[0] & 0x80:
        flags = payload[1]
        length = 2
        if flags & 0x80:
            length += 2 if payload[2] & 0x80 else 1
        if flags & 0x40:
            length += 1
        if flags & 0x30:
            length += 1
    return length


def corrupting(mode: str, rng: random.Random) -> Callable[[SendRtp], SendRtp]:
    """Spoil the VP8 frame data of every RTP packet (descriptors and RTP headers stay valid).

    garbage: all frame bytes random (no frame is a keyframe); corrupt: each frame keeps its
    10-byte keyframe header, the rest is random; truncated: each frame is its header and 4
    random bytes, so the decoder finds its first partition cut short.
    """

    def wrapper(send: SendRtp) -> SendRtp:
        async def send_spoiled(data: bytes) -> None:
            offset = rtp_payload_offset(data)
            if offset is None or offset >= len(data) - 2:
                await send(data)
                return
            payload = data[offset:]
            start = vp8_descriptor_length(payload)
            starts_frame = bool(payload[0] & 0x10)
            if mode != "garbage" and starts_frame:
                start += 10
            size = len(payload) - start
            if mode == "truncated":
                size = 4 if starts_frame else 0
            junk = bytes(rng.getrandbits(8) for _ in range(max(0, size)))
            await send(data[:offset] + payload[:start] + junk)

        return send_spoiled

    return wrapper


def lossy(rng: random.Random, drop: float, duplicate: float, reorder: float) -> Callable[[SendRtp], SendRtp]:
    """Drop, duplicate and swap packets (RTP and RTCP alike), as a bad network does."""

    def wrapper(send: SendRtp) -> SendRtp:
        held: list[bytes] = []

        async def send_lossy(data: bytes) -> None:
            roll = rng.random()
            if roll < drop:
                return
            if roll < drop + reorder and not held:
                held.append(data)  # goes out after the next packet
                return
            await send(data)
            if roll < drop + reorder + duplicate:
                await send(data)
            while held:
                await send(held.pop())

        return send_lossy

    return wrapper


async def test_silent_publisher_fails_by_rtp_activity(start_server: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(rtp_timeout=1.5)
    baseline = take_baseline()
    client = await WcsClient.connect(server.ws_url)
    try:
        track = StallingTrack(160, 120)
        publication = await client.publish("quiet", [track])
        await asyncio.sleep(2.0)  # flowing media is never taken for silence
        assert publication.status == "PUBLISHING"
        track.stalled.set()
        started = asyncio.get_running_loop().time()
        with pytest.raises(PublishFailed) as failed:
            await client.wait_status(publication, "UNPUBLISHED", timeout=6)
        assert (failed.value.status, failed.value.info) == ("FAILED", "Failed by RTP activity")
        assert 1.5 <= asyncio.get_running_loop().time() - started < 4.5
        assert server.node is not None and await server.node.registry.all() == []
        with pytest.raises(SnapshotFailed) as gone:
            await client.snapshot("quiet")
        assert gone.value.info == "Stream not found"
    finally:
        await client.close()
    await assert_back_to_baseline(server, baseline)


async def test_publisher_socket_dies(server: RunningServer) -> None:
    """The WebSocket goes without a close handshake and the peer connection is left behind."""
    baseline = take_baseline()
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("dies", [PatternTrack(160, 120)])
        await viewer.snapshot("dies")
        transport = publisher.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()  # TCP reset, no close frame
        assert server.node is not None
        async with asyncio.timeout(5):
            while True:  # the server notices the reset on its own; nothing to await but its registry
                if not await server.node.registry.all():
                    break
                await asyncio.sleep(0.05)
        with pytest.raises(SnapshotFailed) as failed:
            await viewer.snapshot("dies")
        assert failed.value.info == "Stream not found"
    finally:
        await publisher.close()
        await viewer.close()
    await assert_back_to_baseline(server, baseline)


async def test_snapshot_in_flight_when_its_stream_ends(start_server: Callable[..., Any]) -> None:
    """A snapshot waiting for a keyframe gets snapshotFailed as soon as the stream goes, not at its timeout."""
    server: RunningServer = await start_server(keyframe_timeout=10.0, max_frame_age_ms=50.0)
    baseline = take_baseline()
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        track = StallingTrack(160, 120)
        await publisher.publish("ending", [track])
        track.stalled.set()  # no new keyframe will come: the snapshot waits
        await asyncio.sleep(0.3)
        pending = asyncio.ensure_future(viewer.snapshot("ending", timeout=15))
        await asyncio.sleep(0.5)
        assert not pending.done()
        loop = asyncio.get_running_loop()
        ended_at = loop.time()
        await publisher.ws.close()
        with pytest.raises(SnapshotFailed) as failed:
            await pending
        assert failed.value.info == "Stream not found"
        assert loop.time() - ended_at < 2.0
    finally:
        await publisher.close()
        await viewer.close()
    await assert_back_to_baseline(server, baseline)


async def test_packet_loss_duplication_and_reordering(server: RunningServer) -> None:
    baseline = take_baseline()
    publisher = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        track = PatternTrack(320, 240)
        publication = await publisher.publish("lossy", [track])
        wrap_rtp(publication, lossy(random.Random(7), drop=0.05, duplicate=0.05, reorder=0.05))
        await asyncio.sleep(1.0)
        for _ in range(3):
            picture = await viewer.snapshot("lossy", timeout=10)
            image = png_image(picture.png)
            assert image.size == (320, 240)
            # recovery (NACK, PLI) may cost a few frames more than on a clean network
            assert 0 <= track.counter - read_counter(image) <= 45
            await asyncio.sleep(0.5)
        assert publication.status == "PUBLISHING"
    finally:
        await publisher.close()
        await viewer.close()
    await assert_back_to_baseline(server, baseline)


@pytest.mark.parametrize("mode", ["garbage", "corrupt", "truncated"])
async def test_garbage_media_is_answered_and_harms_nobody(start_server: Callable[..., Any], mode: str) -> None:
    """Random frames (no keyframe at all), keyframes with a junk body, keyframes the decoder rejects."""
    server: RunningServer = await start_server(keyframe_timeout=1.5)
    baseline = take_baseline()
    bad = await WcsClient.connect(server.ws_url)
    good = await WcsClient.connect(server.ws_url)
    viewer = await WcsClient.connect(server.ws_url)
    try:
        good_track = PatternTrack(160, 120)
        await good.publish("good", [good_track])
        bad_pc_publication = await bad.publish("garbage", [PatternTrack(160, 120)], codec="VP8", wait=False)
        wrap_rtp(bad_pc_publication, corrupting(mode, random.Random(3)))
        loop = asyncio.get_running_loop()
        for _ in range(3):
            started = loop.time()
            try:
                picture = await viewer.snapshot("garbage", timeout=8)
            except SnapshotFailed as exc:
                assert exc.info == "No decodable frame within timeout"
            else:
                assert mode == "corrupt", "only a junk body can still give a picture"
                # libvpx may make some picture of a corrupt keyframe; it must still be a well-formed PNG
                assert png_image(picture.png).size[0] > 0
            assert loop.time() - started < 5
        engine = server.node.engine if server.node else None
        assert engine is not None
        if mode == "truncated":
            assert engine.stats.decodes == 0 and engine.stats.failures >= 3  # every decode attempt failed
        picture = await viewer.snapshot("good")
        assert 0 <= good_track.counter - read_counter(png_image(picture.png)) <= 20
    finally:
        await bad.close()
        await good.close()
        await viewer.close()
    await assert_back_to_baseline(server, baseline)
