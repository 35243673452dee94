"""The one cancel-and-wait: every task ends, even one that loses its first cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamsnap.tasks import CANCEL_AGAIN_AFTER, cancel_and_wait

pytestmark = pytest.mark.unit


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a library that drops a cancellation would (3.11's wait_for race)
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(cancel_and_wait(task), 3 * CANCEL_AGAIN_AFTER)
    assert task.cancelled() and swallowed == 1
    assert time.monotonic() - started >= CANCEL_AGAIN_AFTER * 0.9


async def test_finished_failed_and_missing_tasks_are_fine() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.ensure_future(fails())
    done = asyncio.ensure_future(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait(failed, done, None)
    assert failed.done() and done.done()
