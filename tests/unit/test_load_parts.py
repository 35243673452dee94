"""The parts that keep a loaded server standing, alone: the worker pool's order, the keyframe
cadence, the CPU cost model, the admission bound and the loop-lag monitor."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streamsnap.config import SnapshotSettings
from streamsnap.media.frames import GopCache
from streamsnap.media.looplag import LoopLagMonitor
from streamsnap.media.pool import WorkerPool
from streamsnap.media.snapshot import KeyframeBudget, SnapshotEngine
from streamsnap.reasons import SnapshotError, SnapshotFailure

pytestmark = pytest.mark.unit

VP8_KEY = b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" + b"\x00" * 20
VP8_DELTA = b"\x11\x02\x00" + b"\x00" * 20


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_pool_runs_the_earliest_deadline_first_and_skips_departed_callers() -> None:
    pool = WorkerPool(1)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(pool.run(0.0, gate.wait, 5))
        while pool.stats.running == 0:  # noqa: ASYNC110 -- the worker taking the blocker
            await asyncio.sleep(0.001)
        late = asyncio.ensure_future(pool.run(30.0, ran.append, "late"))
        gone = asyncio.ensure_future(pool.run(10.0, ran.append, "gone"))
        soon = asyncio.ensure_future(pool.run(20.0, ran.append, "soon"))
        await asyncio.sleep(0.01)
        assert pool.stats.queued == 3
        gone.cancel()
        gate.set()
        await asyncio.gather(blocker, late, soon)
        assert ran == ["soon", "late"]
        assert pool.stats.skipped == 1
        result = await pool.run(0.0, sum, [1, 2])
        assert result.value == 3
        assert result.cpu_seconds >= 0 and result.wall_seconds >= 0
        with pytest.raises(ZeroDivisionError):
            await pool.run(0.0, lambda: 1 / 0)
    finally:
        pool.close()
    with pytest.raises(RuntimeError):
        await pool.run(0.0, sum, [])


def test_a_budget_can_be_looked_at_without_spending_it() -> None:
    clock = Clock()
    budget = KeyframeBudget(1.0, clock=clock)
    assert budget.available() and budget.available()
    assert budget.take()
    assert not budget.available()
    clock.now += 1.0
    assert budget.available()


def test_the_publishers_own_keyframe_cadence_is_learned_and_requested_keyframes_are_not_counted() -> None:
    clock = Clock()
    cache = GopCache("VP8", max_frames=1000, max_bytes=1 << 20, clock=clock)
    cache.add(VP8_KEY, 0)
    for _ in range(3):  # a keyframe every 2 s of its own
        clock.now += 2.0
        cache.add(VP8_KEY, 0)
    assert cache.keyframe_interval() == pytest.approx(2.0)
    clock.now += 0.5
    cache.keyframe_asked()
    cache.add(VP8_KEY, 0)  # the answer to the PLI: not the cadence
    assert cache.natural_keyframe_interval == pytest.approx(2.0)
    clock.now += 4.5  # overdue past twice the cadence: it no longer keeps one
    cache.add(VP8_DELTA, 0)
    assert cache.keyframe_interval() is None


def test_a_publisher_that_sends_keyframes_only_when_asked_has_no_cadence() -> None:
    clock = Clock()
    cache = GopCache("VP8", max_frames=1000, max_bytes=1 << 20, clock=clock)
    cache.add(VP8_KEY, 0)
    for _ in range(5):
        clock.now += 1.0
        cache.keyframe_asked()
        cache.add(VP8_KEY, 0)
    assert cache.keyframe_interval() is None

def test_under_load_the_choice_counts_cpu_and_keyframe_traffic() -> None:
    clock = Clock()
    engine = SnapshotEngine(SnapshotSettings(workers=1, keyframe_request_cost_frames=10.0), clock=clock)
    try:
        engine._keyframe_cpu, engine._frame_cpu = 0.002, 0.001
        engine._picture_jobs = 1  # the workers are busy: CPU is what counts
        cache = GopCache("VP8", max_frames=1000, max_bytes=1 << 20, clock=clock)
        cache.add(VP8_KEY, 0)
        # No cadence of its own: a PLI costs a keyframe decode plus a whole keyframe of traffic (10 frames).
        assert engine._cache_is_better(cache, 10, None)
        assert not engine._cache_is_better(cache, 12, None)
        # A spent budget leaves the cached group, whatever it costs.
        budget = KeyframeBudget(1.0, clock=clock)
        budget.take()
        assert engine._cache_is_better(cache, 300, budget)
        # With its own keyframe due any moment, the PLI adds almost no traffic.
        for _ in range(3):
            clock.now += 1.0
            cache.add(VP8_KEY, 0)
        clock.now += 0.95
        assert not engine._cache_is_better(cache, 3, None)
    finally:
        engine.close()


def test_while_idle_a_group_that_decodes_within_a_frame_interval_beats_waiting_for_a_keyframe() -> None:
    # Issue 23: the PLI's keyframe comes at the publisher's next frame slot at the soonest (21.8 ms of the
    # idle picture's 32.5 ms at 30 fps); a group that decodes sooner is the sooner picture, and sends no PLI.
    clock = Clock()
    engine = SnapshotEngine(SnapshotSettings(workers=1, keyframe_request_cost_frames=10.0), clock=clock)
    try:
        engine._keyframe_cpu, engine._frame_cpu = 0.002, 0.001
        cache = GopCache("VP8", max_frames=1000, max_bytes=1 << 20, clock=clock)
        cache.add(VP8_KEY, 0)
        for _ in range(29):  # 30 frames a second
            clock.now += 1 / 30
            cache.add(VP8_DELTA, 0)
        assert engine.backlog == 0
        assert engine._cache_is_better(cache, 25, None)  # 26 ms of decoding < 33 ms to the next frame
        assert not engine._cache_is_better(cache, 40, None)  # 41 ms: the keyframe comes first
        engine._picture_jobs = 1  # busy workers: back to CPU alone, where 25 frames lose to a PLI
        assert not engine._cache_is_better(cache, 25, None)
    finally:
        engine.close()


def test_admission_follows_the_measured_capacity() -> None:
    engine = SnapshotEngine(SnapshotSettings(workers=2, deadline_ms=100.0))
    try:
        engine._decode_wall, engine._encode_wall = 0.005, 0.015  # 20 ms a picture: 100 a second on 2 workers
        assert engine.capacity == pytest.approx(100.0)
        engine._admit(joining=False)
        engine._picture_jobs = 9
        engine._admit(joining=False)  # the 10th fits in 100 ms
        engine._picture_jobs = 10
        with pytest.raises(SnapshotError) as refused:
            engine._admit(joining=False)
        assert refused.value.reason is SnapshotFailure.OVERLOADED
        engine._admit(joining=True)  # joining a picture under way adds no decode
        with pytest.raises(SnapshotError):  # but the server's own work is held to half the deadline even so
            engine._admit(joining=True, background=True)
        engine._picture_jobs = 4
        engine._admit(joining=True, background=True)  # 50 ms: within its half
        engine._decode_wall, engine._encode_wall = 0.0025, 0.0075  # measured faster: room again
        engine._admit(joining=False)
        engine._picture_jobs = 0
        engine._decode_wall, engine._encode_wall = 0.5, 1.5  # one picture takes longer than the deadline:
        engine._admit(joining=False)  # an idle pool still takes it
        engine._picture_jobs = 1
        with pytest.raises(SnapshotError):
            engine._admit(joining=False)  # but not a second one
        assert engine.stats.overloaded == 3
    finally:
        engine.close()


async def test_the_loop_lag_monitor_sees_a_blocked_loop() -> None:
    monitor = LoopLagMonitor(interval=0.01, window=0.5)
    task = asyncio.ensure_future(monitor.run())
    try:
        await asyncio.sleep(0.05)
        assert monitor.recent < 0.05
        threading.Event().wait(0.15)  # blocks the loop
        await asyncio.sleep(0.03)
        assert monitor.recent >= 0.1
        assert 0 < monitor.recent_mean < monitor.recent  # one long step among short ones
        assert monitor.largest >= 0.1 and monitor.count > 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
