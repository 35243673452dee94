"""Stopping asyncio tasks: the one way streamsnap cancels a task and waits for it to be gone."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel `tasks` (None and finished ones are skipped) and wait until each has ended.

    A task that ends with an error has its error dropped: it is being stopped, and whoever
    started it logs failures as they happen. The caller's own cancellation still propagates.
    """
    running = [task for task in tasks if task is not None and task is not asyncio.current_task()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)
