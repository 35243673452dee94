"""`streamsnap config --sample` and the sample file it wrote, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

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
