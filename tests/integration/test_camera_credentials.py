"""Camera credentials in any encoding and in the query never leave for a name, a listing, a label or a log line
(issue 22, item 7): a real camera pulled, real requests, the server's own log records read."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import yarl

from tests.conftest import RunningServer, png_image
from tests.harness import RtspCamera
from tests.integration.test_rtsp import GREEN, cameras  # noqa: F401 -- the fixture

pytestmark = pytest.mark.integration

PASSWORD = "pw-Zq81"


def raw_url(server: RunningServer, path: str) -> yarl.URL:
    return yarl.URL(f"{server.http_url}{path}", encoded=True)


async def test_query_credentials_stay_with_the_camera(start_server: Callable[..., Any],
                                                      cameras: Callable[..., Awaitable[RtspCamera]],  # noqa: F811
                                                      http: aiohttp.ClientSession,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    camera = await cameras(GREEN)
    server: RunningServer = await start_server()
    # Many cameras take their credentials in the query: it goes to the camera, and nowhere else.
    name = f"{camera.public_url}?user=admin&password={PASSWORD}&channel=1"
    async with http.get(raw_url(server, f"/streams/{urllib.parse.quote(name, safe='')}/snapshot.png")) as picture:
        assert picture.status == 200, await picture.text()
        assert png_image(await picture.read()).size == (320, 240)
    async with http.get(f"{server.http_url}/streams") as response:
        listed = await response.json()
    assert [stream["name"] for stream in listed] == [f"{camera.public_url}?channel=1"]
    async with http.get(f"{server.http_url}/metrics") as response:
        metrics = await response.text()
    assert f"{camera.public_url}?channel=1" in metrics and PASSWORD not in metrics
    async with http.post(f"{server.http_url}/rest-api/rtsp/find_all", json={}) as response:
        pulls = await response.text()
    assert PASSWORD not in pulls and "admin" not in pulls
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("encoded", [
    "rtsp:%2F%2Fadmin:{pw}@127.0.0.1:9/x",  # mixed: the slashes encoded, the rest not
    "rtsp%253A%252F%252Fadmin%253A{pw}%2540127.0.0.1%253A9%252Fx",  # encoded twice
    "RTSP%3A%2F%2Fadmin%3A{pw}%40127.0.0.1%3A9%2Fx",
    "rtsp%3A%2F%2F127.0.0.1%3A9%2Fx%3Fuser%3Dadmin%26password%3D{pw}",  # in the camera url's query
])
async def test_camera_passwords_in_any_encoding_stay_out_of_the_access_log(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
        encoded: str) -> None:
    caplog.set_level(logging.INFO)
    server: RunningServer = await start_server(rtsp_allowed_hosts=[])  # refused at once: only the log line is seen
    async with http.get(raw_url(server, f"/streams/{encoded.format(pw=PASSWORD)}/snapshot.png")) as answer:
        await answer.read()
    access = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert (access and "/snapshot.png" in access[-1]) or "?" in urllib.parse.unquote(encoded)
    assert PASSWORD not in caplog.text
