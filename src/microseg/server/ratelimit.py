"""Login rate limiting: failed logins per user name and per source address, in a window.

A name or address over its budget gets 429 (with Retry-After) for the rest of the window,
even with the right password, so a guesser learns nothing from trying. Memory is bounded:
at most `max_keys` names and addresses are tracked (the oldest are dropped first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginLimiter:
    def __init__(
        self,
        per_name: int = 5,
        per_source: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ):
        self.per_name = per_name
        self.per_source = per_source
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, name: str, source: str) -> float | None:
        """Seconds until `name` from `source` may try again; None when it may now."""
        with self._lock:
            now = self.clock()
            waits = [
                self._wait(key, budget, now)
                for key, budget in (
                    (f"name:{name}", self.per_name),
                    (f"ip:{source}", self.per_source),
                )
            ]
        longest = max(waits)
        return longest if longest > 0 else None

    def failed(self, name: str, source: str) -> None:
        with self._lock:
            now = self.clock()
            for key in (f"name:{name}", f"ip:{source}"):
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name}", None)

    def _wait(self, key: str, budget: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < budget:
            return 0.0
        return times[0] + self.window_s - now
