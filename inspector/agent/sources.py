"""Frame sources: what every reader gives the pipeline, and the factory that picks one from a RunConfig.

Two kinds of sources:
- lossless (a folder, a video file): every frame is accepted; when the pipeline is full the
  reader waits (back-pressure), so nothing is skipped;
- live (a camera, a stream URL, a video with `live`): a grabber thread keeps only the newest
  frame, so results are never stale; frames overwritten before the pipeline took them are
  counted as dropped. A live source reconnects with backoff and reports its outages.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .config import RunConfig

# on_event(name, detail, **fields): a source reporting source_down / source_up / source_ended.
EventSink = Callable[..., None]


@dataclass
class Frame:
    frame_id: str  # the file name, or a counter for video and cameras (gaps = frames dropped)
    capture_ts: float  # time.time() when the frame was grabbed or the file was read
    image: np.ndarray | None  # uint8 HxWx3 BGR; None when it could not be read
    error: str | None = None  # why it could not be read (-> an `error` result)
    read_ms: float = 0.0  # reading and decoding


class EndOfSource(Exception):
    """The source has no more frames (end of a folder without --watch, end of a video without --loop)."""


class Source(ABC):
    kind: str = ""
    label: str = ""
    lossless: bool = True

    def __init__(self) -> None:
        self.state = "starting"  # starting | up | down | ended
        self.dropped = 0
        self.reconnects = 0
        self.retry_in_s = 0.0  # live sources while down: the current backoff delay
        self.attempts = 0  # live sources while down: failed attempts in this outage
        self._lock = threading.Lock()

    @abstractmethod
    def open(self) -> None:
        """Check and open the source; raise InspectorError for what can never work (a missing folder)."""

    @abstractmethod
    def next(self, timeout: float) -> Frame | None:
        """The next frame, None if none arrived within `timeout` s, or raise EndOfSource."""

    def close(self) -> None:
        """Stop reading and release the device or file."""

    def info(self) -> dict[str, Any]:
        return {"state": self.state, "dropped": self.dropped, "reconnects": self.reconnects}


def open_source(cfg: RunConfig, on_event: EventSink) -> Source:
    """The source a RunConfig names, opened."""
    if cfg.folder is not None:
        from .folder import FolderSource

        src: Source = FolderSource(cfg.folder, watch=cfg.watch, settle_s=cfg.settle_s, poll_s=cfg.poll_s)
    else:
        from .capture import CaptureSource

        target: int | str = cfg.camera if cfg.camera is not None else cfg.video  # type: ignore[assignment]
        live = cfg.source_kind in ("camera", "stream") or cfg.live
        src = CaptureSource(target, kind=cfg.source_kind, live=live, loop=cfg.loop, fast=cfg.fast,
                            reconnect_min_s=cfg.reconnect_min_s, reconnect_max_s=cfg.reconnect_max_s,
                            on_event=on_event)
    src.label = cfg.source_label
    src.open()
    return src
