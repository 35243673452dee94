"""The cluster port against a hostile neighbour (issue 22, items 6 and 8): each attack through a real socket."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import psutil
import pytest

from streamsnap.cluster.wire import CLOCK_ALLOWANCE, SIGNATURE_HEADER, sign
from streamsnap.config import Settings
from streamsnap.media.pattern import PatternTrack
from streamsnap.server.listeners import Server, cluster_bind_host
from streamsnap.wcsclient import WcsClient
from tests.cluster.conftest import CLUSTER_SECRET, TTL
from tests.conftest import png_image
from tests.harness import closed_by_peer
from tests.harness.redis import Redis

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def cluster_node(start_full_server: Callable[..., Any], redis: Redis, name: str, **overrides: Any) -> Server:
    server: Server = await start_full_server(redis_url=redis.url, cluster_secret=CLUSTER_SECRET, cluster_ttl=TTL,
                                             node_name=name, **overrides)
    return server


def picture_url(server: Server, name: str, lease: str) -> str:
    return f"http://127.0.0.1:{server.port('cluster')}/cluster/streams/{quote(name, safe='')}/picture?lease={lease}"


async def signed_get(http: aiohttp.ClientSession, url: str, header: str) -> int:
    async with http.get(aiohttp.client.URL(url, encoded=True), headers={SIGNATURE_HEADER: header}) as response:
        await response.read()
        return response.status

async def test_idle_connections_to_the_cluster_port_are_capped_and_timed_out(
        start_full_server: Callable[..., Any], redis_server: Redis) -> None:
    server = await cluster_node(start_full_server, redis_server, "guarded", cluster_max_connections_per_ip=40,
                                http_header_timeout=1.0)
    port = server.port("cluster")
    # The attack: many idle connections that send nothing (1100 of them exhausted the node's descriptors).
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]

    over_cap = await asyncio.gather(*(closed_by_peer(reader, 0.5) for reader, _ in held))
    assert sum(over_cap) == 300 - 40  # over the cap: closed on arrival
    assert server.cluster_guard is not None and server.cluster_guard.refused == 260
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port('http')}/healthz") as health:
        assert health.status == 200  # the public port is not starved meanwhile
    let_in = [reader for (reader, _), refused in zip(held, over_cap, strict=True) if not refused]
    assert all(await asyncio.gather(*(closed_by_peer(reader, 3.0) for reader in let_in)))  # the header deadline
    assert server.cluster_guard.timed_out == 40
    assert server.cluster_guard.open == {}
    for _, writer in held:
        writer.close()


async def test_the_cluster_listener_does_not_bind_every_interface_by_default(
        start_full_server: Callable[..., Any], redis_server: Redis) -> None:
    assert cluster_bind_host(Settings().replace(host="127.0.0.1")) == "127.0.0.1"
    private = cluster_bind_host(Settings())  # http.host 0.0.0.0: the private address, not every interface
    assert private not in ("0.0.0.0", "::", "")
    assert cluster_bind_host(Settings().replace(cluster_host="0.0.0.0")) == "0.0.0.0"  # only when asked
    server = await cluster_node(start_full_server, redis_server, "bound")
    listening = {conn.laddr for conn in psutil.Process(os.getpid()).net_connections(kind="tcp")
                 if conn.status == psutil.CONN_LISTEN and conn.laddr.port == server.port("cluster")}
    assert {address.ip for address in listening} == {"127.0.0.1"}


async def test_a_signed_request_is_taken_once_and_not_from_the_future(
        start_full_server: Callable[..., Any], redis_server: Redis) -> None:
    server = await cluster_node(start_full_server, redis_server, "replay")
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{server.port('http')}/")
    try:
        await publisher.publish("cam", [PatternTrack(160, 120)])
        record = await server.node.registry.lookup("cam")
        assert record is not None
        url = picture_url(server, "cam", record.lease)
        path = url.split(str(server.port("cluster")), 1)[1]
        header = sign(CLUSTER_SECRET, "GET", path)
        async with aiohttp.ClientSession() as http:
            assert await signed_get(http, url, header) == 200
            assert await signed_get(http, url, header) == 401  # the same signature again: a replay
            ahead = sign(CLUSTER_SECRET, "GET", path, when=time.time() + 29)
            assert await signed_get(http, url, ahead) == 401
            near = sign(CLUSTER_SECRET, "GET", path, when=time.time() + CLOCK_ALLOWANCE - 1)
            assert await signed_get(http, url, near) == 200  # a clock a little ahead is allowed
            old = sign(CLUSTER_SECRET, "GET", path, when=time.time() - 31)
            assert await signed_get(http, url, old) == 401
    finally:
        await publisher.close()


@pytest.mark.parametrize("name", ["cam;1", "a b", "caf\u00e9/%41?x=1#y", "semi;colon;and,comma"])
async def test_names_of_any_characters_cross_the_hop(start_full_server: Callable[..., Any], redis_server: Redis,
                                                     name: str) -> None:
    holder = await cluster_node(start_full_server, redis_server, "holder")
    other = await cluster_node(start_full_server, redis_server, "other")
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{holder.port('http')}/")
    try:
        await publisher.publish(name, [PatternTrack(160, 120)])
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{other.port('http')}/streams/{quote(name, safe='')}/snapshot.png"
            async with http.get(aiohttp.client.URL(url, encoded=True)) as response:
                assert response.status == 200, await response.text()  # was 401 -> 502 for `;`
                assert png_image(await response.read()).size == (160, 120)
    finally:
        await publisher.close()
