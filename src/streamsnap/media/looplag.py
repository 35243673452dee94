"""How late the event loop that receives media runs: a timer that measures its own lateness.

Packets, keepalives and the RTP watchdog all run on this loop; when it falls behind, media
suffers first. The snapshot engine refuses new pictures while the mean lag of the last second is
above its bound (a sustained lag: one long step, such as parsing a large offer, is not a reason to
refuse pictures for the next second), and `/metrics` shows the largest and the mean
(`streamsnap_event_loop_lag_seconds`, `streamsnap_event_loop_lag_mean_seconds`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class LoopLagMonitor:
    """Wakes every `interval` seconds and records how much later than asked it woke."""

    def __init__(self, interval: float = 0.05, window: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()
        self._window = window
        self.last = 0.0
        "The latest lag measured (seconds)."
        self.largest = 0.0
        "The largest lag measured since start (seconds)."
        self.total = 0.0
        "Lag summed over every sample (seconds; with `count`, the mean)."
        self.count = 0
        "Samples taken."

    @property
    def recent(self) -> float:
        """The largest lag of the last `window` seconds (0 when not running)."""
        self._forget_old()
        return max((lag for _, lag in self._samples), default=0.0)

    @property
    def recent_mean(self) -> float:
        """The mean lag of the samples of the last `window` seconds (0 when not running)."""
        self._forget_old()
        return sum(lag for _, lag in self._samples) / len(self._samples) if self._samples else 0.0

    def _forget_old(self) -> None:
        horizon = self._clock() - self._window
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def record(self, lag: float) -> None:
        """Count one measured lag."""
        lag = max(0.0, lag)
        self._samples.append((self._clock(), lag))
        self.last = lag
        self.largest = max(self.largest, lag)
        self.total += lag
        self.count += 1

    async def run(self) -> None:
        """Measure until cancelled."""
        while True:
            asked = self._clock() + self.interval
            await asyncio.sleep(self.interval)
            self.record(self._clock() - asked)
            self._forget_old()  # keeps the window short when nobody reads it
