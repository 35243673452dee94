"""The README's settings table is the one the code generates."""

import re

import pytest

from streamsnap.config import settings_table
from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_readme_settings_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings-table:[^>]*-->\n(.*?)<!-- end settings-table -->", readme, re.S)
    assert match, "README lost its settings-table markers"
    assert match.group(1) == settings_table(), "README settings table is stale: paste settings_table() output"


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_screen = (ROOT / "README.md").read_text().splitlines()[:16]
    commands = [line.split("#")[0].strip() for line in first_screen if line.startswith("make ")]
    assert commands == ["make serve", "make test"]
