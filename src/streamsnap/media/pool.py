"""The snapshot engine's worker threads: earliest deadline first, work of departed callers skipped.

`concurrent.futures.ThreadPoolExecutor` runs jobs in arrival order and runs a job whose caller
has gone (its asyncio future is cancelled, but the executor's work item is already queued). Under
overload both waste the CPU that is short: here the job whose picture is due soonest runs first,
and a job whose caller has gone is dropped before it starts.

The threads run at a lower scheduling priority than the event loop's thread (nice +10 on Linux):
on a core they share, the loop that receives media runs first, and pictures get what is left.
The pool's measured rate then shrinks as media takes more, and admission follows it.

Threads rather than processes: decoding (FFmpeg) and PNG encoding (libpng, zlib) release the GIL,
so threads use both cores, share decoded pictures between encodes without copying them, and
return the file without pickling it (measured in `bench/pool.py`, see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

WORKER_NICENESS = 10
"""How much lower the workers' priority is than the event loop's (Linux per-thread nice; 10: about a
tenth of a shared core when the loop wants it all)."""


@dataclass(frozen=True)
class Ran(Generic[_T]):
    """A job's result and what it cost."""

    value: _T
    cpu_seconds: float
    "CPU time of the worker thread while it ran the job (not inflated by a busy machine or GIL waits)."
    wall_seconds: float
    "Time from start to end in the worker (what the pool's throughput is made of)."


@dataclass(order=True)
class _Job:
    deadline: float
    order: int
    function: Callable[..., Any] = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    future: asyncio.Future[Ran[Any]] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


@dataclass
class PoolStats:
    """What the pool did (read by the engine's metrics)."""

    jobs: int = 0
    "Jobs run."
    skipped: int = 0
    "Jobs dropped before they started because their caller had gone."
    queued: int = 0
    "Jobs waiting for a thread now."
    running: int = 0
    "Jobs running now."


class WorkerPool:
    """`workers` threads running blocking jobs, the earliest deadline first."""

    def __init__(self, workers: int, name: str = "snapshot") -> None:
        self.workers = workers
        self.stats = PoolStats()
        self._heap: list[_Job] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{k}", daemon=True) for k in range(workers)]
        for thread in self._threads:
            thread.start()

    async def run(self, deadline: float, function: Callable[..., _T], *args: Any) -> Ran[_T]:
        """Run `function(*args)` in a worker, ahead of jobs with later deadlines; cancelling the caller
        before the job starts drops it."""
        loop = asyncio.get_running_loop()
        job = _Job(deadline, next(self._order), function, args, loop, loop.create_future())
        with self._ready:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            heapq.heappush(self._heap, job)
            self.stats.queued = len(self._heap)
            self._ready.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True  # read by the worker before it starts the job
            raise

    def close(self) -> None:
        """Stop the threads once the running jobs end; queued jobs are dropped (their callers are gone)."""
        with self._ready:
            self._closed = True
            dropped, self._heap = self._heap, []
            self.stats.queued = 0
            self._ready.notify_all()
        for job in dropped:
            _call_soon(job, _fail, job.future, RuntimeError("the worker pool is closed"))

    def _work(self) -> None:
        _lower_priority()
        while True:
            with self._ready:
                while not self._heap and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
                self.stats.queued = len(self._heap)
                # Cancelling the caller cancels the future it awaits at once (the flag follows when
                # the caller next runs); reading its state from here is a benign race either way.
                if job.cancelled or job.future.cancelled():
                    self.stats.skipped += 1
                    continue
                self.stats.running += 1
            try:
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    value = job.function(*job.args)
                except BaseException as exc:  # handed to the caller, like an executor does
                    _call_soon(job, _fail, job.future, exc)
                else:
                    ran = Ran(value, time.thread_time() - cpu, time.perf_counter() - wall)
                    _call_soon(job, _succeed, job.future, ran)
            finally:
                with self._ready:
                    self.stats.running -= 1
                    self.stats.jobs += 1


def _lower_priority() -> None:
    """Make the calling thread yield its core to the event loop's thread."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: equal priority then
        logger.debug("worker priority unchanged: %s", exc)


def _call_soon(job: _Job, callback: Callable[..., None], *args: Any) -> None:
    try:
        job.loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop closed while the job ran: nobody waits any more
        logger.debug("worker result dropped: the event loop is closed")


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
