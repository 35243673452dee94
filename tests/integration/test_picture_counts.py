"""Every picture asked is counted by result in `/metrics`, whatever the transport and wherever it was refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamsnap.access import TokenPolicy
from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.conftest import RunningServer

pytestmark = pytest.mark.integration

SECRET = "picture-counts-secret-" + "0123456789abcdef" * 3


async def picture_results(http: aiohttp.ClientSession, base: str, token: str) -> tuple[dict[str, float], float]:
    """`streamsnap_snapshots_total` by result, and the latency histogram's count."""
    async with http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    results: dict[str, float] = {}
    count = -1.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamsnap_snapshots_total":
                results[sample.labels["result"]] = sample.value
            elif sample.name == "streamsnap_snapshot_latency_seconds_count":
                count = sample.value
    return results, count


async def test_every_failed_picture_is_counted_by_reason_on_every_transport(
        start_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    # Pictures over 200x200 are refused: the 320x240 stream is "too large" however it is asked for.
    server: RunningServer = await start_server(auth_secret=SECRET, image_max_width=200, image_max_height=200)
    tokens = TokenPolicy(SECRET)
    viewer_token = tokens.issue(["snapshot"], streams=["cam-*"])
    bearer = {"Authorization": f"Bearer {viewer_token}"}
    publisher = await WcsClient.connect(server.ws_url, authToken=tokens.issue(["publish"]))
    viewer = await WcsClient.connect(server.ws_url, authToken=viewer_token)
    expected: Counter[str] = Counter()
    asked = [("cam-small", "ok"), ("cam-big", "too_large"), ("cam-missing", "stream_not_found"),
             ("office", "restricted")]
    try:
        await publisher.publish("cam-small", [PatternTrack(160, 120)])
        await publisher.publish("cam-big", [PatternTrack(320, 240)])

        # WebSocket
        for name, result in asked:
            if result == "ok":
                await viewer.snapshot(name)
            else:
                with pytest.raises(SnapshotFailed):
                    await viewer.snapshot(name)
            expected[result] += 1

        # WCS REST
        rest = f"{server.http_url}/rest-api/stream/snapshot"
        for name, result in asked:
            async with http.post(rest, json={"streamName": name}, headers=bearer) as response:
                assert (response.status == 200) == (result == "ok"), await response.text()
                if result != "ok":
                    assert (await response.json())["reason"] == result
            expected[result] += 1
        async with http.post(rest, json={"streamName": "cam-small"}) as response:  # no token
            assert response.status == 401
        expected["restricted"] += 1
        async with http.post(rest, json={"stream": "cam-small"}, headers=bearer) as response:  # bad body
            assert response.status == 400
        expected["bad_request"] += 1

        # The image url
        for name, result in asked:
            async with http.get(f"{server.http_url}/streams/{name}/snapshot.png", headers=bearer) as response:
                assert (response.status == 200) == (result == "ok"), await response.text()
            expected[result] += 1
        async with http.get(f"{server.http_url}/streams/cam-small/snapshot.png") as response:  # no token
            assert response.status == 401
        expected["restricted"] += 1
        for bad_size in ({"width": "0"}, {"width": "wide"}, {"width": "201"}):
            async with http.get(f"{server.http_url}/streams/cam-small/snapshot.jpg", params=bad_size,
                                headers=bearer) as response:
                assert response.status == 400
                assert (await response.json())["field"] == "width"
            expected["bad_request"] += 1

        # MJPEG: refused before the first part (a stream too large is refused picture by picture, later)
        mjpeg = f"{server.http_url}/streams/{{}}/stream.mjpeg"
        for name, result, status in (("cam-missing", "stream_not_found", 404), ("office", "restricted", 403)):
            async with http.get(mjpeg.format(name), headers=bearer) as response:
                assert response.status == status
            expected[result] += 1
        async with http.get(mjpeg.format("cam-small")) as response:  # no token
            assert response.status == 401
        expected["restricted"] += 1
        async with http.get(mjpeg.format("cam-small"), params={"height": "0"}, headers=bearer) as response:
            assert response.status == 400
        expected["bad_request"] += 1

        results, answered = await picture_results(http, server.http_url, tokens.issue(["metrics"]))
    finally:
        await viewer.close()
        await publisher.close()

    assert results == dict(expected)
    assert answered == sum(expected.values())  # the latency histogram counts the same answers
