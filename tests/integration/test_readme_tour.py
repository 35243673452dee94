"""The README's tour and the examples `--help` prints, run as written, in subprocesses.

The commands come from README.md and from `streamsnap ... --help`, not from this file: the
only change made to them is the port (8080 and 8443 may be taken on a test machine). The
README's `# ...` lines under a command are its expected output; numbers with a decimal
point (timings) may differ, everything else must match.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from tests.clips import write_pattern_clip
from tests.conftest import ROOT
from tests.harness import Processes, free_port, read_line, wait_listening

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
ENV = os.environ | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"}


@dataclass
class Step:
    """One command of a listing and the output shown under it."""

    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def words(self) -> list[str]:
        return shlex.split(self.command, comments=True)

    @property
    def background(self) -> bool:
        return self.words[-1] == "&"

    @property
    def exit_status(self) -> int:
        found = [int(m.group(1)) for line in self.expected if (m := re.search(r"\(exit status (\d+)\)\s*$", line))]
        return found[0] if found else 0


def steps_of(listing: str) -> list[Step]:
    """Commands and their expected output lines (the `# ...` lines under each)."""
    steps: list[Step] = []
    for line in listing.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            steps[-1].expected.append(line[1:].strip())
        else:
            steps.append(Step(line.strip()))
    return steps


def output_pattern(expected: str) -> re.Pattern[str]:
    """A README output line as a pattern: timings (numbers with a point) vary, the rest is literal."""
    text = re.sub(r"\s+\(exit status \d+\)\s*$", "", expected)
    parts = re.split(r"\d+\.\d+", text)
    return re.compile(r"[0-9]+(?:\.[0-9]+)?".join(re.escape(part) for part in parts))


def assert_shows(output: str, expected: list[str], step: Step) -> None:
    lines = [line.strip() for line in output.splitlines()]
    for wanted in expected:
        pattern = output_pattern(wanted)
        assert any(pattern.fullmatch(line) for line in lines), (step.command, wanted, output)


def readme_tour() -> list[Step]:
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## A 60-second tour\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README lost its '## A 60-second tour' section"
    block = re.search(r"```sh\n(.*?)```", section.group(1), re.S)
    assert block, "the tour has no ```sh block"
    return steps_of(block.group(1))


def help_examples(command: str) -> list[Step]:
    result = subprocess.run([str(BIN / "streamsnap"), command, "--help"], capture_output=True, text=True,
                            timeout=30, check=True)
    examples = result.stdout.split("examples:\n", 1)
    assert len(examples) == 2, f"`streamsnap {command} --help` shows no examples"
    return steps_of("\n".join(line for line in examples[1].splitlines() if line.startswith("  streamsnap ")))


def with_ports(command: str, port: int, tls_port: int | None = None) -> str:
    command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    return command.replace("127.0.0.1:8443", f"127.0.0.1:{tls_port}") if tls_port else command


@pytest.mark.timeout(180)
def test_the_readme_tour_as_written(tmp_path: Path, processes: Processes) -> None:
    steps = readme_tour()
    assert steps[0].words == ["make", "serve", "&"], "the tour should start the server with `make serve &`"
    stale = subprocess.run(["make", "-q", ".venv/.runtime-stamp"], cwd=ROOT, capture_output=True)
    if stale.returncode != 0:
        pytest.fail("`make serve` would reinstall .venv (pyproject.toml changed): run `make serve` once first")
    port = free_port()
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # the tour's relative .venv/bin/streamsnap, from tmp_path
    # The Makefile's `PORT ?= 8080` takes the port from the environment: the command stays as written.
    server = processes.start(steps[0].words[:-1], ROOT, ENV | {"PORT": str(port)})
    wait_listening(port, server, timeout=60)

    for step in steps[1:]:
        words = shlex.split(with_ports(step.command, port), comments=True)
        if step.background:
            proc = processes.start(words[:-1], tmp_path, ENV)
            assert_shows("".join(read_line(proc) for _ in step.expected), step.expected, step)
            continue
        result = subprocess.run(words, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60)
        assert result.returncode == step.exit_status, (step.command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert_shows(result.stdout + result.stderr, step.expected, step)

    assert Image.open(tmp_path / "demo.png").size == (640, 480)
    thumb = Image.open(tmp_path / "thumb.jpg")
    assert (thumb.format, thumb.size) == ("JPEG", (320, 240))
    assert not (tmp_path / "x.png").exists()


def expected_picture(command: str) -> tuple[Path, str, tuple[int, int]]:
    """The file a snapshot example writes, its format and its size (the publisher sends 640x480)."""
    words = shlex.split(command)
    target = words[words.index(">") + 1] if ">" in words else words[words.index("-o") + 1]
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    width = int(words[words.index("--width") + 1]) if "--width" in words else None
    height = int(words[words.index("--height") + 1]) if "--height" in words else None
    size = (width or (height or 480) * 4 // 3, height or (width or 640) * 3 // 4)
    return Path(target), formats[Path(target).suffix], size


@pytest.mark.timeout(180)
def test_the_help_examples_as_written(tmp_path: Path, processes: Processes) -> None:
    port, tls_port = free_port(), free_port()
    server = processes.start(
        [str(BIN / "streamsnap"), "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-self-signed",
         "--tls-port", str(tls_port)], tmp_path, ENV)
    wait_listening(port, server, timeout=60)
    wait_listening(tls_port, server, timeout=60)
    write_pattern_clip(tmp_path / "clip.webm")
    env = ENV | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    publishers = []
    for step in help_examples("publish"):
        proc = processes.start(["bash", "-c", "exec " + with_ports(step.command, port, tls_port)], tmp_path, env)
        name = step.words[3]
        assert read_line(proc).strip() == f"PUBLISHING {name}", (step.command, proc.poll())
        publishers.append((step, proc, name))

    snapshots = help_examples("snapshot")
    assert snapshots
    for step in snapshots:
        result = subprocess.run(["bash", "-c", with_ports(step.command, port, tls_port)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (step.command, result.stderr)
        path, image_format, size = expected_picture(step.command)
        picture = Image.open(io.BytesIO((tmp_path / path).read_bytes()))
        assert (picture.format, picture.size) == (image_format, size), step.command

    for step, proc, name in publishers:
        ends_alone = "--duration" in step.words or "--once" in step.words
        if not ends_alone:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, (step.command, stderr)
        assert f"UNPUBLISHED {name}" in stdout, (step.command, stdout, stderr)
