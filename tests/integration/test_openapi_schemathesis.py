"""The OpenAPI document against the live server: schemathesis finds no 5xx and no schema violation.

Two bounded runs: every operation on an empty server (terminate's empty body would end any
stream), then the image and WCS read operations with a real publisher live, so that the
200 answers are checked against their schemas too.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamsnap.media.pattern import PatternTrack
from streamsnap.wcsclient import WcsClient
from streamsnap.web.app import create_app
from streamsnap.web.images import EXTENSIONS

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance",
])


async def schemathesis(url: str, tmp_path: Path, *arguments: str, config: str = "") -> str:
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(config)
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "--config-file", str(config_file), "run", f"{url}/rest-api/openapi.json",
        "--checks", CHECKS, "--seed", "7", "--workers", "1", "--generation-database", "none", "--no-color",
        *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


async def test_openapi_document_lists_every_endpoint(server: Any) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/rest-api/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/", "/version", "/healthz", "/readyz", "/metrics", "/streams",
        "/streams/{name}/snapshot.png", "/streams/{name}/snapshot.jpg", "/streams/{name}/snapshot.webp",
        "/streams/{name}/snapshot.jpeg", "/streams/{name}/thumbnail.jpg", "/streams/{name}/stream.mjpeg",
        "/rest-api/stream/find_all", "/rest-api/stream/find", "/rest-api/stream/terminate",
        "/rest-api/stream/snapshot", "/rest-api/openapi.json",
        "/rest-api/rtsp/startup", "/rest-api/rtsp/find_all", "/rest-api/rtsp/terminate",
        "/whip/{name}", "/whip/{name}/{session}",
    }
    # Every route of the app is described (the WebSocket catch-all and static files are told in the text; the
    # image url's other extensions only answer 404 naming the formats there are).
    assert server.node is not None
    for resource in create_app(server.node).router.resources():
        canonical = resource.canonical
        if canonical in ("/{tail}", "/client/{path}", "/streams/{name}/snapshot{ext}"):
            continue
        expanded = [canonical.replace("{ext}", ext) for ext in EXTENSIONS] if "{ext}" in canonical else [canonical]
        assert set(expanded) <= set(document["paths"]), canonical


async def test_schemathesis_on_an_empty_server(server: Any, tmp_path: Path) -> None:
    # WHIP's offer is SDP, which schemathesis cannot generate (no serializer): tests/integration/test_whip.py.
    output = await schemathesis(server.http_url, tmp_path, "--max-examples", "15",
                                "--exclude-operation-id", "whipPublish")
    # 18 + the image url's .jpeg, HEAD on its four extensions, thumbnail, MJPEG; WHIP's PATCH, OPTIONS, DELETE
    assert "Tested: 30" in output


async def test_schemathesis_with_a_live_stream(start_server: Callable[..., Any], tmp_path: Path) -> None:
    server = await start_server(image_max_width=320, image_max_height=240)
    publisher = await WcsClient.connect(server.ws_url)
    try:
        await publisher.publish("cam", [PatternTrack(320, 240)])
        await schemathesis(
            server.http_url, tmp_path, "--max-examples", "10", "--phases", "coverage,fuzzing",
            "--include-path-regex", "^/streams|^/rest-api/stream/(find|find_all|snapshot)$",
            # MJPEG answers without end while the stream lives: the run on the empty server covers it.
            "--exclude-path-regex", "stream\\.mjpeg$",
            config='[parameters]\n"path.name" = "cam"\n',
        )
        assert server.node.engine.stats.outcomes.get("ok", 0) > 0  # pictures were really made
    finally:
        await publisher.close()
