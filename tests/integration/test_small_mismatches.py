"""What the README says and what the server does agree (issue 24, item 3): each mismatch a user met, with a real
server."""

from __future__ import annotations

import aiohttp
import pytest

from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import WcsClient
from tests.conftest import RunningServer

pytestmark = pytest.mark.integration


async def test_find_all_refuses_a_body_not_sent_as_json(server: RunningServer, http: aiohttp.ClientSession) -> None:
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("listed", [PatternTrack(160, 120)])
        url = f"{server.http_url}/rest-api/stream/find_all"
        async with http.post(url, data="{}", headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415  # a page of another site may send text/plain without asking anyone
            assert (await response.json())["error"] == "the body must be sent as application/json"
        async with http.post(url, data={"name": "listed"}) as response:  # a form
            assert response.status == 415
        async with http.post(url, json={"name": "listed"}) as response:  # a filter belongs to find
            assert response.status == 400
            assert (await response.json())["field"] == "name"
        for method, body in (("POST", None), ("POST", {}), ("GET", None)):
            async with http.request(method, url, json=body) as response:
                assert response.status == 200, await response.text()
                assert [stream["name"] for stream in await response.json()] == ["listed"]
    finally:
        await publisher.close()
