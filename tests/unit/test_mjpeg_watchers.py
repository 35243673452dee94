"""An MJPEG watcher keeps the newest picture only: a slow one skips pictures, never queues them."""

from __future__ import annotations

import asyncio

import pytest

from streamsnap.media.imaging import ImageFormat, ImageSpec
from streamsnap.media.snapshot import Snapshot
from streamsnap.service.mjpeg import Feed, Watcher
from streamsnap.service.snapshots import Picture

pytestmark = pytest.mark.unit


def picture(number: int) -> Picture:
    return Picture("cam", Snapshot(bytes([number]), ImageFormat.JPEG, 1, 1, float(number)), 0.0, "node")


async def test_latest_wins_and_nothing_queues() -> None:
    watcher = Watcher(Feed("cam", ImageSpec(ImageFormat.JPEG)), fps=5)
    for number in range(1, 4):
        watcher.offer(picture(number))
    taken = await asyncio.wait_for(watcher.next_picture(), 1)
    assert taken is not None and taken.snapshot.data == bytes([3])
    assert watcher.dropped == 2
    waiting = asyncio.ensure_future(watcher.next_picture())
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing left: it waits for the next picture
    watcher.offer(picture(4))
    assert (await asyncio.wait_for(waiting, 1)) is not None


async def test_a_finished_feed_ends_its_watchers_after_the_last_picture() -> None:
    watcher = Watcher(Feed("cam", ImageSpec(ImageFormat.JPEG)), fps=5)
    watcher.offer(picture(1))
    watcher.finish()
    assert (await asyncio.wait_for(watcher.next_picture(), 1)) is not None
    assert (await asyncio.wait_for(watcher.next_picture(), 1)) is None
