"""packaging/streamsnap.service: what the unit says, and `systemd-analyze verify` finding nothing to say about it.

verify checks that ExecStart's program exists, and /opt/streamsnap is not on a test machine: the
unit is verified as written but for that path, which points at a stub. verify exits 0 even when it
warns (an unknown key, a bad value is only "ignored"), so its output must be empty as well.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit

UNIT = ROOT / "packaging" / "streamsnap.service"
INSTALLED = "/opt/streamsnap/bin/streamsnap"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_runs_serve_hardened_as_its_own_user() -> None:
    unit = directives()
    assert unit["ExecStart"] == [f"{INSTALLED} serve --config /etc/streamsnap/streamsnap.toml"]
    assert unit["User"] == ["streamsnap"] and unit["Restart"] == ["on-failure"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": ""}.items():
        assert unit[key] == [value], key
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(unit["RestrictAddressFamilies"][0].split())
    assert int(unit["LimitNOFILE"][0]) >= 65536


def verify(unit_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    stub = directory / "streamsnap"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copy = directory / "streamsnap.service"
    copy.write_text(unit_text.replace(INSTALLED, str(stub)))
    return subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_has_nothing_to_say(tmp_path: Path) -> None:
    result = verify(UNIT.read_text(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_speaks_up_about_a_mistake(tmp_path: Path) -> None:
    # The check above means something only if verify, here, reports what it ignores.
    result = verify(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"), tmp_path)
    assert "strickt" in result.stderr
