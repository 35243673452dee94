"""The seams between the layers, checked on the source: who may import and call what (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.syntax import parse

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "streamsnap"
MEDIA_LIBRARIES = ("aiortc", "aioice", "av")
CLIENT_TOOLS = {"wcsclient.py", "cli.py"}
"The command-line publisher and its protocol client: a WebRTC *client*, not part of the server."


def modules(*folders: str) -> list[Path]:
    paths = [PACKAGE / folder for folder in folders] if folders else [PACKAGE]
    found: list[Path] = []
    for path in paths:
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_only_media_touches_the_media_libraries() -> None:
    offenders = [f"{relative(path)} imports {name}" for path in modules()
                 if not relative(path).startswith("media/") and path.name not in CLIENT_TOOLS
                 for name in imported(path) if name.split(".")[0] in MEDIA_LIBRARIES]
    assert offenders == []


def test_the_protocol_core_depends_on_nothing_of_the_server() -> None:
    offenders = [f"{relative(path)} imports {name}" for path in modules("protocol")
                 for name in imported(path) if name.startswith("streamsnap.") and
                 not name.startswith("streamsnap.protocol")]
    assert offenders == []


@pytest.mark.parametrize("folder", ["reasons.py", "streams.py", "access.py", "thumbnails.py", "media", "service"])
def test_the_domain_speaks_no_wire_words(folder: str) -> None:
    # WCS info strings are chosen at the edges (web/wcs.py), never in the domain.
    offenders = [f"{relative(path)} imports {name}" for path in modules(folder) for name in imported(path)
                 if name.startswith(("streamsnap.protocol", "streamsnap.web", "aiohttp.web"))]
    assert offenders == []


def test_services_do_not_know_the_transports() -> None:
    offenders = [f"{relative(path)} imports {name}" for path in modules("service") for name in imported(path)
                 if name.startswith("streamsnap.web")]
    assert offenders == []


MEDIA_HANDLE_ATTRIBUTES = {"video", "peer", "request_keyframe", "media_started", "ended"}
"What a `Source` offers; web/ reads plain records and `SourceStats` only."


def test_web_never_reaches_into_a_media_handle() -> None:
    offenders = [f"{relative(path)}:{node.lineno} .{node.attr}" for path in modules("web")
                 for node in ast.walk(parse(path))
                 if isinstance(node, ast.Attribute) and node.attr in MEDIA_HANDLE_ATTRIBUTES]
    assert offenders == []


def calls(path: Path, method: str) -> int:
    return sum(1 for node in ast.walk(parse(path))
               if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method)


@pytest.mark.parametrize("transport", ["web/websocket.py", "web/images.py", "web/rest.py", "thumbnails.py",
                                       "service/mjpeg.py"])
def test_each_transport_has_one_call_into_the_snapshot_service(transport: str) -> None:
    assert calls(PACKAGE / transport, "take") == 1


def test_only_the_snapshot_service_asks_the_engine() -> None:
    callers = [relative(path) for path in modules() if calls(path, "request") and "engine" in path.read_text()
               and relative(path) != "media/snapshot.py"]
    assert callers == ["service/snapshots.py"]
