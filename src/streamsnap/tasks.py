"""Stopping asyncio tasks: the one way streamsnap cancels a task and waits for it to be gone."""

from __future__ import annotations

import asyncio
from typing import Any

CANCEL_AGAIN_AFTER = 1.0
"""Seconds after which a task still running is cancelled again: a cancellation can be lost (Python 3.11's
`wait_for` drops it when the awaited future finishes at the same moment), and a task that lost it runs on."""


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel `tasks` (None and finished ones are skipped) and wait until each has ended.

    A task that ends with an error has its error dropped: it is being stopped, and whoever
    started it logs failures as they happen. The caller's own cancellation still propagates.
    """
    running = {task for task in tasks if task is not None and task is not asyncio.current_task()}
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=CANCEL_AGAIN_AFTER)
    for stopped in tasks:
        if stopped is not None and stopped.done() and not stopped.cancelled():
            stopped.exception()  # retrieved: nothing is logged as "never retrieved"
