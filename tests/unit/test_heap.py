"""The heap keeper: live streams' objects leave the collector's full passes; ended streams' cycles are collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streamsnap.media.source import LocalSources
from streamsnap.server import heap
from streamsnap.server.heap import HeapKeeper

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


class Held:
    """Stands for a source in LocalSources (only its name is read)."""

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_of_a_started_stream_leave_full_passes_and_ended_streams_are_collected(thawed: None) -> None:
    clock = Clock()
    sources = LocalSources()
    keeper = HeapKeeper(sources, clock=clock)
    keeper.check()
    assert gc.get_freeze_count() == 0  # nothing started: nothing frozen

    stream = Cycle()
    sources.add("lease-1", Held("s1"))  # type: ignore[arg-type]
    keeper.check()
    assert keeper.freezes == 1 and gc.get_freeze_count() > 0
    gone = weakref.ref(stream)
    del stream
    gc.collect()
    assert gone() is not None  # frozen: not even a full collection frees it

    sources.remove("s1", "lease-1")
    clock.now += 1.0
    keeper.check()  # too soon after the last full pass: the collection waits
    assert gone() is not None and keeper.full_passes == 0
    clock.now += heap.FULL_PASS_INTERVAL
    keeper.check()
    assert gone() is None  # the ended stream's cycle is collected
    assert keeper.full_passes == 1


def test_the_keeper_is_on_by_default_and_can_be_turned_off() -> None:
    from streamsnap.config import Settings

    assert Settings().node.gc_freeze is True
    assert Settings().replace(gc_freeze=False).node.gc_freeze is False
