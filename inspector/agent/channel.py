"""A bounded FIFO between two pipeline stages, with close (end of stream) and wait-for-room.

Like queue.Queue, plus: close() lets the consumer drain what is left and then get Closed, and
wait_room() lets a live source take its newest frame only once there is room for it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any


class Closed(Exception):
    """The channel is closed and empty."""


class Channel:
    def __init__(self, maxsize: int = 0, name: str = ""):
        self.maxsize = maxsize  # 0 = unbounded
        self.name = name
        self._items: deque[Any] = deque()
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def _full(self) -> bool:
        return self.maxsize > 0 and len(self._items) >= self.maxsize

    def wait_room(self, timeout: float) -> bool:
        """True once there is room for one more item (or at once); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._full() or self._closed, timeout) and not self._full()

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Append, waiting for room; False if it timed out. Putting into a closed channel is a bug."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"channel {self.name}: put after close")
            if not self._cond.wait_for(lambda: not self._full(), timeout):
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; raises TimeoutError after `timeout` s, Closed when closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(self.name)
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Any:
        """The oldest item, or None if there is none right now."""
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
