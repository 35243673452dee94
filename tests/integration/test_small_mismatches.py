"""What the docs say and what the server does agree (issue 24, item 3): each mismatch a user met, with a real
server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamsnap.media.pattern import PatternTrack
from streamsnap.server.listeners import Server
from streamsnap.server.tls import local_certificate
from streamsnap.wcsclient import WcsClient
from tests.conftest import ROOT, RunningServer
from tests.harness import RtspCamera, free_port, gstreamer_missing, serve_command, stop
from tests.harness.processes import read_line

pytestmark = pytest.mark.integration

STREAMSNAP = str(Path(sys.executable).parent / "streamsnap")


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


async def test_the_camera_listing_refuses_a_body_not_sent_as_json_too(server: RunningServer,
                                                                     http: aiohttp.ClientSession) -> None:
    url = f"{server.http_url}/rest-api/rtsp/find_all"
    async with http.post(url, data="{}", headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 415
    async with http.post(url, json={"uri": "rtsp://cam/x"}) as response:
        assert response.status == 400
    for method, body in (("POST", None), ("POST", {}), ("GET", None)):
        async with http.request(method, url, json=body) as response:
            assert response.status == 404  # no pull: WCS's answer to an empty listing


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_banner_points_at_metrics_and_follows_the_log_format(log_format: str) -> None:
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(serve_command(port, "--log-format", log_format),
                            env=os.environ | {"STREAMSNAP_METRICS_PORT": str(metrics_port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [read_line(proc)]  # bounded wait for the first; the rest follow it at once
        while "example page" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], (lines, proc.stderr.read() if proc.stderr else "")
        if log_format == "json":  # JSON lines like the log's, with what each is about in fields of its own
            entries = [json.loads(line) for line in lines]
            assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries), entries
            metrics_url = next(entry["url"] for entry in entries if entry.get("listener") == "metrics")
        else:
            [metrics_line] = [line for line in lines if "metrics on" in line]
            metrics_url = metrics_line.split()[-1]
        assert metrics_url == f"http://127.0.0.1:{metrics_port}/metrics"  # was .../ (404 there)
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:
            assert answer.status == 200
            assert b"streamsnap_info" in answer.read()
    finally:
        stop(proc)


def test_the_self_signed_certificate_is_written_for_cacert(tmp_path: Path) -> None:
    port, tls_port = free_port(), free_port()
    proc = subprocess.Popen(serve_command(port, "--tls-self-signed", "--tls-port", str(tls_port)),
                            env=os.environ | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    publisher: subprocess.Popen[str] | None = None
    try:
        assert proc.stdout is not None
        lines = [read_line(proc)]
        while "example page" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], lines
        [written] = [line for line in lines if "(for --cacert)" in line]
        path = Path(written.split(" written to ", 1)[1].rsplit(" (for --cacert)", 1)[0])
        # Where it is by default: the temporary folder, one file per https port (so servers do not overwrite
        # each other's); the key is not in it.
        assert path == Path(tempfile.gettempdir()) / f"streamsnap-self-signed-{tls_port}.pem"
        pem = path.read_text()
        assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in pem

        url = f"wss://127.0.0.1:{tls_port}/"
        publisher = subprocess.Popen([STREAMSNAP, "publish", url, "tls-cam", "--size", "160x120",
                                      "--cacert", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert read_line(publisher) == "PUBLISHING tls-cam\n"
        snapshot = subprocess.run([STREAMSNAP, "snapshot", url, "tls-cam", "-o", str(tmp_path / "shot.png"),
                                   "--cacert", str(path)], capture_output=True, text=True, timeout=30)
        assert snapshot.returncode == 0, snapshot.stderr
        assert "160x120" in snapshot.stdout
    finally:
        if publisher is not None:
            stop(publisher, signal.SIGINT)
        stop(proc)
    assert not path.exists()  # the next start makes another certificate: the stopped server's file is gone


def test_a_certificate_and_key_swapped_are_named_in_one_line(tmp_path: Path) -> None:
    certificate = local_certificate()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.cert_pem)
    key.write_bytes(certificate.key_pem)
    other = tmp_path / "other-key.pem"
    other.write_bytes(local_certificate().key_pem)
    for cert_file, key_file, wrong, words in (
            (key, cert, f"tls.cert {key}", "swapped"),  # both given the other's file
            (cert, cert, f"tls.key {cert}", "swapped"),
            (cert, other, f"tls.key {other}", "not the key of the certificate"),
            (tmp_path / "missing.pem", key, f"tls.cert {tmp_path / 'missing.pem'}", "No such file")):
        result = subprocess.run(serve_command(free_port(), "--tls-cert", str(cert_file), "--tls-key", str(key_file),
                                              "--tls-port", str(free_port())),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith(f"streamsnap: {wrong}") and words in line, line


@pytest.mark.parametrize("garbage", ["hello", "v=0\r\nthis is no offer\r\n", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
                                     "\x00\x01binary\xff", "{\"sdp\": \"v=0\"}"])
async def test_a_whip_body_of_garbage_is_an_invalid_sdp(server: RunningServer, http: aiohttp.ClientSession,
                                                        garbage: str) -> None:
    async with http.post(f"{server.http_url}/whip/cam", data=garbage.encode(),
                         headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 400
        body = await response.json()
        assert (body["reason"], body["error"]) == ("invalid_sdp", "Invalid SDP")  # was no_common_codecs
    async with http.get(f"{server.http_url}/streams") as listing:
        assert await listing.json() == []


async def test_an_image_url_of_another_format_names_the_formats(server: RunningServer,
                                                                 http: aiohttp.ClientSession) -> None:
    for tail in ("snapshot.gif", "snapshot.PNG", "snapshot.", "snapshot"):
        async with http.get(f"{server.http_url}/streams/cam/{tail}") as response:
            assert response.status == 404, tail
            assert await response.json() == {"error": "the image url takes .png, .jpg, .jpeg or .webp",
                                              "status": 404, "reason": "unsupported_format"}
    async with http.get(f"{server.http_url}/streams/cam/snapshot.jpeg") as response:  # a format there is
        assert (response.status, (await response.json())["reason"]) == (404, "stream_not_found")


async def test_client_folders_and_aiohttps_own_refusals_answer_json(server: RunningServer,
                                                                     http: aiohttp.ClientSession) -> None:
    for path in ("/client/", "/client/examples/", "/client/no-such-file.js"):
        async with http.get(f"{server.http_url}{path}") as response:
            assert response.status == 404, path  # /client/ was a plain-text 403
            assert response.content_type == "application/json", path
            assert await response.json() == {"error": "no such resource", "status": 404}
    async with http.get(f"{server.http_url}/client/streamsnap.js") as response:
        assert response.status == 200  # the files themselves are served as before
    async with http.delete(f"{server.http_url}/streams") as response:
        assert (response.status, response.headers["Allow"]) == (405, "GET,HEAD")
        assert await response.json() == {"error": "method not allowed", "status": 405}


@pytest.mark.skipif(gstreamer_missing(), reason="needs GStreamer's RTSP server (scripts/system-deps.sh)")
async def test_a_camera_pulled_through_rest_is_forgotten_at_restart_as_documented(
        start_full_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    camera = RtspCamera(free_port(), 0x00FF00)
    await camera.start()
    try:
        first: Server = await start_full_server()
        base = f"http://127.0.0.1:{first.port('http')}"
        async with http.post(f"{base}/rest-api/rtsp/startup", json={"uri": camera.url, "toStream": "door"}) as answer:
            assert answer.status == 200, await answer.text()
        await first.stop()  # a restart: the same settings, a new process's worth of state

        second: Server = await start_full_server()
        base = f"http://127.0.0.1:{second.port('http')}"
        async with http.get(f"{base}/rest-api/rtsp/find_all") as pulls:
            assert pulls.status == 404  # forgotten, as the camera docs and the OpenAPI description say
        async with http.get(f"{base}/streams") as listing:
            assert await listing.json() == []
        async with http.get(f"{base}/rest-api/openapi.json") as document:
            startup = (await document.json())["paths"]["/rest-api/rtsp/startup"]["post"]
            assert "a restart forgets it" in startup["description"]
        page = " ".join((ROOT / "docs" / "cameras.md").read_text().split())
        assert "A pull started this way lives in the server's memory only: a restart forgets it" in page
    finally:
        camera.kill()
