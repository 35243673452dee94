"""Where a picture goes in a `width` x `height` box: scale, crop and pad, as plain numbers.

One geometry for the server (`media/imaging.py`, which scales with swscale and crops or pads
with numpy in its worker pool) and the `snapshot` command (`cli/imagefile.py`, with Pillow), so a
picture asked with the same size and fit has the same framing whichever made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Fit(StrEnum):
    """How a picture goes into a `width` x `height` box when both are given."""

    FILL = "fill"
    "Stretched to the box (the aspect ratio may change)."
    CONTAIN = "contain"
    "Scaled to fit inside the box, the rest filled black (letterbox)."
    COVER = "cover"
    "Scaled to cover the box, the overflow cropped equally from both sides (centre crop)."


@dataclass(frozen=True)
class Framing:
    """How a picture of some native size becomes the output picture."""

    size: tuple[int, int]
    "Output (width, height)."
    scaled: tuple[int, int]
    "Size the whole picture is scaled to first."
    crop: tuple[int, int]
    "Left and top of the part of the scaled picture kept (cover; else 0, 0)."
    offset: tuple[int, int]
    "Where the kept part is placed in the output (contain's bars; else 0, 0)."

    @property
    def kept(self) -> tuple[int, int]:
        """Size of the part of the scaled picture that is kept."""
        return min(self.scaled[0], self.size[0]), min(self.scaled[1], self.size[1])

    @property
    def is_plain_scale(self) -> bool:
        """Whether scaling alone makes the output (no crop, no bars)."""
        return self.scaled == self.size


def output_size(native: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The output size: native, the box, or one side given and the other keeping the aspect ratio."""
    native_width, native_height = native
    if width and height:
        return width, height
    if width:
        return width, max(1, round(native_height * width / native_width))
    if height:
        return max(1, round(native_width * height / native_height)), height
    return native_width, native_height


def framing(native: tuple[int, int], width: int | None, height: int | None, fit: Fit = Fit.FILL) -> Framing:
    """How a `native`-sized picture becomes the output asked for (`fit` matters only with both sides given)."""
    size = output_size(native, width, height)
    if not (width and height) or fit is Fit.FILL:
        return Framing(size, size, (0, 0), (0, 0))
    box_width, box_height = size
    native_width, native_height = native
    pick = min if fit is Fit.CONTAIN else max
    scale = pick(box_width / native_width, box_height / native_height)
    scaled_width = max(1, round(native_width * scale))
    scaled_height = max(1, round(native_height * scale))
    if fit is Fit.CONTAIN:
        scaled_width, scaled_height = min(scaled_width, box_width), min(scaled_height, box_height)
        offset = ((box_width - scaled_width) // 2, (box_height - scaled_height) // 2)
        return Framing(size, (scaled_width, scaled_height), (0, 0), offset)
    scaled_width, scaled_height = max(scaled_width, box_width), max(scaled_height, box_height)
    crop = ((scaled_width - box_width) // 2, (scaled_height - box_height) // 2)
    return Framing(size, (scaled_width, scaled_height), crop, (0, 0))
