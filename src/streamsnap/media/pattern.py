"""A synthetic camera: a moving test pattern whose frame counter can be read back from pixels.

The top quarter of each frame is a row of `COUNTER_BITS` black or white blocks spelling
the frame number in binary (most significant bit first); big blocks survive lossy video
coding. Below it, a colour that changes every second and a bar that sweeps across. The CLI's
`publish --pattern` sends it, and the tests read the counter out of snapshots.
"""

from __future__ import annotations

import fractions

import numpy as np
from aiortc import VideoStreamTrack
from av import VideoFrame
from PIL import Image

COUNTER_BITS = 16
FPS = 30
# One colour per second, cycling: red, green, blue, yellow, magenta, cyan.
SECOND_COLOURS = np.array(
    [[220, 30, 30], [30, 200, 30], [30, 30, 220], [220, 220, 30], [220, 30, 220], [30, 220, 220]],
    dtype=np.uint8,
)


def pattern_frame(counter: int, width: int, height: int) -> np.ndarray:
    """The RGB picture for frame number `counter` (height x width x 3)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    band = height // 4
    image[band:] = SECOND_COLOURS[(counter // FPS) % len(SECOND_COLOURS)]
    bar = max(4, width // 20)
    x = (counter * 4) % max(1, width - bar)
    image[band + band // 2 :, x : x + bar] = 255
    block = width // COUNTER_BITS
    image[:band] = 0
    for bit in range(COUNTER_BITS):
        if counter >> (COUNTER_BITS - 1 - bit) & 1:
            image[:band, bit * block : (bit + 1) * block] = 255
    return image


def read_counter(picture: Image.Image) -> int:
    """The frame number a pattern picture shows (inverse of `pattern_frame`)."""
    pixels = np.asarray(picture.convert("L"), dtype=np.float32)
    height, width = pixels.shape
    band, block = height // 4, width // COUNTER_BITS
    value = 0
    for bit in range(COUNTER_BITS):
        # sample the middle of each block, away from edges the codec smears
        cell = pixels[band // 4 : band * 3 // 4, bit * block + block // 4 : (bit + 1) * block - block // 4]
        value = value << 1 | int(cell.mean() > 128)
    return value


def read_colour(picture: Image.Image) -> tuple[int, int, int]:
    """Mean colour of the area below the counter, left of the sweeping bar's lane."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    height = rgb.shape[0]
    band = height // 4
    area = rgb[band + band // 4 : band + band // 2]
    r, g, b = (int(v) for v in area.reshape(-1, 3).mean(axis=0))
    return r, g, b


class PatternTrack(VideoStreamTrack):
    """An aiortc video track that paints `pattern_frame` at 30 fps."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.counter = 0
        "Number of the frame most recently produced."

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self.counter = int(pts * time_base * FPS)
        frame = VideoFrame.from_ndarray(pattern_frame(self.counter, self.width, self.height), format="rgb24")
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, fractions.Fraction) else fractions.Fraction(time_base)
        return frame
