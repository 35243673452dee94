"""The README opens with the two set-up commands (the settings reference is docs/configuration.md)."""

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_screen = (ROOT / "README.md").read_text().splitlines()[:16]
    commands = [line.split("#")[0].strip() for line in first_screen if line.startswith("make ")]
    assert commands == ["make serve", "make test"]
