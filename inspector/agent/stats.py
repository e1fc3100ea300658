"""Counters shared by the pipeline's threads, read by the heartbeat and the status reply."""

from __future__ import annotations

import os
import threading
import time
from collections import deque


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class Stats:
    def __init__(self, window_s: float = 5.0):
        self.started = time.time()
        self.frames_in = 0  # accepted from the source
        self.published = 0
        self.errors = 0
        self.fails = 0
        self.first_capture_ts: float | None = None
        self.last_publish_ts: float | None = None
        self._cpu_first: float | None = None  # process CPU time (all threads) at the first frame ...
        self._cpu_last: float | None = None  # ... and at the last result published
        self._window_s = window_s
        self._times: deque[float] = deque()
        self._first_mono: float | None = None
        self._lock = threading.Lock()

    def accepted(self, capture_ts: float) -> None:
        with self._lock:
            self.frames_in += 1
            if self.first_capture_ts is None:
                self.first_capture_ts = capture_ts
                self._first_mono = time.monotonic()
                self._cpu_first = time.process_time()

    def published_one(self, verdict: str, ts: float) -> None:
        with self._lock:
            self.published += 1
            self.errors += verdict == "error"
            self.fails += verdict == "fail"
            self.last_publish_ts = ts
            self._cpu_last = time.process_time()
            self._times.append(time.monotonic())

    def fps(self) -> float:
        """Results per second over the last window_s (or since the first frame was accepted, if that is sooner)."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] > self._window_s:
                self._times.popleft()
            if not self._times:
                return 0.0
            span = min(self._window_s, now - self._first_mono) if self._first_mono is not None else self._window_s
            return len(self._times) / max(span, 0.5)

    def throughput(self) -> float | None:
        """Results per second from the first frame accepted to the last result published."""
        with self._lock:
            if self.first_capture_ts is None or self.last_publish_ts is None or self.published == 0:
                return None
            return self.published / max(self.last_publish_ts - self.first_capture_ts, 1e-9)

    def cpu_ms_per_frame(self) -> float | None:
        """CPU time of the whole process (every thread) per result, from the first frame to the last result."""
        with self._lock:
            if self._cpu_first is None or self._cpu_last is None or self.published == 0:
                return None
            return (self._cpu_last - self._cpu_first) * 1e3 / self.published
