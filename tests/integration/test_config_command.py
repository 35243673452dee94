"""The settings commands, run as a user runs them: `config --sample` (and the sample file it wrote)
and `serve --check`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from streamsnap.config import load_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

STREAMSNAP = [sys.executable, "-m", "streamsnap"]
EXAMPLE = ROOT / "streamsnap.example.toml"


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*STREAMSNAP, *args], capture_output=True, timeout=30)


def test_the_example_file_is_what_config_sample_prints() -> None:
    result = run("config", "--sample")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == EXAMPLE.read_bytes(), (
        "streamsnap.example.toml is stale: run `streamsnap config --sample > streamsnap.example.toml`")


def test_the_example_file_is_toml_and_loads_as_the_defaults() -> None:
    tables = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert tables and all(table == {} for table in tables.values())  # every setting commented out
    assert load_settings(EXAMPLE, environ={}) == load_settings(environ={})


def test_the_sample_uncommented_is_a_config_serve_accepts(tmp_path: Path) -> None:
    # Each `# name = value` line, uncommented, is a setting at its default (the cameras example aside).
    settings_part = EXAMPLE.read_text(encoding="utf-8").partition("# [[cameras]]")[0]
    lines = [line[2:] if line.startswith("# ") and " = " in line else line for line in settings_part.splitlines()]
    uncommented = tmp_path / "every-setting.toml"
    uncommented.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_settings(uncommented, environ={}) == load_settings(environ={})


def test_config_without_sample_is_a_usage_error() -> None:
    result = run("config")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "streamsnap: the following arguments are required: --sample (see 'streamsnap config --help')"]


def check(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, list[str], list[str]]:
    """`serve --check` with `args`, in an environment without the caller's STREAMSNAP_* variables."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("STREAMSNAP_")}
    result = subprocess.run([*STREAMSNAP, "serve", "--check", *args], env=environ | (env or {}), cwd=cwd,
                            capture_output=True, text=True, timeout=30)
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


@pytest.fixture
def config(tmp_path: Path) -> Any:
    def write(text: str) -> Path:
        path = tmp_path / "streamsnap.toml"
        path.write_text(text)
        return path
    return write


def test_check_says_ok_and_where_the_settings_come_from(config: Any) -> None:
    path = config('[http]\nport = 9000\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n'
                  'secret = "0123456789abcdef"\n')
    assert check() == (0, ["settings OK: defaults"], [])
    assert check("--config", str(path), "--rest-port", "9001", env={"STREAMSNAP_LOG_LEVEL": "debug"}) == (
        0, [f"settings OK: defaults < config file {path} < environment STREAMSNAP_LOG_LEVEL < flags for rest_port"],
        [])
    assert check("--config", str(EXAMPLE))[0:2] == (0, [f"settings OK: defaults < config file {EXAMPLE}"])


def test_check_names_an_unknown_key_with_its_suggestion(config: Any) -> None:
    path = config("[rtmp]\nmax_conections = 5\n")
    assert check("--config", str(path)) == (2, [], [
        f"streamsnap: config file {path}: unknown setting rtmp.'max_conections' in [rtmp] "
        "(did you mean 'rtmp.max_connections'?)"])


def test_check_gives_two_bad_values_two_lines_and_serve_stops_at_the_first(config: Any, tmp_path: Path) -> None:
    path = config("port = 99999\n[rtmp]\nport = -1\n")
    code, stdout, stderr = check("--config", "streamsnap.toml", cwd=tmp_path)
    assert (code, stdout, stderr) == (2, [], [
        "streamsnap: port: expected 0..65535, got 99999",
        "streamsnap: rtmp.port: expected 0..65535, got -1",
    ])
    serve = subprocess.run([*STREAMSNAP, "serve", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert (serve.returncode, serve.stderr.splitlines()) == (2, stderr[:1])  # the same words as serve


def test_check_reports_every_layer_in_the_order_serve_reads_them(config: Any) -> None:
    path = config('prot = 9000\n[node]\nevent_loop = "trio"\n')
    code, stdout, stderr = check("--config", str(path), "--tls-port", "70000", env={"STREAMSNAP_PORT": "eighty"})
    assert (code, stdout) == (2, [])
    assert stderr == [
        f"streamsnap: config file {path}: unknown setting 'prot' (did you mean 'port'?)",
        "streamsnap: node.event_loop: expected one of uvloop, asyncio, got 'trio'",
        "streamsnap: STREAMSNAP_PORT: expected int, got 'eighty'",
        "streamsnap: tls_port: expected 0..65535, got 70000",
    ]


def test_a_file_that_is_not_toml_is_one_problem_and_the_rest_is_still_checked(config: Any) -> None:
    path = config("port: 9000\nhost: 0.0.0.0\n")
    code, _, stderr = check("--config", str(path), env={"STREAMSNAP_RTMP_PORT": "-5"})
    assert code == 2
    assert len(stderr) == 2, stderr
    assert stderr[0].startswith(f"streamsnap: config file {path} is not TOML (")
    assert stderr[1] == "streamsnap: STREAMSNAP_RTMP_PORT: expected 0..65535, got '-5'"
    assert check("--config", str(path.with_name("absent.toml")))[0:2] == (2, [])


def test_settings_that_go_together_are_not_blamed_on_their_own(config: Any) -> None:
    # Four workers need a Redis URL; each alone on the defaults is refused, together they are fine:
    # a bad port beside them is the one problem.
    path = config('[node]\nworkers = 4\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n')
    assert check("--config", str(path), "--port", "-1") == (2, [], ["streamsnap: port: expected 0..65535, got -1"])
    # A short cluster secret is wrong only beside the URL: one line for the pair.
    path = config('[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\nsecret = "short"\n')
    assert check("--config", str(path)) == (2, [], [
        "streamsnap: cluster.secret: at least 16 characters are needed with `cluster.redis_url` (the nodes sign "
        "their requests to each other with it)"])
