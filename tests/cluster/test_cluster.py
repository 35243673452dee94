"""Several nodes, one namespace: real nodes as processes, a real redis-server, real publishers."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import PublishFailed, SnapshotFailed, WcsClient
from tests import harness
from tests.cluster.conftest import TTL
from tests.conftest import MAX_LAG_FRAMES, TEST_LISTEN_TIMEOUT, png_image
from tests.harness import Node, Redis, free_port, start_redis_cluster, stop, wait_listening

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


async def streams_on(http: aiohttp.ClientSession, node: Node) -> list[dict[str, Any]]:
    async with http.get(f"{node.http_url}/streams") as response:
        listed: list[dict[str, Any]] = await response.json()
        return listed


async def wait_listed(http: aiohttp.ClientSession, node: Node, name: str, present: bool = True,
                      timeout: float = 15.0) -> float:
    """Wait until `node` lists `name` (or no longer does); return the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while (name in {s["name"] for s in await streams_on(http, node)}) != present:  # noqa: ASYNC110 -- another process
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def metric(http: aiohttp.ClientSession, node: Node, name: str) -> float:
    async with http.get(f"{node.http_url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def assert_fresh(track: PatternTrack, png: bytes) -> None:
    assert 0 <= track.counter - read_counter(png_image(png)) <= MAX_LAG_FRAMES


async def assert_pictures_everywhere(http: aiohttp.ClientSession, nodes: list[Node], name: str,
                                     track: PatternTrack) -> None:
    """A true picture of `name` from every node, over WebSocket, REST and the image url."""
    for node in nodes:
        viewer = await WcsClient.connect(node.ws_url)
        try:
            assert_fresh(track, (await viewer.snapshot(name)).png)
        finally:
            await viewer.close()
        async with http.post(f"{node.http_url}/rest-api/stream/snapshot", json={"streamName": name}) as response:
            assert response.status == 200, await response.text()
            assert_fresh(track, base64.b64decode((await response.json())["data"]))
        async with http.get(f"{node.http_url}/streams/{name}/snapshot.png") as response:
            assert response.status == 200, await response.text()
            assert_fresh(track, await response.read())


async def test_publish_on_one_node_pictures_from_every_node(redis_server: Redis, start_node: Callable[..., Node],
                                                            http: aiohttp.ClientSession) -> None:
    a, b, c = (start_node(name, redis_server.url) for name in ("a", "b", "c"))
    publisher = await WcsClient.connect(a.ws_url)
    try:
        track = PatternTrack(320, 240)
        await publisher.publish("lobby", [track])
        await wait_listed(http, c, "lobby")
        listed = {s["name"]: s for s in await streams_on(http, c)}
        assert listed["lobby"]["node"] == "a"
        async with http.post(f"{b.http_url}/rest-api/stream/find_all") as response:
            assert [(s["name"], s["nodeId"]) for s in await response.json()] == [("lobby", "a")]
        await assert_pictures_everywhere(http, [b, c, a], "lobby", track)
        assert await metric(http, b, 'streamsnap_cluster_remote_pictures_total{result="ok"}') >= 3
        assert await metric(http, b, "streamsnap_cluster_redis_up") == 1
    finally:
        await publisher.close()


async def test_a_name_is_unique_across_nodes_and_terminate_works_from_any(
        redis_server: Redis, start_node: Callable[..., Node], http: aiohttp.ClientSession) -> None:
    a, b = start_node("a", redis_server.url), start_node("b", redis_server.url)
    first, second = await WcsClient.connect(a.ws_url), await WcsClient.connect(b.ws_url)
    try:
        publication = await first.publish("cam", [PatternTrack(160, 120)])
        with pytest.raises(PublishFailed) as refused:
            await second.publish("cam", [PatternTrack(160, 120)])
        assert refused.value.info == "Stream name is already in use"
        # REST terminate on b ends a's stream: its publisher is told
        async with http.post(f"{b.http_url}/rest-api/stream/terminate", json={"name": "cam"}) as response:
            assert response.status == 200, await response.text()
        status = await first.wait_status(publication, "UNPUBLISHED", timeout=10)
        assert status["info"] == "Stopped by rest /terminate"
        await wait_listed(http, b, "cam", present=False)
        await second.publish("cam", [PatternTrack(160, 120)])  # the name is free again, on any node
    finally:
        await first.close()
        await second.close()


async def test_a_killed_nodes_streams_vanish_within_the_ttl(redis_server: Redis, start_node: Callable[..., Node],
                                                           http: aiohttp.ClientSession) -> None:
    a, b = start_node("a", redis_server.url), start_node("b", redis_server.url)
    publisher = await WcsClient.connect(a.ws_url)
    viewer = await WcsClient.connect(b.ws_url)
    try:
        await publisher.publish("doomed", [PatternTrack(160, 120)])
        await wait_listed(http, b, "doomed")
        stop(a.proc, signal.SIGKILL)
        vanished = await wait_listed(http, b, "doomed", present=False, timeout=TTL + 5)
        assert vanished <= TTL + 1.0, vanished
        with pytest.raises(SnapshotFailed) as failed:
            await viewer.snapshot("doomed")
        assert failed.value.info == "Stream not found"
    finally:
        await publisher.close()
        await viewer.close()


async def test_the_cluster_recovers_when_redis_restarts(redis_server: Redis, start_node: Callable[..., Node],
                                                       http: aiohttp.ClientSession) -> None:
    a, b = start_node("a", redis_server.url), start_node("b", redis_server.url)
    publisher = await WcsClient.connect(a.ws_url)
    try:
        track = PatternTrack(320, 240)
        await publisher.publish("steady", [track])
        await wait_listed(http, b, "steady")
        redis_server.kill()
        # without Redis: a keeps serving its own stream; b cannot know and says why
        async with http.get(f"{a.http_url}/streams/steady/snapshot.png") as response:
            assert response.status == 200
            assert_fresh(track, await response.read())
        async with http.get(f"{b.http_url}/streams/steady/snapshot.png") as response:
            body = await response.json()
            assert (response.status, body["reason"]) == (502, "unreachable"), body
        async with asyncio.timeout(10):
            while True:  # the next failed heartbeat marks the node degraded
                async with http.get(f"{a.http_url}/readyz") as response:
                    ready = await response.json()
                if ready["status"] == "degraded":
                    break
                await asyncio.sleep(0.1)
        assert response.status == 200 and ready["cluster"]["redis"] is False
        async with http.get(f"{a.http_url}/healthz") as response:
            assert response.status == 200  # liveness never depends on Redis
        redis_server.start()  # empty: every record is gone until the nodes write theirs again
        await wait_listed(http, b, "steady", timeout=TTL * 3 + 5)
        await assert_pictures_everywhere(http, [b], "steady", track)
        async with http.get(f"{a.http_url}/readyz") as response:
            assert (await response.json())["status"] == "ready"
    finally:
        await publisher.close()


async def test_fifty_concurrent_cross_node_requests_make_one_decode(
        redis_server: Redis, start_node: Callable[..., Node], http: aiohttp.ClientSession) -> None:
    a, b = start_node("a", redis_server.url), start_node("b", redis_server.url)
    publisher = await WcsClient.connect(a.ws_url)
    try:
        track = PatternTrack(640, 480)
        await publisher.publish("popular", [track])
        await wait_listed(http, b, "popular")
        decodes = await metric(http, a, "streamsnap_decodes_total")

        async def fetch() -> bytes:
            async with http.get(f"{b.http_url}/streams/popular/snapshot.png") as response:
                assert response.status == 200
                return await response.read()

        pictures = await asyncio.gather(*(fetch() for _ in range(50)))
        assert await metric(http, a, "streamsnap_decodes_total") - decodes == 1
        assert len(set(pictures)) == 1
        assert_fresh(track, pictures[0])
    finally:
        await publisher.close()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Any:
    """Three Redis Cluster masters on loopback, joined with redis-cli."""
    servers = start_redis_cluster(tmp_path, 3, start_timeout=TEST_LISTEN_TIMEOUT)
    yield servers
    for server in servers:
        server.kill()


async def test_on_a_redis_cluster(redis_cluster: list[Redis], start_node: Callable[..., Node],
                                  http: aiohttp.ClientSession) -> None:
    a = start_node("a", redis_cluster[0].url)
    b = start_node("b", redis_cluster[2].url)
    first, second = await WcsClient.connect(a.ws_url), await WcsClient.connect(b.ws_url)
    try:
        track = PatternTrack(320, 240)
        await first.publish("clustered", [track])
        with pytest.raises(PublishFailed) as refused:
            await second.publish("clustered", [PatternTrack(160, 120)])
        assert refused.value.info == "Stream name is already in use"
        await wait_listed(http, b, "clustered")
        await assert_pictures_everywhere(http, [b], "clustered", track)
    finally:
        await first.close()
        await second.close()


@pytest.fixture
def two_workers(redis_server: Redis) -> Any:
    """`streamsnap serve --workers 2` on a free port; yields the port."""
    node = harness.start_node("--ice-address", "127.0.0.1", "--redis", redis_server.url, "--workers", "2",
                              "--node-id", "box", env={"STREAMSNAP_CLUSTER_TTL": str(TTL)}, timeout=TEST_LISTEN_TIMEOUT)
    try:
        yield node.port
    finally:
        stop(node.proc)


async def test_workers_share_the_port_and_route_pictures_between_them(two_workers: int,
                                                                      http: aiohttp.ClientSession) -> None:
    port = two_workers
    publishers: list[WcsClient] = []
    try:
        url = f"ws://127.0.0.1:{port}/"
        tracks = {}
        for index in range(10):  # the kernel spreads new connections over the two workers
            publisher = await WcsClient.connect(url)
            publishers.append(publisher)
            tracks[f"w{index}"] = track = PatternTrack(160, 120)
            await publisher.publish(f"w{index}", [track])
        async with http.get(f"http://127.0.0.1:{port}/streams") as response:
            listed = await response.json()
        assert {s["node"] for s in listed} == {"box-1", "box-2"}, listed
        for name, track in tracks.items():  # each over a new connection: about half are another worker's
            async with http.get(f"http://127.0.0.1:{port}/streams/{name}/snapshot.png",
                                headers={"Connection": "close"}) as response:
                assert response.status == 200, await response.text()
                assert_fresh(track, await response.read())
    finally:
        for publisher in publishers:
            await publisher.close()


async def test_names_claimed_on_two_nodes_while_redis_was_away_keep_the_earlier(
        redis_server: Redis, start_node: Callable[..., Node], http: aiohttp.ClientSession) -> None:
    a, b = start_node("a", redis_server.url), start_node("b", redis_server.url)
    first, second = await WcsClient.connect(a.ws_url), await WcsClient.connect(b.ws_url)
    try:
        redis_server.kill()
        # each node alone: both accept the same name (the earlier on a)
        earlier = await first.publish("twin", [PatternTrack(160, 120)])
        later = await second.publish("twin", [PatternTrack(160, 120)])
        redis_server.start()
        status = await second.wait_status(later, "FAILED", timeout=TTL * 3 + 10)
        assert status["info"] == "Stream name is already in use"
        await wait_listed(http, b, "twin")
        listed = {s["name"]: s["node"] for s in await streams_on(http, b)}
        assert listed == {"twin": "a"}
        assert earlier.status == "PUBLISHING"
        assert await metric(http, b, "streamsnap_cluster_conflicts_total") == 1
    finally:
        await first.close()
        await second.close()


ROOT = Path(__file__).resolve().parents[2]


def start_make_cluster(output: Path) -> tuple[subprocess.Popen[str], int]:
    """`make cluster` on free ports, once all three nodes listen; (process, first port)."""
    port, redis_port = free_port(), free_port()
    while redis_port in (port, port + 1, port + 2):
        redis_port = free_port()
    with output.open("w") as log:
        proc = subprocess.Popen(["make", "cluster"], cwd=ROOT, env=os.environ | {
            "PORT": str(port), "REDIS_PORT": str(redis_port)}, stdout=log, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
    try:
        for offset in range(3):
            wait_listening(port + offset, proc, timeout=60)
    except RuntimeError:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    return proc, port


@pytest.fixture
def make_cluster(tmp_path: Path) -> Any:
    """`make cluster`, as the README shows it; yields (process, first port).

    The free ports are only free when picked: when another process takes one first, the script
    stops (a node could not listen) and it is started again on other ports.
    """
    for attempt in range(3):
        output = tmp_path / f"make-cluster-{attempt}.log"
        try:
            proc, port = start_make_cluster(output)
            break
        except RuntimeError as exc:
            failure = f"{exc}\n{output.read_text()}"
    else:
        raise RuntimeError(f"make cluster did not start: {failure}")
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def test_make_cluster_runs_three_nodes_and_ctrl_c_stops_them(make_cluster: Any,
                                                                   http: aiohttp.ClientSession) -> None:
    proc, port = make_cluster
    nodes = [Node(f"node{i + 1}", port + i, proc) for i in range(3)]
    publisher = await WcsClient.connect(nodes[0].ws_url)
    try:
        track = PatternTrack(160, 120)
        await publisher.publish("made", [track])
        await wait_listed(http, nodes[2], "made")
        await assert_pictures_everywhere(http, [nodes[2]], "made", track)
    finally:
        await publisher.close()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert await asyncio.to_thread(proc.wait, 20) is not None
    for node in nodes:  # every node and Redis are gone with it
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", node.port), timeout=0.5).close()
