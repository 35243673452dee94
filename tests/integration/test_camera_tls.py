"""rtsps:// cameras (issue 24): GStreamer's RTSP server over TLS, pulled with its certificate verified against a
configured authority file, refused with its own reason when the certificate is not trusted (unknown authority,
another name), and pulled anyway when the camera opts out; never downgraded to plain RTSP or to UDP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamsnap.config import Camera
from streamsnap.server.node import ServerError
from streamsnap.server.tls import self_signed_certificate
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.conftest import RunningServer, png_image
from tests.harness import RtspCamera
from tests.integration.test_rtsp import (  # noqa: F401 -- cameras: the fixture
    BLUE,
    GREEN,
    RED,
    assert_colour,
    cameras,
    eventually,
    image_url,
    post,
    rest_picture,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

UNTRUSTED = "camera certificate not trusted"


def certificate(directory: Path, label: str, names: list[str], addresses: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for `names`/`addresses` and its key, as PEM files."""
    made = self_signed_certificate(names, addresses)
    cert, key = directory / f"{label}.pem", directory / f"{label}.key"
    cert.write_bytes(made.cert_pem)
    key.write_bytes(made.key_pem)
    return cert, key


@pytest.fixture
async def tls_cameras(cameras: Callable[..., Awaitable[RtspCamera]]) -> Callable[..., Awaitable[RtspCamera]]:  # noqa: F811
    """Start rtsps:// cameras: `cameras` (killed at teardown) with a certificate and key of their own."""

    async def start(colour: int, tls: tuple[Path, Path], **options: Any) -> RtspCamera:
        return await cameras(colour, tls=tls, **options)

    return start


async def test_a_camera_whose_authority_is_configured_is_pictured_every_way(
        start_server: Callable[..., Any], tls_cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    tls = certificate(tmp_path, "camera", ["localhost"], ["127.0.0.1"])
    camera = await tls_cameras(GREEN, tls, user="viewer", password="pw-7781")
    server: RunningServer = await start_server(rtsp_ca_file=str(tls[0]))
    assert camera.url.startswith("rtsps://")

    client = await WcsClient.connect(server.ws_url)
    try:
        picture = await client.snapshot(camera.url, timeout=20)  # on demand: the name is the rtsps:// url
        assert png_image(picture.png).size == (320, 240)
        assert_colour(png_image(picture.png), GREEN)
    finally:
        await client.close()
    async with http.get(image_url(server, camera.url)) as response:
        assert response.status == 200, await response.text()
        assert_colour(png_image(await response.read()), GREEN)

    status, pull = await post(http, f"{server.http_url}/rest-api/rtsp/startup",
                              {"uri": camera.url, "toStream": "gate"})
    assert status == 200, pull
    assert (pull["transport"], pull["tlsVerify"], pull["uri"]) == ("tcp", True, camera.public_url)
    status, body = await rest_picture(http, server, "gate")
    assert status == 200, body


async def test_an_untrusted_certificate_is_refused_with_its_own_reason(
        start_server: Callable[..., Any], tls_cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    own = certificate(tmp_path, "own", ["localhost"], ["127.0.0.1"])
    elsewhere = certificate(tmp_path, "elsewhere", ["camera.example"], [])
    unknown = await tls_cameras(GREEN, own)  # its authority is not the system's
    misnamed = await tls_cameras(RED, elsewhere)  # trusted, but for another name
    system: RunningServer = await start_server()
    configured: RunningServer = await start_server(rtsp_ca_file=str(elsewhere[0]))
    for server, camera in ((system, unknown), (configured, misnamed)):
        status, body = await rest_picture(http, server, camera.url)
        assert (status, body["reason"]) == (502, "source_untrusted"), body
        assert body["error"].endswith(UNTRUSTED), body
        async with http.get(image_url(server, camera.url)) as response:
            assert response.status == 502
            assert (await response.json())["reason"] == "source_untrusted"
        client = await WcsClient.connect(server.ws_url)
        try:
            with pytest.raises(SnapshotFailed) as failed:
                await client.snapshot(camera.url, timeout=20)
            assert failed.value.args[0].endswith(UNTRUSTED), failed.value.args
        finally:
            await client.close()
        status, body = await post(http, f"{server.http_url}/rest-api/rtsp/startup", {"uri": camera.url})
        assert (status, body["reason"]) == (502, "source_untrusted"), body
        assert server.node.cameras.pulls() == []  # type: ignore[union-attr]
    # The same camera, its authority given: pictured (what was refused was the certificate, nothing else).
    trusting: RunningServer = await start_server(rtsp_ca_file=str(own[0]))
    status, body = await rest_picture(http, trusting, unknown.url)
    assert status == 200, body


async def test_a_camera_may_opt_out_of_verification_and_udp_is_refused(
        start_server: Callable[..., Any], tls_cameras: Callable[..., Awaitable[RtspCamera]],
        http: aiohttp.ClientSession, tmp_path: Path) -> None:
    camera = await tls_cameras(BLUE, certificate(tmp_path, "cam", ["localhost"], ["127.0.0.1"]))
    server: RunningServer = await start_server(
        cameras=[Camera(name="porch", uri=camera.url, tls_verify=False)], rtsp_transport="udp")

    async def porch_is_blue() -> bool:
        async with http.get(image_url(server, "porch")) as response:
            if response.status != 200:
                return False
            assert_colour(png_image(await response.read()), BLUE)
            return True

    await eventually(porch_is_blue)
    base = f"{server.http_url}/rest-api/rtsp"
    status, pulls = await post(http, f"{base}/find_all", {})
    assert [(p["toStream"], p["transport"], p["tlsVerify"]) for p in pulls] == [("porch", "tcp", False)]
    # Through REST: refused unless it opts out too; udp is never taken for rtsps://.
    status, body = await post(http, f"{base}/startup", {"uri": camera.url, "toStream": "side"})
    assert (status, body["reason"]) == (502, "source_untrusted"), body
    status, body = await post(http, f"{base}/startup", {"uri": camera.url, "toStream": "side", "transport": "udp",
                                                        "tlsVerify": False})
    assert (status, body["reason"]) == (400, "bad_source_uri"), body
    status, body = await post(http, f"{base}/startup", {"uri": camera.url, "toStream": "side", "tlsVerify": False})
    assert status == 200 and body["tlsVerify"] is False, body


async def test_an_unusable_authority_file_stops_the_server_at_start(start_server: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for path in (str(tmp_path / "missing.pem"), str(not_pem)):
        with pytest.raises(ServerError, match=r"rtsp\.ca_file"):
            await start_server(rtsp_ca_file=path)
