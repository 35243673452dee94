"""What a picture is asked as, in values every layer shares: its file format, its spec, and the one parser
from a query string (the image url, MJPEG, the cluster hop) to that spec.

Query parameters are checked with msgspec; a bad one raises `BadQuery` naming it and its allowed
range in plain words. Parameters a query does not know are ignored, so cache busters
(`?t=1700000000`, jQuery's `_=`) and dashboards' own tags do no harm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import msgspec

from streamsnap.framing import Fit


class ImageFormat(StrEnum):
    """Image file formats a snapshot can be encoded to."""

    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        """The MIME type of files of this format."""
        return f"image/{self.value}"


EXTENSIONS = {"png": ImageFormat.PNG, "jpg": ImageFormat.JPEG, "jpeg": ImageFormat.JPEG, "webp": ImageFormat.WEBP}
"Extensions of the image url (`.jpeg` is an alias of `.jpg`)."

DEFAULT_QUALITY = {ImageFormat.JPEG: 85, ImageFormat.WEBP: 80}


@dataclass(frozen=True)
class ImageSpec:
    """What file a caller wants of a picture."""

    format: ImageFormat = ImageFormat.PNG
    width: int | None = None
    "Output width; with only one of width/height given, the other keeps the aspect ratio."
    height: int | None = None
    "Output height."
    quality: int | None = None
    "JPEG/WebP quality 1-100 (ignored for PNG); None: the format's default."
    fit: Fit = Fit.FILL
    "How the picture goes into width x height when both are given (`streamsnap.framing`)."


PNG = ImageSpec()
"A PNG at the stream's native size: what the WCS protocol answers with."

MAX_AGE_LIMIT_MS = 3_600_000.0
"The largest `max_age_ms` a query may ask."


class PictureQuery(msgspec.Struct, frozen=True):
    """The query parameters of a picture (all optional)."""

    width: Annotated[int, msgspec.Meta(ge=1)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1)] | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    max_age_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_AGE_LIMIT_MS)] | None = None
    "How old the depicted frame may be (and a picture made for another caller reused)."
    fit: Fit = Fit.FILL
    "With both width and height: fill (stretch, the default), contain (letterbox) or cover (centre crop)."
    fps: Annotated[float, msgspec.Meta(ge=0.1)] | None = None
    "MJPEG only: pictures per second."

    def spec(self, image_format: ImageFormat) -> ImageSpec:
        """The spec asked (`fit` only counts with both sides; quality not for PNG)."""
        both = self.width is not None and self.height is not None
        return ImageSpec(format=image_format, width=self.width, height=self.height,
                         quality=None if image_format is ImageFormat.PNG else self.quality,
                         fit=self.fit if both else Fit.FILL)


@dataclass(frozen=True)
class QueryLimits:
    """The largest values a query may ask (the node's settings)."""

    max_width: int
    max_height: int
    max_fps: float


class BadQuery(Exception):
    """A query parameter is out of range or of the wrong type; `field` names it."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def allowed_values(limits: QueryLimits) -> dict[str, str]:
    """What each query parameter of the picture urls may be, in words (for 400 answers and the docs)."""
    return {
        "width": f"a whole number of pixels from 1 to {limits.max_width}",
        "height": f"a whole number of pixels from 1 to {limits.max_height}",
        "quality": "a whole number from 1 to 100",
        "max_age_ms": f"a number of milliseconds from 0 to {MAX_AGE_LIMIT_MS:.0f}",
        "fit": " or ".join(", ".join(fit.value for fit in Fit).rsplit(", ", 1)),
        "fps": f"a number of frames per second from 0.1 to {limits.max_fps:g}",
    }


_FIELDS = PictureQuery.__struct_fields__


def parse_query(query: Mapping[str, str], limits: QueryLimits) -> PictureQuery:
    """Typed, range-checked picture parameters of `query` (others ignored); raises `BadQuery`."""
    known = {key: value for key, value in query.items() if key in _FIELDS}
    words = allowed_values(limits)
    try:
        parsed = msgspec.convert(known, type=PictureQuery, strict=False)
    except msgspec.ValidationError:
        # Each parameter alone, to name the first one that is wrong (in our words, whatever msgspec says).
        for field, value in known.items():
            try:
                msgspec.convert({field: value}, type=PictureQuery, strict=False)
            except msgspec.ValidationError:
                raise BadQuery(field, f"{field} must be {words[field]}; got {value!r}") from None
        raise BadQuery(None, "bad query parameters") from None
    maxima = {"width": limits.max_width, "height": limits.max_height, "fps": limits.max_fps}
    for field, maximum in maxima.items():
        value = getattr(parsed, field)
        if value is not None and value > maximum:
            raise BadQuery(field, f"{field} must be {words[field]}; got {known[field]!r}")
    return parsed
