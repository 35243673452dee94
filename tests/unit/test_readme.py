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


def test_readme_differences_from_wcs_list_every_rest_method() -> None:
    from aiohttp import web

    from streamsnap.web.openapi import add_openapi_route
    from streamsnap.web.rest import add_rest_routes
    from streamsnap.web.rtsp_rest import add_rtsp_routes

    app = web.Application()
    add_rest_routes(app)
    add_rtsp_routes(app)
    add_openapi_route(app)
    methods = {resource.canonical.removeprefix("/rest-api/") for resource in app.router.resources()}
    readme = (ROOT / "README.md").read_text()
    differences = readme.split("## Differences from WCS", 1)[1].split("\n## ", 1)[0]
    [rest_line] = [item for item in differences.split("\n- ") if item.startswith("REST: only")]
    listed = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)?(?:\.json)?)`", rest_line))
    assert methods == {"stream/find_all", "stream/find", "stream/terminate", "stream/snapshot", "rtsp/startup",
                       "rtsp/find_all", "rtsp/terminate", "openapi.json"}
    assert methods <= listed, sorted(methods - listed)
