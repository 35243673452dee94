"""Publishing without access control still bounded per address, and camera names kept for camera pulls
(issue 22, item 7): each attack through a real socket."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import PublishFailed, WcsClient
from tests.conftest import RunningServer, png_image

pytestmark = pytest.mark.integration

SDP = {"Content-Type": "application/sdp"}


async def silent_offer() -> tuple[RTCPeerConnection, str]:
    """An offer whose peer will never connect (its answer is never set): a slot held until connect_timeout."""
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, str(pc.localDescription.sdp)


async def test_offers_that_never_connect_cannot_hold_every_slot_from_one_address(
        start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # Issue 22: with auth off, 4 WHIP offers that never connect held all `max_streams` slots.
    server: RunningServer = await start_server(max_streams=4, max_streams_per_address=2, connect_timeout=30.0,
                                               trusted_proxies=["127.0.0.1/32"])
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    peers: list[RTCPeerConnection] = []
    try:
        statuses = []
        for index in range(4):
            pc, offer = await silent_offer()
            peers.append(pc)
            async with http.post(f"{server.http_url}/whip/squat-{index}", data=offer,
                                 headers={**SDP, **attacker}) as answer:
                statuses.append((answer.status, (await answer.json())["reason"] if answer.status != 201 else ""))
        assert statuses == [(201, ""), (201, ""), (429, "client_busy"), (429, "client_busy")]
        # the same address over WebSocket counts in the same quota
        squatter = await WcsClient.connect(server.ws_url, headers=attacker)
        with pytest.raises(PublishFailed) as refused:
            await squatter.publish("squat-ws", [PatternTrack(160, 120)])
        assert refused.value.info == "Failed by error: too many streams from this address"
        await squatter.close()
        # another address still publishes and is pictured
        honest = await WcsClient.connect(server.ws_url, headers={"X-Forwarded-For": "203.0.113.5"})
        try:
            await honest.publish("honest", [PatternTrack(160, 120)])
            async with http.get(f"{server.http_url}/streams/honest/snapshot.png") as picture:
                assert picture.status == 200 and png_image(await picture.read()).size == (160, 120)
        finally:
            await honest.close()
    finally:
        for pc in peers:
            await pc.close()


@pytest.mark.parametrize("name", ["rtsp://127.0.0.1:554/cam", "RTSPS://camera.example/x", " rtsp://x/y"])
async def test_camera_url_names_are_refused_to_every_kind_of_publisher(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, name: str) -> None:
    # Issue 22: any publisher could publish under an rtsp:// name and so answer the pictures viewers ask of
    # that camera.
    server: RunningServer = await start_server()
    publisher = await WcsClient.connect(server.ws_url)
    try:
        with pytest.raises(PublishFailed) as refused:
            await publisher.publish(name, [PatternTrack(160, 120)])
        assert refused.value.info == "Restricted access: names of camera urls are the server's own pulls"
    finally:
        await publisher.close()
    pc, offer = await silent_offer()
    try:
        async with http.post(f"{server.http_url}/whip/{quote(name, safe='')}", data=offer, headers=SDP) as answer:
            assert answer.status == 403
            assert (await answer.json())["reason"] == "name_reserved"
    finally:
        await pc.close()
    async with http.get(f"{server.http_url}/streams") as listing:
        assert await listing.json() == []
