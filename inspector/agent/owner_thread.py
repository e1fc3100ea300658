"""A thread that owns a ZeroMQ socket: sockets are not thread-safe, so one thread binds, uses and
closes each. start() waits until the thread has bound (or failed to) and reports the result."""

from __future__ import annotations

import threading


class SocketOwnerThread:
    def __init__(self, name: str):
        self.bound = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> str:
        """Start the thread; returns the endpoint it bound, or raises the error it met while binding."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.bound

    def _set_up(self, bound: str | None = None, error: BaseException | None = None) -> None:
        """Called once by the thread: bound (an endpoint) or error, releasing start()."""
        self.bound, self._error = bound or "", error
        self._ready.set()

    def _run(self) -> None:
        raise NotImplementedError
