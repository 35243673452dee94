"""Every shell block README.md and docs/*.md mark `<!-- runnable -->`, run as written (tests/docs_blocks.py).

Each block runs in a scratch directory that holds the checkout's files (symbolic links to every
entry git tracks, and to `.venv`), so `.venv/bin/streamsnap`, `make` and `tests/harness/...`
work as they do from the checkout after `make serve` and `make test`, and what a block writes
stays in the scratch directory. The one change made to a block is its ports: 8080 (and 8081,
8082 after it), 8443, 1935, 8554 and 6379 become free ports, the same ones throughout the block,
its expected output and the files of its page. The tour's grammar holds (test_readme_tour.py):
a `# ...` line under a command is its expected output; `(exit status N)` says the status.

A line ending in `&` is started in the background, in a process group of its own, and stopped
(Ctrl-C, then kill) when the block is done. A background line with expected output is waited
for until it printed those lines; a server (`serve`, `make serve`, `make cluster`,
`redis-server`) until its ports listen. The other lines run one after another in bash, which
carries variables and `export`s from one line to the next as an interactive shell does; each
must exit with its status (0 unless said), print its expected lines, and no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import ROOT, Block, file_blocks, runnable_blocks
from tests.harness import Processes, free_port, gstreamer_missing, read_line, wait_listening
from tests.integration.test_readme_tour import Step, assert_shows, steps_of

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
KNOWN_PORTS = (8080, 8081, 8082, 8443, 1935, 8554, 6379)
"The well-known ports the pages write; each becomes a free one."
SERVERS = re.compile(r"(?:^|\s)(?:\S*streamsnap serve|make serve|make cluster|redis-server)\b")
STEP_TIMEOUT = 120


def free_run(length: int) -> int:
    """The first of `length` consecutive ports free on loopback (8080, 8081, 8082 stay neighbours)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first + 1, first + length):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {length} consecutive free ports")


def port_map() -> dict[int, int]:
    first = free_run(3)
    ports = {8080: first, 8081: first + 1, 8082: first + 2}
    for known in KNOWN_PORTS:
        ports.setdefault(known, free_port())
    return ports


def with_free_ports(text: str, ports: dict[int, int]) -> str:
    # Digits on neither side, rather than word boundaries: a port in a percent-encoded url follows `%3A`.
    return re.sub(r"(?<!\d)(" + "|".join(map(str, ports)) + r")(?!\d)", lambda match: str(ports[int(match.group(1))]),
                  text)


def scratch_checkout(directory: Path) -> None:
    """Links in `directory` to every top-level entry of the checkout git tracks, and to .venv."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in sorted({line.split("/", 1)[0] for line in tracked.splitlines()} | {".venv"}):
        if (ROOT / name).exists():
            (directory / name).symlink_to(ROOT / name)


def missing_need(need: str) -> bool:
    if need == "gst-rtsp-server":
        return gstreamer_missing()
    return shutil.which(need) is None


def environment(ports: dict[int, int]) -> dict[str, str]:
    return os.environ | {
        "STREAMSNAP_ICE_ADDRESSES": "127.0.0.1",  # media on loopback only, as every test
        "PORT": str(ports[8080]),  # `make serve` and `make cluster` take it: the command stays as written
        "REDIS_PORT": str(ports[6379]),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def start_the_tour(processes: Processes, directory: Path, env: dict[str, str], port: int) -> None:
    """What the README tour's first two lines leave running: `make serve` and the `demo` publisher."""
    if subprocess.run(["make", "-q", ".venv/.runtime-stamp"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.fail("`make serve` would reinstall .venv (pyproject.toml changed): run `make serve` once first")
    server = processes.start(["make", "serve"], ROOT, env)
    wait_listening(port, server, timeout=60)
    publisher = processes.start([".venv/bin/streamsnap", "publish", f"ws://127.0.0.1:{port}/", "demo"], directory, env)
    assert read_line(publisher, timeout=60).strip() == "PUBLISHING demo"


def run_in_bash(command: str, directory: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                                             dict[str, str]]:
    """Run `command` as a line of an interactive shell; its result and the variables it leaves."""
    script = f"set -a\n{command}\n__status=$?\nenv -0 > .docs-env\nexit $__status\n"
    result = subprocess.run(["bash", "-c", script], cwd=directory, env=env, capture_output=True, text=True,
                            timeout=STEP_TIMEOUT)
    variables = dict(item.split("=", 1) for item in (directory / ".docs-env").read_text().split("\0") if "=" in item)
    return result, variables


def background(step: Step, processes: Processes, directory: Path, env: dict[str, str],
               ports: dict[int, int]) -> None:
    command = re.sub(r"&\s*(#.*)?$", "", step.command.rstrip())
    proc = processes.start(["bash", "-c", command], directory, env)
    if step.expected:
        assert_shows("".join(read_line(proc, timeout=60) for _ in step.expected), step.expected, step)
    elif SERVERS.search(command):
        named = [port for port in ports.values() if re.search(rf"\b{port}\b", command)]
        if "make cluster" in command:
            named = [ports[8080], ports[8081], ports[8082]]
        for port in named or [ports[8080]]:
            wait_listening(port, proc, timeout=60)


def run_block(block: Block, tmp_path: Path, processes: Processes) -> None:
    for need in block.needs:
        if missing_need(need):
            pytest.skip(f"{block.where} needs {need}")
    ports = port_map()
    scratch_checkout(tmp_path)
    for page_file in file_blocks(block.page):
        if not (ROOT / page_file.argument).exists():
            (tmp_path / page_file.argument).write_text(with_free_ports(page_file.text, ports))
    env = environment(ports)
    if block.with_tour:
        start_the_tour(processes, tmp_path, env, ports[8080])
    for step in steps_of(with_free_ports(block.text, ports)):
        if step.background:
            background(step, processes, tmp_path, env, ports)
            continue
        result, variables = run_in_bash(step.command, tmp_path, env)
        output = result.stdout + result.stderr
        assert result.returncode == step.exit_status, (block.where, step.command, output)
        assert "Traceback" not in output, (block.where, step.command, output)
        assert_shows(output, step.expected, step)
        env = variables


def stop_and_read(processes: Processes) -> str:
    """Stop every background process of the block (Ctrl-C to its group, then kill); their standard error."""
    errors = []
    for proc in reversed(processes.started):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        errors.append(err)
    processes.started.clear()
    return "".join(errors)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.where)
def test_the_docs_command_runs_as_written(block: Block, tmp_path: Path) -> None:
    processes = Processes()
    try:
        run_block(block, tmp_path, processes)
    finally:
        logs = stop_and_read(processes)
    assert "Traceback" not in logs, (block.where, logs[-4000:])
