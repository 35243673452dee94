"""What `snapshot` makes of the server's PNG: format by name or flag, size, fit, quality."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from streamsnap.cli.imagefile import Conversion, FileFormat, Fit, convert, format_for

pytestmark = pytest.mark.unit

RED, BLUE = (220, 30, 30), (30, 30, 220)


def two_halves(width: int = 320, height: int = 240, noise: int = 0) -> bytes:
    """A PNG red on its left half, blue on its right (with +-`noise` of grain, which lossy coding shows)."""
    pixels = np.empty((height, width, 3), dtype=np.int16)
    pixels[:, : width // 2], pixels[:, width // 2 :] = RED, BLUE
    if noise:
        pixels += np.random.default_rng(7).integers(-noise, noise + 1, pixels.shape, dtype=np.int16)
    pixels = pixels.clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("output, given, expected", [
    ("a.png", None, FileFormat.PNG), ("a.JPG", None, FileFormat.JPG), ("dir.x/a.jpeg", None, FileFormat.JPG),
    ("a.webp", None, FileFormat.WEBP), ("-", None, FileFormat.PNG), ("-", FileFormat.WEBP, FileFormat.WEBP),
    ("a.png", FileFormat.JPG, FileFormat.JPG), ("noext", FileFormat.PNG, FileFormat.PNG),
])
def test_format_from_the_name_or_the_flag(output: str, given: FileFormat | None, expected: FileFormat) -> None:
    assert format_for(output, given) is expected


@pytest.mark.parametrize("output", ["a.gif", "picture", "a.png.bak"])
def test_a_name_without_an_image_extension_is_refused(output: str) -> None:
    with pytest.raises(ValueError, match="--format"):
        format_for(output, None)


def test_nothing_asked_writes_the_servers_png_untouched() -> None:
    png = two_halves()
    assert convert(png, Conversion()) == (png, (320, 240))


@pytest.mark.parametrize("file_format, pillow", [(FileFormat.JPG, "JPEG"), (FileFormat.WEBP, "WEBP")])
def test_lossy_formats_and_quality(file_format: FileFormat, pillow: str) -> None:
    png = two_halves(noise=20)
    low, size = convert(png, Conversion(file_format, quality=10))
    high, _ = convert(png, Conversion(file_format, quality=95))
    assert size == (320, 240) and opened(low).format == pillow
    assert len(low) < len(high)
    pixels = np.asarray(opened(high).convert("RGB"), dtype=np.float32)
    assert np.abs(pixels[120, 40] - RED).max() < 30 and np.abs(pixels[120, 280] - BLUE).max() < 30


@pytest.mark.parametrize("width, height, size", [(160, None, (160, 120)), (None, 60, (80, 60)),
                                                 (100, 100, (100, 100))])
def test_one_side_keeps_the_aspect_both_sides_are_exact(width: int | None, height: int | None,
                                                        size: tuple[int, int]) -> None:
    data, reported = convert(two_halves(), Conversion(FileFormat.PNG, width, height))
    assert reported == size == opened(data).size


def columns(data: bytes) -> np.ndarray:
    """Mean colour of each column of the middle row band."""
    pixels = np.asarray(opened(data).convert("RGB"), dtype=np.float32)
    return pixels[pixels.shape[0] // 2 - 2 : pixels.shape[0] // 2 + 2].mean(axis=0)


def test_contain_letterboxes_cover_crops_fill_stretches() -> None:
    png = two_halves(320, 160)  # 2:1 into a 100x100 box
    contain, _ = convert(png, Conversion(FileFormat.PNG, 100, 100, Fit.CONTAIN))
    rows = np.asarray(opened(contain).convert("RGB"), dtype=np.float32).mean(axis=(1, 2))
    assert rows[:20].max() < 5 and rows[-20:].max() < 5  # black bars above and below (100x50 picture)
    assert rows[30:70].min() > 60

    cover, _ = convert(png, Conversion(FileFormat.PNG, 100, 100, Fit.COVER))
    fill, _ = convert(png, Conversion(FileFormat.PNG, 100, 100, Fit.FILL))
    for data in (cover, fill):
        assert opened(data).size == (100, 100)
        assert np.asarray(opened(data).convert("RGB"), dtype=np.float32).mean(axis=2).min() > 20  # no bars
    # Both split red|blue in the middle; cover shows the centre half of the width, so its
    # columns next to the edge are as red/blue as fill's (no squeeze, no bar).
    for data in (cover, fill):
        middle = columns(data)
        assert np.abs(middle[5] - RED).max() < 30 and np.abs(middle[94] - BLUE).max() < 30
