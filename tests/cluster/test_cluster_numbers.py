"""The numbers a cluster shows: pictures counted on both sides of a hop, and other nodes' streams listed with
their owner's figures, the same on every node (two in-process nodes on a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamsnap.cluster.wire import sign
from streamsnap.media.pattern import PatternTrack
from streamsnap.server.listeners import Server
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.cluster.conftest import CLUSTER_SECRET
from tests.cluster.test_cluster_attacks import cluster_node, picture_url, signed_get
from tests.harness.redis import Redis

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def picture_results(http: aiohttp.ClientSession, server: Server) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{server.port('http')}/metrics") as response:
        text = await response.text()
    return {sample.labels["result"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "streamsnap_snapshots_total"}


async def test_pictures_over_the_hop_are_counted_by_result_on_both_nodes(
        start_full_server: Callable[..., Any], redis_server: Redis) -> None:
    limits = {"image_max_width": 200, "image_max_height": 200}
    holder = await cluster_node(start_full_server, redis_server, "holder", **limits)
    asker = await cluster_node(start_full_server, redis_server, "asker", **limits)
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{holder.port('http')}/")
    viewer = await WcsClient.connect(f"ws://127.0.0.1:{asker.port('http')}/")
    try:
        await publisher.publish("cam-small", [PatternTrack(160, 120)])
        await publisher.publish("cam-big", [PatternTrack(320, 240)])  # over the cap: too large on every node
        async with aiohttp.ClientSession() as http:
            image_url = f"http://127.0.0.1:{asker.port('http')}/streams/{{}}/snapshot.png"
            for name, status in (("cam-small", 200), ("cam-big", 400), ("nowhere", 404)):
                async with http.get(image_url.format(name)) as response:
                    assert response.status == status, await response.text()
            with pytest.raises(SnapshotFailed):
                await viewer.snapshot("cam-big")
            # A hop for a claim that is no more (the name published again since): not found, and counted.
            stale = picture_url(holder, "cam-small", "0" * 24)
            assert await signed_get(http, stale, sign(CLUSTER_SECRET, "GET", stale.split(
                str(holder.port("cluster")), 1)[1])) == 404

            assert await picture_results(http, asker) == {"ok": 1, "too_large": 2, "stream_not_found": 1}
            assert await picture_results(http, holder) == {"ok": 1, "too_large": 2, "stream_not_found": 1}
    finally:
        await viewer.close()
        await publisher.close()


async def listing(http: aiohttp.ClientSession, server: Server) -> list[dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{server.port('http')}/streams") as response:
        assert response.status == 200
        listed: list[dict[str, Any]] = await response.json()
        return listed


async def test_every_node_lists_a_stream_with_its_holders_figures(
        start_full_server: Callable[..., Any], redis_server: Redis) -> None:
    holder = await cluster_node(start_full_server, redis_server, "holder")
    other = await cluster_node(start_full_server, redis_server, "other")
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{holder.port('http')}/")
    try:
        await publisher.publish("lobby", [PatternTrack(160, 120)])  # 30 frames a second
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(15):  # a heartbeat (a third of the TTL) after a second of frames
                while ((await listing(http, other))[0]["frames_received"] or 0) < 30:  # noqa: ASYNC110 -- another node
                    await asyncio.sleep(0.1)
            # Not null, not 0 as before: what the holder measured.
            [remote] = await listing(http, other)
            assert remote["node"] == "holder"
            assert remote["fps"] is not None and 15 <= remote["fps"] <= 45, remote
            assert (remote["width"], remote["height"], remote["codec"]) == (160, 120, "VP8")
            # The same answer from either node, whichever a client (or a shared port's kernel) picks:
            # two readings of the holder with no heartbeat between them frame a reading of the other node.
            for _ in range(20):
                before, elsewhere, after = await listing(http, holder), await listing(http, other), \
                    await listing(http, holder)
                if before == after:
                    assert elsewhere == before
                    break
            else:
                pytest.fail("a heartbeat between every pair of readings")
            async with http.post(f"http://127.0.0.1:{other.port('http')}/rest-api/stream/find_all") as response:
                [wcs] = await response.json()
                assert wcs["fps"] > 0 and wcs["width"] == 160
    finally:
        await publisher.close()
