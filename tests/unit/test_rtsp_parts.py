"""The pure parts of camera pulls: urls without credentials, url checks, the host allow-list, log redaction."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote

import pytest

from streamsnap.config import Camera
from streamsnap.credentials import public_url, redact
from streamsnap.media.h264 import annexb_parameter_sets
from streamsnap.media.rtsp import redirect_target, relay_uri
from streamsnap.reasons import PublishError, SnapshotFailure, StreamEnd
from streamsnap.service.cameras import HostPolicy, check_uri, is_camera_url, picture_failure, pull_transport
from streamsnap.web.errors import STATUS
from streamsnap.web.wcs import SNAPSHOT_INFO, STREAM_END_INFO

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("uri, shown", [
    ("rtsp://user:pw@cam.example:554/live?x=1", "rtsp://cam.example:554/live?x=1"),
    ("rtsp://user@10.0.0.5/a", "rtsp://10.0.0.5/a"),
    ("rtsp://u:p@[fe80::1]:8554/a", "rtsp://[fe80::1]:8554/a"),
    ("rtsp://cam.example/a", "rtsp://cam.example/a"),
    ("rtsp://u:p%40x@h/a", "rtsp://h/a"),
    ("rtsp://h/cam?user=admin&password=pw&channel=1", "rtsp://h/cam?channel=1"),
    ("rtsp://h/cam?channel=1&PassWord=pw&%75ser=admin", "rtsp://h/cam?channel=1"),
    ("rtsp://a:b@h/cam?token=t", "rtsp://h/cam"),
])
def test_public_url_drops_the_credentials(uri: str, shown: str) -> None:
    assert public_url(uri) == shown


@pytest.mark.parametrize("uri", ["http://cam/a", "rtsp://", "rtsp:///path", "rtsp://h:99999/a", "rtsp://h:0/a",
                                 "rtsp://h/a b", "rtsp://h/\x00", "rtsp://" + "a" * 3000, "cam-1"])
def test_bad_camera_urls_are_refused_without_echoing_them(uri: str) -> None:
    with pytest.raises(PublishError) as refused:
        check_uri(uri)
    assert refused.value.reason is StreamEnd.BAD_SOURCE_URI
    assert uri not in str(refused.value) or len(uri) < 8


def test_ffmpeg_is_given_the_relay_with_the_credentials_path_and_query() -> None:
    assert relay_uri("rtsp://u:p%40x@cam.example:8554/live/1?sub=2", 40001) == \
        "rtsp://u:p%40x@127.0.0.1:40001/live/1?sub=2"
    assert relay_uri("rtsp://[fe80::1]/a", 40001) == "rtsp://127.0.0.1:40001/a"
    assert relay_uri("rtsp://cam", 40001) == "rtsp://127.0.0.1:40001/"


@pytest.mark.parametrize("uri, location, target", [
    ("rtsp://u:p@cam/a", "/b", "rtsp://u:p@cam/b"),  # relative: same host, credentials kept
    ("rtsp://u:p@cam/a", "rtsp://cam:8554/b", "rtsp://u:p@cam:8554/b"),
    ("rtsp://u:p@cam/a", "rtsp://other/b", "rtsp://other/b"),  # another host never gets them
    ("rtsp://cam/a", "rtsp://x:y@other/b", "rtsp://other/b"),  # nor credentials a camera names
    ("rtsps://u:p@cam/a", "/b", "rtsps://u:p@cam/b"),  # TLS stays TLS
    ("rtsps://cam/a", "RTSPS://other:8322/b", "rtsps://other:8322/b"),
])
def test_redirect_targets(uri: str, location: str, target: str) -> None:
    assert redirect_target(uri, location) == target


@pytest.mark.parametrize("location", ["http://cam/b", "rtsp://cam:99999/b", "file:///etc/passwd", "rtsp://:554/b"])
def test_redirects_to_what_is_not_an_rtsp_url_are_refused(location: str) -> None:
    with pytest.raises(PublishError) as refused:
        redirect_target("rtsp://cam/a", location)
    assert refused.value.reason is StreamEnd.BAD_SOURCE_URI


@pytest.mark.parametrize("uri, location", [
    ("rtsps://cam/a", "rtsp://cam/b"),  # an rtsps:// camera never leads to plain RTSP
    ("rtsp://cam/a", "rtsps://cam/b"),  # nor plain RTSP to a TLS camera the pull was not set up for
])
def test_redirects_keep_the_scheme(uri: str, location: str) -> None:
    with pytest.raises(PublishError) as refused:
        redirect_target(uri, location)
    assert refused.value.reason is StreamEnd.BAD_SOURCE_URI


@pytest.mark.parametrize("name, camera", [
    ("rtsp://cam/a", True), ("RTSPS://cam/a", True), ("rtspx://cam/a", False), ("lobby", False),
    ("rtsp:/cam", False), ("http://cam/a", False),
])
def test_camera_url_names(name: str, camera: bool) -> None:
    assert is_camera_url(name) is camera


def test_rtsps_is_pulled_over_tcp() -> None:
    assert pull_transport("rtsps://cam/a", None, "udp") == "tcp"
    assert pull_transport("rtsp://cam/a", None, "udp") == "udp"
    with pytest.raises(PublishError) as refused:
        pull_transport("rtsps://cam/a", "udp", "tcp")
    assert refused.value.reason is StreamEnd.BAD_SOURCE_URI
    with pytest.raises(ValueError, match="tcp"):
        Camera(name="gate", uri="rtsps://cam/a", transport="udp")


def test_good_camera_url() -> None:
    assert check_uri("rtsp://u:p@cam.example:8554/stream1").hostname == "cam.example"


async def test_host_policy() -> None:
    closed = HostPolicy([])  # the default: nothing but [[cameras]], refused before any look-up
    assert closed.closed
    with pytest.raises(PublishError) as refused:
        await closed.check("anything.example")
    assert refused.value.reason is StreamEnd.SOURCE_NOT_ALLOWED and "rtsp.allowed_hosts" in refused.value.detail
    policy = HostPolicy(["cam.example", "10.1.0.0/16", "127.0.0.1"])
    assert await policy.addresses("10.1.2.3") == [ipaddress.ip_address("10.1.2.3")]
    await policy.check("127.0.0.1")
    await policy.check("[::ffff:10.1.2.3]".strip("[]"))  # IPv4-mapped: checked as the IPv4 address it reaches
    for host in ("10.2.0.1", "192.168.1.1", "::1"):
        with pytest.raises(PublishError) as refused:
            await policy.check(host)
        assert refused.value.reason is StreamEnd.SOURCE_NOT_ALLOWED
        assert "rtsp.allowed_hosts" in refused.value.detail
    with pytest.raises(PublishError) as refused:
        await policy.check("no-such-host.invalid")
    assert refused.value.reason in (StreamEnd.SOURCE_UNREACHABLE, StreamEnd.SOURCE_NOT_ALLOWED)


@pytest.mark.parametrize("address, entries, allowed", [
    ("127.0.0.1", ["0.0.0.0/0"], False),  # a wide range never opens loopback...
    ("127.0.0.1", ["127.0.0.0/8"], True),  # ...an entry inside it does
    ("127.0.0.5", ["127.0.0.1/32"], False),
    ("0.0.0.0", ["0.0.0.0/0"], False),
    ("169.254.169.254", ["0.0.0.0/0"], False),
    ("169.254.169.254", ["169.254.0.0/16"], False),  # link-local listed: the metadata address still is not
    ("169.254.169.254", ["169.254.169.254"], True),
    ("169.254.1.20", ["169.254.0.0/16"], True),
    ("100.100.100.200", ["100.64.0.0/10"], False),
    ("fd00:ec2::254", ["fd00::/8"], False),
    ("fe80::1", ["::/0"], False),
    ("::1", ["::/0"], False),
    ("::1", ["::1"], True),
    ("::ffff:127.0.0.1", ["::/0", "0.0.0.0/0"], False),
    ("::ffff:127.0.0.1", ["::ffff:127.0.0.1"], True),
    ("224.0.0.1", ["0.0.0.0/0"], False),
    ("10.0.0.9", ["0.0.0.0/0"], True),
    ("2001:db8::1", ["::/0"], True),
])
def test_special_addresses_need_an_entry_of_their_own(address: str, entries: list[str], allowed: bool) -> None:
    assert HostPolicy(entries).allows(address, ipaddress.ip_address(address)) is allowed


async def test_listed_names_do_not_open_special_addresses() -> None:
    policy = HostPolicy(["localhost"])
    with pytest.raises(PublishError) as refused:
        await policy.check("localhost")  # resolves to loopback, which needs an entry of its own
    assert refused.value.reason is StreamEnd.SOURCE_NOT_ALLOWED
    assert await HostPolicy(["localhost", "127.0.0.1"]).addresses("localhost") == [ipaddress.ip_address("127.0.0.1")]


def test_credentials_are_taken_out_of_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    assert redact("GET /streams/rtsp%3A%2F%2Fu%3Apw%40h%3A554%2Fcam/snapshot.png") == \
        "GET /streams/rtsp://h:554/cam/snapshot.png"
    assert redact("snapshot of rtsp://u:pw@h/cam and RTSP://a:b@c/d") == "snapshot of rtsp://h/cam and RTSP://c/d"
    assert redact("rtsp://h/path@x") == "rtsp://h/path@x"
    assert redact("GET /streams/rtsp%3A%2F%2Fh%2Fcam/snapshot.png") == "GET /streams/rtsp%3A%2F%2Fh%2Fcam/snapshot.png"
    # Issue 22: mixed and repeated encodings, and credentials in the query, are found by parsing each url.
    for written in ("rtsp:%2F%2Fadmin:PW@h/x", "rtsp%253A%252F%252Fadmin%253APW%2540h%252Fx", "RTSP%3A//admin%3APW@h/x",
                    "rtsp://h/x?user=admin&password=PW", "rtsp%3A%2F%2Fh%2Fx%3Fuser%3Dadmin%26password%3DPW"):
        line = redact(f'127.0.0.1 "GET /streams/{written}/snapshot.png HTTP/1.1" 403')
        assert "PW" not in line and "admin" not in line, line
        assert line.endswith(' HTTP/1.1" 403') and ("?" in unquote(written) or "/snapshot.png HTTP" in line)
    from streamsnap.service.cameras import redact_credentials_in_logs
    redact_credentials_in_logs()
    redact_credentials_in_logs()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("picture of %s", "rtsp://u:hunter2@h/cam")
    assert "hunter2" not in caplog.text and "rtsp://h/cam" in caplog.text


def test_avcc_extradata_becomes_annexb() -> None:
    sps, pps = bytes([0x67, 0x42, 0xC0, 0x0D]), bytes([0x68, 0xCE, 0x3C, 0x80])
    avcc = bytes([1, 0x42, 0xC0, 0x0D, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps + b"\x01" + \
        len(pps).to_bytes(2, "big") + pps
    assert annexb_parameter_sets(avcc) == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
    annexb = b"\x00\x00\x00\x01" + sps
    assert annexb_parameter_sets(annexb) == annexb
    assert annexb_parameter_sets(None) == b""


def test_every_reason_has_its_words_and_status() -> None:
    assert set(SNAPSHOT_INFO) == set(SnapshotFailure) == {r for r in STATUS if isinstance(r, SnapshotFailure)}
    assert set(STREAM_END_INFO) == set(StreamEnd)
    for reason in StreamEnd:
        assert picture_failure(reason) in SnapshotFailure
