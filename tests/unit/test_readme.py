"""The README opens with the two set-up commands (the settings reference is docs/configuration.md); the
differences from WCS name every REST method served."""

import re

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.unit


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_screen = (ROOT / "README.md").read_text().splitlines()[:16]
    commands = [line.split("#")[0].strip() for line in first_screen if line.startswith("make ")]
    assert commands == ["make serve", "make test"]


def test_the_differences_from_wcs_list_every_rest_method() -> None:
    from aiohttp import web

    from streamsnap.web.openapi import add_openapi_route
    from streamsnap.web.rest import add_rest_routes
    from streamsnap.web.rtsp_rest import add_rtsp_routes

    app = web.Application()
    add_rest_routes(app)
    add_rtsp_routes(app)
    add_openapi_route(app)
    methods = {resource.canonical.removeprefix("/rest-api/") for resource in app.router.resources()}
    page = (ROOT / "docs" / "wcs-differences.md").read_text()
    rest = page.split("\n## REST", 1)[1].split("\n## ", 1)[0]
    [rest_line] = [item for item in rest.split("\n- ") if item.startswith("Only these methods exist")]
    listed = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)?(?:\.json)?)`", rest_line))
    assert methods == {"stream/find_all", "stream/find", "stream/terminate", "stream/snapshot", "rtsp/startup",
                       "rtsp/find_all", "rtsp/terminate", "openapi.json"}
    assert methods <= listed, sorted(methods - listed)
