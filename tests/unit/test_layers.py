"""The seams between the layers, checked on the source: who may import and call what (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.syntax import parse

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "streamsnap"
MEDIA_LIBRARIES = ("aiortc", "aioice", "av")
CLIENT_TOOLS = {"wcsclient.py", "cli/client.py"}
"""`publish`, `snapshot` and their protocol client: a WebRTC *client*, not part of the server. Named by path:
`serve` and `token`, in cli/ too, are held to the rule like any other module."""


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
                 if not relative(path).startswith("media/") and relative(path) not in CLIENT_TOOLS
                 for name in imported(path) if name.split(".")[0] in MEDIA_LIBRARIES]
    assert offenders == []


def test_the_protocol_core_depends_on_nothing_of_the_server() -> None:
    offenders = [f"{relative(path)} imports {name}" for path in modules("protocol")
                 for name in imported(path) if name.startswith("streamsnap.") and
                 not name.startswith("streamsnap.protocol")]
    assert offenders == []


@pytest.mark.parametrize("folder", ["reasons.py", "streams.py", "access.py", "picture.py", "media", "service"])
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


@pytest.mark.parametrize("transport", ["web/websocket.py", "web/images.py", "web/rest.py", "web/cluster.py",
                                       "service/thumbnails.py", "service/mjpeg.py"])
def test_each_transport_has_one_call_into_the_snapshot_service(transport: str) -> None:
    assert calls(PACKAGE / transport, "take") == 1


def test_only_the_snapshot_service_asks_the_engine() -> None:
    callers = [relative(path) for path in modules() if calls(path, "request") and "engine" in path.read_text()
               and relative(path) != "media/snapshot.py"]
    assert callers == ["service/snapshots.py"]


def test_web_never_imports_the_module_that_builds_a_node() -> None:
    offenders = [f"{relative(path)} imports {name}" for path in modules("web") for name in imported(path)
                 if name.startswith("streamsnap.server")]
    assert offenders == []


def constructed(path: Path, names: set[str]) -> list[str]:
    """The calls in `path` that construct (or bind) one of `names`: `Name(...)` or `anything.Name(...)`."""
    found = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Call):
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
            if name in names:
                found.append(f"{relative(path)}:{node.lineno} {name}")
    return found


PARTS = {"SnapshotService", "PublishingService", "SnapshotEngine", "CameraPulls", "MjpegFeeds", "Thumbnailer",
         "AccessControl", "BackendHooks", "LocalSources", "HttpRouter", "HeapKeeper"}
"The parts of a node: made by `server/node.py` alone."
LISTENERS = {"AppRunner", "SockSite", "TCPSite", "RtmpServer", "serve_guarded", "create_server"}
"What binds a socket: only the listeners (server/listeners.py and the two servers it starts)."
LISTENER_MODULES = {"server/listeners.py", "server/rtmp.py", "server/connections.py", "media/rtsp_relay.py"}
"The public listeners, and the loopback relay a camera pull puts between FFmpeg and the camera."


def test_only_the_builder_makes_the_parts_of_a_node() -> None:
    makers = [call for path in modules() for call in constructed(path, PARTS)]
    assert makers and all(call.startswith("server/node.py:") for call in makers), makers


def test_only_the_listeners_bind_sockets() -> None:
    binders = [call for path in modules() for call in constructed(path, LISTENERS)]
    assert binders and all(call.split(":")[0] in LISTENER_MODULES for call in binders), binders
    assert any(call.startswith("server/listeners.py:") for call in binders)


SETTINGS_WORDS = ("Settings", "Limits", "Config")


def test_no_part_keeps_settings_of_its_own() -> None:
    # Each part is handed its section of config.py as it is: no copy with defaults of its own. What a sans-I/O
    # core needs is a Protocol the section satisfies (protocol/ may not import config.py).
    offenders = []
    for path in modules():
        if relative(path) == "config.py":
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ClassDef) and node.name.endswith(SETTINGS_WORDS):
                bases = {base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases}
                defaults = [item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
                            and item.value is not None and isinstance(item.target, ast.Name)]
                if "Protocol" not in bases and defaults:
                    offenders.append(f"{relative(path)}:{node.lineno} {node.name} ({', '.join(defaults)})")
    assert offenders == []


ANSWERED_BY_THE_MIDDLEWARE = {"SnapshotError", "AccessDenied", "NotAuthenticated", "BadQuery", "BadRequest"}
"""Raised by HTTP handlers and answered in one place, web/errors.py, from one reason->status table (a
camera's `PublishError` is turned into its picture's failure by the REST startup, which then raises that)."""
PROTOCOL_TRANSLATIONS = {"web/websocket.py", "web/errors.py"}
"The WCS session answers a refused picture in its own protocol (`snapshotFailed`), not in HTTP."


def test_no_http_handler_answers_a_refusal_itself() -> None:
    offenders = []
    for path in modules("web"):
        if relative(path) in PROTOCOL_TRANSLATIONS:
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
                names = {c.id if isinstance(c, ast.Name) else getattr(c, "attr", "") for c in caught}
                if names & ANSWERED_BY_THE_MIDDLEWARE:
                    offenders.append(f"{relative(path)}:{node.lineno} catches {sorted(names)}")
    assert offenders == []


def test_every_reason_has_one_http_status() -> None:
    from streamsnap.reasons import SnapshotFailure
    from streamsnap.web.errors import STATUS

    assert set(SnapshotFailure) <= set(STATUS)
    tables = [relative(path) for path in modules("web") if "dict[StreamEnd, int]" in path.read_text()
              or "dict[SnapshotFailure, int]" in path.read_text()]
    assert tables == []  # the one table is STATUS, keyed by both kinds of reason
