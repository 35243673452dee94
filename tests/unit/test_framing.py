"""The fit geometry the server and the `snapshot` command share: scale, crop, pad as numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.framing import Fit, Framing, framing

pytestmark = pytest.mark.unit


def test_fill_stretches_to_the_box() -> None:
    assert framing((640, 480), 480, 240, Fit.FILL) == Framing((480, 240), (480, 240), (0, 0), (0, 0))


def test_contain_letterboxes_in_the_middle() -> None:
    placed = framing((640, 480), 480, 240, Fit.CONTAIN)
    assert placed == Framing((480, 240), (320, 240), (0, 0), (80, 0))
    assert placed.kept == (320, 240)
    assert framing((640, 480), 320, 320, Fit.CONTAIN).offset == (0, 40)


def test_cover_crops_the_centre() -> None:
    placed = framing((640, 480), 480, 240, Fit.COVER)
    assert placed == Framing((480, 240), (480, 360), (0, 60), (0, 0))
    assert placed.kept == (480, 240)
    assert framing((640, 480), 320, 320, Fit.COVER) == Framing((320, 320), (427, 320), (53, 0), (0, 0))


@pytest.mark.parametrize("fit", list(Fit))
def test_one_side_keeps_the_aspect_whatever_the_fit(fit: Fit) -> None:
    assert framing((640, 480), 320, None, fit).size == (320, 240)
    assert framing((640, 480), None, 120, fit).size == (160, 120)
    assert framing((640, 480), None, None, fit).is_plain_scale


@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 4000),
       st.sampled_from(list(Fit)))
def test_the_kept_part_always_fits_the_box(native_w: int, native_h: int, box_w: int, box_h: int, fit: Fit) -> None:
    placed = framing((native_w, native_h), box_w, box_h, fit)
    assert placed.size == (box_w, box_h)
    kept_w, kept_h = placed.kept
    left, top = placed.crop
    x, y = placed.offset
    assert 1 <= kept_w <= box_w and 1 <= kept_h <= box_h
    assert left + kept_w <= placed.scaled[0] and top + kept_h <= placed.scaled[1]
    assert x + kept_w <= box_w and y + kept_h <= box_h
    if fit is Fit.COVER:
        assert placed.kept == placed.size and placed.offset == (0, 0)
    if fit is Fit.CONTAIN:
        assert placed.crop == (0, 0) and (kept_w == box_w or kept_h == box_h)


def test_the_fit_crosses_the_node_to_node_hop() -> None:
    from urllib.parse import parse_qsl, urlsplit

    from streamsnap.cluster.wire import picture_path, read_picture_query
    from streamsnap.media.imaging import ImageFormat, ImageSpec
    from streamsnap.picture import QueryLimits
    from streamsnap.streams import SourceKind, StreamRecord

    record = StreamRecord(name="cam", media_session_id="m", node="other", kind=SourceKind.WEBRTC, lease="l1")
    spec = ImageSpec(ImageFormat.JPEG, 320, 320, quality=70, fit=Fit.COVER)
    path = picture_path(record, spec, 250.0)
    asked = read_picture_query(dict(parse_qsl(urlsplit(path).query)), QueryLimits(3840, 2160, 10))
    assert (asked.lease, asked.spec, asked.max_age_ms) == ("l1", spec, 250.0)
    assert "fit" not in picture_path(record, ImageSpec(ImageFormat.JPEG, 320, 320), None)
