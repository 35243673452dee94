"""The RTSP test camera (rtsp_camera.py beside this file) as a process: started, awaited, killed.

The camera is GStreamer's RTSP server, which the project's venv does not have: it runs under
Debian's python3 (python3-gst-1.0, gir1.2-gst-rtsp-server-1.0; scripts/system-deps.sh installs them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.processes import LOOPBACK

SYSTEM_PYTHON = "/usr/bin/python3"
CAMERA_SCRIPT = Path(__file__).resolve().with_name("rtsp_camera.py")
RED = 0xFF0000


def gstreamer_missing() -> bool:
    """True when the system python3 cannot load GStreamer's RTSP server."""
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    return probe.returncode != 0


@dataclass
class RtspCamera:
    """One GStreamer RTSP server process on 127.0.0.1 serving a solid colour (or `--pattern` in `extra`) in H.264."""

    port: int
    colour: int = RED
    user: str = ""
    password: str = ""
    path: str = "/cam"
    extra: list[str] = field(default_factory=list)
    "More rtsp_camera.py arguments (size, frame rate, keyframe interval, bitrate, pattern, `--codec h265`)."
    tls: tuple[Path, Path] | None = None
    "(certificate, key) PEM files: the camera serves rtsps://."
    cpus: set[int] | None = None
    "CPUs the camera is pinned to (benchmarks keep it off the server's), None for any."
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The camera's url, with credentials when it has some."""
        userinfo = f"{self.user}:{self.password}@" if self.user else ""
        return f"{self.scheme}://{userinfo}{LOOPBACK}:{self.port}{self.path}"

    @property
    def public_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}{self.path}"

    @property
    def scheme(self) -> str:
        return "rtsps" if self.tls else "rtsp"

    def spawn(self) -> subprocess.Popen[str]:
        """Start the process; it prints "ready <port>" once it listens (see `start` and `start_blocking`)."""
        args = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port), "--path", self.path,
                "--colour", hex(self.colour), *self.extra]
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        if self.tls:
            args += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        cpus = self.cpus
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        return self.process

    async def start(self, timeout: float = 15.0) -> None:
        """Start it and wait (without blocking the event loop) until it listens."""
        process = self.spawn()
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
        assert line.startswith("ready"), f"camera did not start: {line!r}"

    def start_blocking(self) -> None:
        """Start it and block until it listens; RuntimeError when it ends first."""
        process = self.spawn()
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"camera did not start: {line!r}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
