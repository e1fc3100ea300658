"""Folder source: every image in a folder, in sorted order, then (with watch) each new one, exactly once.

- A file is read only once its size and modification time have not changed for `settle_s`
  (files older than that are read at once), so a file still being written is not read half-done.
  Writers that can should still write to a hidden or non-image name (".part.png", "x.tmp") and
  rename: such names are never read, and a rename is atomic.
- Each file name is scored once per run; rewriting a file that was already scored does not score it
  again. (A name that leaves the folder and comes back later is a new file, and is scored.)
- An unreadable file (zero bytes, corrupt, vanished) becomes a frame with an error, never a crash.
- Only the folder's own files are read (not sub-folders); image types: inspector.images.IMAGE_EXTS.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from ..errors import ImageError, InspectorError
from ..images import IMAGE_EXTS, read_image
from .jsonlog import log
from .sources import EndOfSource, Frame, Source


class FolderSource(Source):
    kind = "folder"
    lossless = True

    def __init__(self, folder: str | Path, watch: bool = False, settle_s: float = 0.5, poll_s: float = 0.2):
        super().__init__()
        self.folder = Path(folder)
        self.watch = watch
        self.settle_s = settle_s
        self.poll_s = poll_s
        self._seen: set[str] = set()  # names queued or read
        self._pending: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (size, mtime_ns), since
        self._ready: deque[str] = deque()
        self._scanned = False
        self._last_scan = 0.0

    def open(self) -> None:
        if not self.folder.exists():
            raise InspectorError(f"{self.folder}: no such folder")
        if not self.folder.is_dir():
            raise InspectorError(f"{self.folder}: not a folder")
        self.state = "up"

    def _scan(self) -> None:
        now = time.time()
        self._last_scan = time.monotonic()
        stable: list[str] = []
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            if not self.watch:
                raise InspectorError(f"{self.folder}: cannot list the folder ({exc.strerror or exc})") from None
            if self.state != "down":  # a watched folder on a share that blinks: retry at the next poll
                log.warning("folder_unavailable", folder=str(self.folder), error=exc.strerror or str(exc))
            self.state = "down"
            return
        if self.state == "down":
            log.info("folder_available", folder=str(self.folder))
        self.state = "up"
        if self.watch:  # forget files that have gone (moved away downstream): memory stays bounded by the folder
            self._seen.intersection_update(e.name for e in entries)
        for entry in entries:
            name = entry.name
            if name in self._seen or name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTS:
                continue
            if self._scanned and not self.watch:
                if name not in self._pending:
                    continue  # without watch, only the files that were there at the start
            try:
                st = entry.stat()
                if not entry.is_file():
                    continue
            except FileNotFoundError:
                self._pending.pop(name, None)
                continue
            sig = (st.st_size, st.st_mtime_ns)
            old = self._pending.get(name)
            if now - st.st_mtime >= self.settle_s:
                stable.append(name)  # untouched for settle_s already
            elif old is None or old[0] != sig:
                self._pending[name] = (sig, now)  # new or still changing: (re)start its clock
            elif now - old[1] >= self.settle_s:
                stable.append(name)
        for name in sorted(stable):
            self._pending.pop(name, None)
            self._seen.add(name)
            self._ready.append(name)
        self._scanned = True

    def next(self, timeout: float) -> Frame | None:
        if not self._ready:
            if self._scanned and not self.watch and not self._pending:
                self.state = "ended"
                raise EndOfSource(str(self.folder))
            wait = self.poll_s - (time.monotonic() - self._last_scan) if self._scanned else 0.0
            if wait > 0:
                time.sleep(min(wait, timeout))
                if time.monotonic() - self._last_scan < self.poll_s:
                    return None
            self._scan()
            if not self._ready:
                return None
        name = self._ready.popleft()
        t0 = time.perf_counter()
        ts = time.time()
        try:
            image, error = read_image(self.folder / name), None
        except ImageError as exc:
            image, error = None, str(exc)
        return Frame(frame_id=name, capture_ts=ts, image=image, error=error, read_ms=(time.perf_counter() - t0) * 1e3)
