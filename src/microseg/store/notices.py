"""Notices that this process has written a change (its state, a device row, a log line).

A change's event streams (the API's progress, the web page's device rows) wake on a notice
as soon as the write is committed, instead of reading the store on a timer. Only writes of
this process are noticed: a run in another process (`microseg change run` in a shell, another
server) is still followed by reading the store every so often.

Each change has a generation, a count of its writes noticed here. A stream remembers the
generation it read the store at and waits for a later one, so a write between its read and
its wait is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ChangeNotices:
    """Generations of changes written by this process, and the streams waiting on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[int, int] = {}
        self._waiting: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def generation(self, change: int) -> int:
        with self._lock:
            return self._generations.get(change, 0)

    def written(self, change: int) -> None:
        """Called after a write of `change` is committed (from any thread)."""
        with self._lock:
            self._generations[change] = self._generations.get(change, 0) + 1
            waiting = list(self._waiting.get(change, ()))
        for loop, event in waiting:
            with contextlib.suppress(RuntimeError):  # that stream's loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, change: int, seen: int, timeout: float) -> int:
        """The generation of `change` once it is past `seen`, or after `timeout` seconds
        whatever it is then (unchanged: nothing was written here meanwhile)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._generations.get(change, 0) != seen:
                return self._generations.get(change, 0)
            self._waiting.setdefault(change, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), timeout)
        finally:
            with self._lock:
                waiters = self._waiting[change]
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[change]
        return self.generation(change)


# One per process: every Store of this process notices its change writes here.
CHANGE_NOTICES = ChangeNotices()
