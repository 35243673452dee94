"""Keeps the garbage collector's full passes from stalling the event loop that receives media.

CPython's cyclic collector now and then walks every object the process holds (a "full" pass,
when a quarter more objects have survived since the last one). With tens of live streams that
is hundreds of thousands of objects and 50-100 ms with the GIL held: every packet, keepalive
and request waits, and requests refused during it are no longer refused fast. The objects of a
live stream live as long as the stream, so once a stream has started they are moved out of the
collector's view (`gc.freeze()`), and full passes only walk what is young. When streams end, their
objects are given back to the collector and collected at once (one full pass, at most every
`FULL_PASS_INTERVAL` seconds), so that the cycles an ended stream leaves do not stay.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from streamsnap.media.source import LocalSources

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
"Seconds between looks at the streams held."
FULL_PASS_INTERVAL = 10.0
"Seconds at least between two full collections made for ended streams."


class HeapKeeper:
    """Freezes the objects of streams that started; collects after streams ended."""

    def __init__(self, sources: LocalSources, clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = sources
        self._clock = clock
        self._seen = (sources.added, sources.removed)
        self._ended_pending = False
        self._last_full = clock()
        self.freezes = 0
        "Times the live objects were frozen."
        self.full_passes = 0
        "Full collections made for ended streams."

    def check(self) -> None:
        """Freeze after streams started; collect (then freeze again) after streams ended."""
        added, removed = self.sources.added, self.sources.removed
        started, ended = added != self._seen[0], removed != self._seen[1]
        self._seen = (added, removed)
        self._ended_pending |= ended
        if self._ended_pending and self._clock() - self._last_full >= FULL_PASS_INTERVAL:
            began = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._ended_pending = False
            self._last_full = self._clock()
            self.full_passes += 1
            self.freezes += 1
            logger.debug("full collection after streams ended: %.1f ms", (time.perf_counter() - began) * 1000)
        elif started:
            gc.collect(1)  # the young garbage first: frozen, it would wait for the next full pass
            gc.freeze()
            self.freezes += 1

    async def run(self) -> None:
        """Check every `CHECK_INTERVAL` seconds until cancelled; give every object back when stopped."""
        try:
            while True:
                await asyncio.sleep(CHECK_INTERVAL)
                self.check()
        finally:
            gc.unfreeze()
