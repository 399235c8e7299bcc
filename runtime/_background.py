"""``BackgroundTasks``: the tasks an owner starts and does not await one by one.

The contract (what an owner may rely on):

- ``spawn`` starts the coroutine as a task and keeps a strong reference to it
  until it is done (asyncio keeps only a weak one: an unreferenced task can be
  collected mid-way), then forgets it.
- The tasks are kept in the order they were started, so ``cancel`` cancels
  them in that order: in a seeded simulation the order of what runs next is
  part of the replay, and a ``set`` would order them by memory address.
- A task that ends with an exception hands it to ``on_failure`` (when given);
  a cancelled one does not. Without ``on_failure`` the exception stays on the
  task, as asyncio leaves it.
- ``cancel`` asks every live task to stop and returns at once;
  ``cancel_and_wait`` also waits until each one has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundTasks:
    """Started tasks held until done, cancelled together (module docstring)."""

    __slots__ = ("_on_failure", "_tasks")

    def __init__(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self._on_failure = on_failure
        self._tasks: dict[asyncio.Task[Any], None] = {}

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task (named ``name``) on the running loop, held until done."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[task] = None
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)
        if self._on_failure is not None and not task.cancelled() \
                and (exc := task.exception()) is not None:
            self._on_failure(exc)

    def cancel(self) -> None:
        """Ask every live task to stop (in the order they were started)."""
        for task in list(self._tasks):
            task.cancel()

    async def cancel_and_wait(self) -> None:
        """Cancel every live task and return once all of them have finished."""
        self.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)
