"""Image files the `snapshot` command writes: the format named by a file or a flag, size, fit, quality.

The WCS protocol returns a PNG; the command converts it on the client side with Pillow
when another format, size or quality is asked for, and passes it through untouched when not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

from PIL import Image

from streamsnap.framing import Fit, framing

__all__ = ["Conversion", "FileFormat", "Fit", "convert", "format_for"]


class FileFormat(StrEnum):
    """Formats the command can write, by the name `--format` takes."""

    PNG = "png"
    JPG = "jpg"
    WEBP = "webp"


EXTENSIONS = {".png": FileFormat.PNG, ".jpg": FileFormat.JPG, ".jpeg": FileFormat.JPG, ".webp": FileFormat.WEBP}
_PILLOW_NAMES = {FileFormat.PNG: "PNG", FileFormat.JPG: "JPEG", FileFormat.WEBP: "WEBP"}
DEFAULT_QUALITY = {FileFormat.JPG: 85, FileFormat.WEBP: 80}


def format_for(output: str, given: FileFormat | None) -> FileFormat:
    """The format to write to `output` ("-" is stdout): `given`, else the file's extension; ValueError if neither."""
    if given is not None:
        return given
    if output == "-":
        return FileFormat.PNG
    suffix = PurePath(output).suffix.lower()
    if suffix not in EXTENSIONS:
        named = f"the extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"{output}: {named} names no image format; use .png, .jpg, .jpeg or .webp, "
                         "or --format png|jpg|webp")
    return EXTENSIONS[suffix]


@dataclass(frozen=True)
class Conversion:
    """What file to make of the server's PNG."""

    format: FileFormat = FileFormat.PNG
    width: int | None = None
    "Output width; with only one of width/height, the other keeps the aspect ratio."
    height: int | None = None
    fit: Fit = Fit.FILL
    "How the picture goes into width x height when both are given."
    quality: int | None = None
    "JPEG/WebP quality 1-100; None: the format's default. Ignored for PNG."

    @property
    def is_identity(self) -> bool:
        """Whether the server's PNG can be written as it is."""
        return self.format is FileFormat.PNG and self.width is None and self.height is None


def convert(png: bytes, conversion: Conversion) -> tuple[bytes, tuple[int, int]]:
    """The file for `conversion` and its size in pixels (the PNG itself when nothing changes)."""
    image = Image.open(io.BytesIO(png))
    image.load()
    if conversion.is_identity:
        return png, image.size
    picture = _resized(image.convert("RGB"), conversion)
    buffer = io.BytesIO()
    options: dict[str, int] = {}
    if conversion.format is not FileFormat.PNG:
        options["quality"] = conversion.quality or DEFAULT_QUALITY[conversion.format]
    picture.save(buffer, format=_PILLOW_NAMES[conversion.format], **options)
    return buffer.getvalue(), picture.size


def _resized(image: Image.Image, conversion: Conversion) -> Image.Image:
    """Scale, crop and pad as the server does (`streamsnap.framing`), with Pillow's Lanczos filter."""
    if conversion.width is None and conversion.height is None:
        return image
    placed = framing(image.size, conversion.width, conversion.height, conversion.fit)
    scaled = image.resize(placed.scaled, Image.Resampling.LANCZOS)
    if placed.is_plain_scale:
        return scaled
    left, top = placed.crop
    kept_width, kept_height = placed.kept
    output = Image.new("RGB", placed.size, (0, 0, 0))
    output.paste(scaled.crop((left, top, left + kept_width, top + kept_height)), placed.offset)
    return output
