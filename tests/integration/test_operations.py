"""Operations with a real server: metrics, health probes, structured logs, TLS, the second REST port."""

from __future__ import annotations

import io
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from streamsnap.logs import JsonFormatter
from streamsnap.media.pattern import PatternTrack, read_counter
from streamsnap.wcsclient import WcsClient
from tests.conftest import MAX_LAG_FRAMES, RunningServer
from tests.harness import free_port

pytestmark = pytest.mark.integration



async def scrape(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_move_after_a_snapshot(server: RunningServer, http: aiohttp.ClientSession) -> None:
    before = await scrape(http, server.http_url)
    assert before[("streamsnap_sessions", ())] == 0
    assert before[("streamsnap_streams", ())] == 0
    assert ("streamsnap_snapshots_total", (("result", "ok"),)) not in before
    assert before[("streamsnap_snapshot_latency_seconds_count", ())] == 0

    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("metered", [PatternTrack(320, 240)])
        async with http.get(f"{server.http_url}/streams/metered/snapshot.jpg",
                            params={"max_age_ms": "0"}) as response:  # forces a PLI
            assert response.status == 200
        after = await scrape(http, server.http_url)
    finally:
        await publisher.close()

    assert after[("streamsnap_sessions", ())] == 1
    assert after[("streamsnap_streams", ())] == 1
    assert after[("streamsnap_snapshots_total", (("result", "ok"),))] == 1
    assert after[("streamsnap_snapshot_latency_seconds_count", ())] == 1
    assert 0 < after[("streamsnap_snapshot_latency_seconds_sum", ())] < 5
    assert after[("streamsnap_snapshot_latency_seconds_bucket", (("le", "+Inf"),))] == 1
    assert after[("streamsnap_decode_seconds_total", ())] > 0
    assert after[("streamsnap_encode_seconds_total", ())] > 0
    assert after[("streamsnap_encodes_total", ())] == 1
    assert after[("streamsnap_plis_sent_total", ())] >= 1
    assert after[("streamsnap_stream_frames_received_total", (("stream", "metered"),))] > 0


async def test_failed_snapshots_are_counted_by_result(start_server: Callable[..., Any],
                                                      http: aiohttp.ClientSession) -> None:
    server = await start_server(keyframe_timeout=0.01)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("late", [PatternTrack(320, 240)])
        async with http.get(f"{server.http_url}/streams/late/snapshot.png", params={"max_age_ms": "0"}) as response:
            assert response.status == 504
        after = await scrape(http, server.http_url)
    finally:
        await publisher.close()
    assert after[("streamsnap_snapshots_total", (("result", "no_decodable_frame"),))] == 1


async def test_health_and_readiness(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.http_url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    async with http.get(f"{server.http_url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ready", "sessions": 0, "streams": 0}
    assert server.node is not None
    server.node.state.ready = False  # what shutdown does first
    async with http.get(f"{server.http_url}/readyz") as response:
        assert response.status == 503


async def test_json_logs_carry_session_and_stream(server: RunningServer) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.INFO)
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger("streamsnap")
    target.addHandler(handler)
    previous = target.level
    target.setLevel(logging.INFO)
    try:
        publisher = await WcsClient.connect(server.ws_url)
        try:
            await publisher.publish("logged", [PatternTrack(320, 240)])
        finally:
            await publisher.close()
    finally:
        target.removeHandler(handler)
        target.setLevel(previous)
    entries = [json.loads(line) for line in lines]
    publishing = [e for e in entries if e["message"] == "stream logged publishing"]
    assert len(publishing) == 1
    assert publishing[0]["stream"] == "logged"
    assert len(publishing[0]["session"]) == 16
    assert publishing[0]["level"] == "info"
    assert all("session" in e for e in entries)


async def test_tls_with_a_self_signed_certificate(start_full_server: Callable[..., Any],
                                                  http: aiohttp.ClientSession) -> None:
    server = await start_full_server(tls_self_signed=True, tls_port=0)
    assert server.certificate is not None
    trusting = ssl.create_default_context(cadata=server.certificate.cert_pem.decode())
    https = f"https://127.0.0.1:{server.port('https')}"

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with http.get(f"{https}/healthz"):
            pass
    async with http.get(f"{https}/healthz", ssl=trusting) as response:
        assert response.status == 200
    async with http.get(f"http://127.0.0.1:{server.port('http')}/healthz") as response:
        assert response.status == 200  # plain http stays beside https

    track = PatternTrack(320, 240)
    publisher = await WcsClient.connect(f"wss://127.0.0.1:{server.port('https')}/abcdefgh", ssl_context=trusting)
    try:
        await publisher.publish("secure", [track])
        async with http.get(f"{https}/streams/secure/snapshot.png", ssl=trusting) as response:
            assert response.status == 200
            published_then = track.counter
            image = Image.open(io.BytesIO(await response.read()))
        assert image.size == (320, 240)
        assert 0 <= published_then - read_counter(image) <= MAX_LAG_FRAMES
    finally:
        await publisher.close()


async def test_rest_on_its_own_port(start_full_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server = await start_full_server(rest_port=free_port())
    rest = f"http://127.0.0.1:{server.port('rest')}"
    async with http.post(f"{rest}/rest-api/stream/find_all") as response:
        assert response.status == 404
    async with http.get(f"{rest}/healthz") as response:
        assert response.status == 404  # only /rest-api/ there
    publisher = await WcsClient.connect(f"ws://127.0.0.1:{server.port('http')}/x")
    try:
        await publisher.publish("two-ports", [PatternTrack(320, 240)])
        async with http.post(f"{rest}/rest-api/stream/find_all") as response:
            assert response.status == 200
            assert [s["name"] for s in await response.json()] == ["two-ports"]
    finally:
        await publisher.close()


async def test_public_ip_is_announced_in_place_of_host_candidates(start_server: Callable[..., Any]) -> None:
    # 127.0.0.2 stands for the NAT's public side; the server still binds 127.0.0.1.
    server = await start_server(public_ip="127.0.0.2")
    publisher = await WcsClient.connect(server.ws_url)
    try:
        # Media flows all the same: the server's own checks reach the publisher, which learns the real address.
        publication = await publisher.publish("natted", [PatternTrack(320, 240)])
        assert publication.pc is not None
        answer = publication.pc.remoteDescription.sdp
        candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
        assert candidates
        assert all(line.split(" ")[4] == "127.0.0.2" for line in candidates if " typ host" in line)
        assert "127.0.0.1" not in answer
    finally:
        await publisher.close()
