"""A node stops even when one of its live tasks loses a cancellation (a Redis call
completing as it is cancelled swallows it): the stop asks again until the task ends.
Seen as a two-node test hanging in its teardown about one time in eight."""

from __future__ import annotations

import asyncio

from signaling.live.event import _cancel_and_wait


async def test_a_task_that_swallows_its_cancellation_is_stopped_all_the_same() -> None:
    swallowed = 0

    async def heartbeat() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a call that completed at that moment would

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel_and_wait(task), 2)
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_had_failed_does_not_stop_the_stop() -> None:
    async def failing() -> None:
        raise RuntimeError("Redis went away")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel_and_wait(task), 2)
    assert isinstance(task.exception(), RuntimeError)
