"""SIGINT / SIGTERM: the first one drains (stop reading, publish what was accepted, exit 0); a second one aborts."""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

from .jsonlog import log

ABORT_EXIT = 130


class StopSignals:
    """Install in the main thread; on_stop(name) is called for the first signal, from the main thread."""

    def __init__(self, on_stop: Callable[[str], None]):
        self.on_stop = on_stop
        self.received: list[str] = []
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) == 1:
            log.info("signal_received", signal=name, action="draining")
            self.on_stop(name)
        else:
            log.warning("signal_received", signal=name, action="abort without draining")
            os._exit(ABORT_EXIT)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
