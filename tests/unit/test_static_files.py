"""The files served to browsers are in the package as built, not only in the source tree."""

from __future__ import annotations

import tomllib

import pytest

from streamsnap.web.app import STATIC_DIR
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_package_data_ships_every_static_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["streamsnap"]
    package = STATIC_DIR.parent
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    files = {path for path in STATIC_DIR.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert files and files <= shipped, sorted(str(path.relative_to(package)) for path in files - shipped)
