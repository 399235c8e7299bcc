"""runtime.BackgroundTasks: held until done, cancelled in start order, failures
handed to the owner (the cluster node, the fault injector, the node runs of a
scenario, the stream worker's deliveries and the queue node's client spawns all keep
their fire-and-forget tasks in one)."""

from __future__ import annotations

import asyncio

from runtime import BackgroundTasks


async def test_a_task_is_held_until_done_then_forgotten() -> None:
    tasks = BackgroundTasks()
    gate = asyncio.Event()
    task = tasks.spawn(gate.wait(), name="waiting")
    await asyncio.sleep(0)
    assert task.get_name() == "waiting"
    assert len(tasks) == 1 and not task.done()
    gate.set()
    assert await task is True
    await asyncio.sleep(0)  # the done callback runs on the next loop pass
    assert len(tasks) == 0


async def test_cancel_stops_every_task_in_the_order_they_were_started() -> None:
    tasks = BackgroundTasks()
    stopped: list[int] = []

    async def wait_forever(n: int) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(n)

    for n in range(20):
        tasks.spawn(wait_forever(n))
    await asyncio.sleep(0)
    await tasks.cancel_and_wait()
    assert stopped == list(range(20)) and len(tasks) == 0


async def test_a_failure_goes_to_the_owner_and_a_cancellation_does_not() -> None:
    failures: list[BaseException] = []
    tasks = BackgroundTasks(on_failure=failures.append)

    async def fail() -> None:
        raise ValueError("boom")

    tasks.spawn(fail())
    tasks.spawn(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await tasks.cancel_and_wait()
    assert [str(exc) for exc in failures] == ["boom"]
