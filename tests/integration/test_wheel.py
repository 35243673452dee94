"""The wheel runs alone: built from the sdist, installed into a new virtual environment, served from elsewhere.

`python -m build` makes the sdist from a copy of the checkout's tracked files, then the wheel from
that sdist, so the wheel shows what the sdist carries. The wheel goes into a virtual environment
of its own in a temporary directory, after the locked runtime dependencies
(`requirements/runtime.txt`, hashes checked), as docs/deployment.md does on a server. That
environment's `streamsnap serve` runs in a directory outside the checkout, and the README tour's
commands run against it with that environment's `streamsnap` (the tour's `.venv` is a link to it):
the landing page, the example page, the browser client and pictures must all come from the wheel.
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.harness import Processes, free_port, read_line, wait_listening
from tests.integration.test_readme_tour import assert_shows, readme_tour, with_ports

pytestmark = pytest.mark.integration

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
STATIC = ("streamsnap/static/index.html", "streamsnap/static/streamsnap.js", "streamsnap/static/streamsnap.d.ts",
          "streamsnap/static/examples/demo/streaming/stream-snapshot/stream-snapshot.html",
          "streamsnap/static/examples/demo/streaming/stream-snapshot/stream-snapshot.js",
          "streamsnap/static/examples/demo/streaming/stream-snapshot/stream-snapshot.css")
EXAMPLE_PAGE = "/client/examples/demo/streaming/stream-snapshot/stream-snapshot.html"


def run(args: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `args`; it must succeed."""
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


def copy_of_the_checkout(target: Path) -> Path:
    """The files git tracks, as they are in the working tree (what `python -m build` packs)."""
    tracked = run(["git", "ls-files", "-z"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def clean_environment() -> dict[str, str]:
    """This environment without the checkout's: no PYTHONPATH, no .venv on the PATH."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != venv_bin)
    return env | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"}


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), answer.read()


@pytest.mark.timeout(900)
def test_the_wheel_installed_alone_serves_pages_and_pictures(tmp_path: Path) -> None:
    source = copy_of_the_checkout(tmp_path / "source")
    dist = tmp_path / "dist"
    # The locked setuptools of .venv builds (no isolation: nothing fetched to build).
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source], cwd=source)
    [sdist] = dist.glob("streamsnap-*.tar.gz")
    [wheel] = dist.glob("streamsnap-*.whl")
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert wheel.name.startswith(f"streamsnap-{VERSION}-{python}-{python}-"), wheel.name  # it carries C
    with tarfile.open(sdist) as archive:
        packed = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "packaging/streamsnap.service", "requirements/runtime.txt"} <= packed
    assert {f"src/{name}" for name in STATIC} <= packed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert set(STATIC) <= names
    assert any(name.startswith("streamsnap/media/_fastrtp.") and name.endswith(".so") for name in names)
    assert f"streamsnap-{VERSION}.dist-info/licenses/LICENSE" in names

    env = clean_environment()
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env=env)
    run([venv / "bin" / "pip", "install", "--quiet", "-r", ROOT / "requirements" / "runtime.txt"], env=env,
        timeout=600)
    run([venv / "bin" / "pip", "install", "--quiet", "--no-deps", wheel], env=env, timeout=120)

    elsewhere = tmp_path / "elsewhere"  # no checkout here or above: nothing to import but the installed package
    elsewhere.mkdir()
    installed = run([venv / "bin" / "python", "-c", "import streamsnap; print(streamsnap.__file__)"],
                    cwd=elsewhere, env=env).stdout.strip()
    assert installed.startswith(str(venv)), installed
    run([venv / "bin" / "python", "-c", "import streamsnap.media._fastrtp"], cwd=elsewhere, env=env)  # the C part
    assert run([venv / "bin" / "streamsnap", "--version"], cwd=elsewhere, env=env).stdout.strip() == \
        f"streamsnap {VERSION}"

    processes = Processes()
    try:
        port = free_port()
        server = processes.start([str(venv / "bin" / "streamsnap"), "serve", "--host", "127.0.0.1", "--port",
                                  str(port)], elsewhere, env)
        wait_listening(port, server, timeout=60)
        base = f"http://127.0.0.1:{port}"

        status, kind, body = fetch(f"{base}/")
        assert (status, kind.split(";")[0]) == (200, "text/html") and b"<title>streamsnap</title>" in body
        status, kind, body = fetch(f"{base}{EXAMPLE_PAGE}")
        assert (status, kind.split(";")[0]) == (200, "text/html") and b"stream-snapshot.js" in body
        status, _, body = fetch(f"{base}/client/streamsnap.js")
        assert status == 200 and b"createSession" in body
        assert fetch(f"{base}/version")[2] == f'{{"name": "streamsnap", "version": "{VERSION}"}}'.encode()

        # The README tour, its `.venv/bin/streamsnap` being the new environment's (after `make serve &`).
        (elsewhere / ".venv").symlink_to(venv)
        steps = readme_tour()
        assert steps[0].words == ["make", "serve", "&"]
        for step in steps[1:]:
            words = shlex.split(with_ports(step.command, port), comments=True)
            if step.background:
                proc = processes.start(words[:-1], elsewhere, env)
                assert_shows("".join(read_line(proc, timeout=60) for _ in step.expected), step.expected, step)
                continue
            result = subprocess.run(words, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
            assert result.returncode == step.exit_status, (step.command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            assert_shows(result.stdout + result.stderr, step.expected, step)
        assert Image.open(elsewhere / "demo.png").size == (640, 480)
        assert Image.open(elsewhere / "thumb.jpg").size == (320, 240)

        status, kind, body = fetch(f"{base}/streams/demo/snapshot.jpg?width=320")
        picture = Image.open(io.BytesIO(body))
        assert (status, kind, picture.format, picture.size) == (200, "image/jpeg", "JPEG", (320, 240))
    finally:
        processes.stop_all()
