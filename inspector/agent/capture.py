"""OpenCV capture source: a camera index, a video file, or a stream URL (RTSP, HTTP, ...). One reader class.

Video file (lossless): every frame in order, at the file's native frame rate, or as fast as the
pipeline takes them with `fast`; `loop` starts again at the end. A file that cannot be opened is
a startup error.

Live (a camera, a stream URL, or a video with `live`): a grabber thread reads continuously and
keeps only the newest frame; a frame replaced before the pipeline took it counts as dropped.
When reading fails the grabber reopens once at once (a glitch, or the end of a live file); if
that fails the source is down: a `source_down` event goes out, and it retries after
reconnect_min_s, doubling up to reconnect_max_s, until it reopens (`source_up`, with the outage's
length). A live source that is absent at startup is an outage, not an error: the line PC may
boot before its camera.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2

from ..errors import ImageError, InspectorError
from ..images import to_bgr8
from .sources import EndOfSource, EventSink, Frame, Source

DEFAULT_FPS = 25.0


def quiet_opencv() -> None:
    """OpenCV's own console messages: errors only (outages are reported as events and structured logs)."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


def _fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and 0 < fps < 1000 else DEFAULT_FPS


class CaptureSource(Source):
    def __init__(self, target: int | str, kind: str, live: bool, loop: bool = False, fast: bool = False,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 10.0, on_event: EventSink | None = None):
        super().__init__()
        self.target = target
        self.kind = kind  # camera | stream | video
        self.live = live
        self.lossless = not live
        self.loop = loop
        self.fast = fast
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.on_event = on_event or (lambda *a, **k: None)
        self.fps = DEFAULT_FPS
        self.counter = 0  # frames grabbed, dropped ones included: the frame id
        self._cap: cv2.VideoCapture | None = None
        self._closed = threading.Event()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._grabber: threading.Thread | None = None
        self._t0: float | None = None
        self._played = 0  # frames since (re)opening, for pacing

    # ------------------------------------------------------------------ opening
    def _try_open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            return None
        self.fps = _fps(cap)
        self._t0, self._played = None, 0  # the pacing clock starts at the first frame read
        return cap

    def open(self) -> None:
        quiet_opencv()
        if self.live:
            self._grabber = threading.Thread(target=self._grab_loop, name="grabber", daemon=True)
            self._grabber.start()
            return
        path = Path(str(self.target))
        if self.kind == "video" and not path.is_file():
            raise InspectorError(f"{path}: no such video file" if not path.exists() else f"{path}: not a file")
        self._cap = self._try_open()
        if self._cap is None:
            raise InspectorError(f"{self.target}: cannot open the video (not a format OpenCV can decode, or unreachable)")
        self.state = "up"

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._grabber is not None:
            self._grabber.join(timeout=5)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # ------------------------------------------------------------------ reading one frame
    def _pace(self) -> None:
        """Native frame rate for files (cameras and streams pace themselves)."""
        if self.fast or self.kind in ("camera", "stream"):
            return
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._played / self.fps - time.monotonic()
        if delay > 0:
            self._closed.wait(delay)

    def _read(self, cap: cv2.VideoCapture) -> Frame | None:
        """Grab + decode one frame; None at the end of the stream or on a read failure."""
        self._pace()
        if not cap.grab():
            return None
        ts = time.time()
        t0 = time.perf_counter()
        ok, img = cap.retrieve()
        if not ok or img is None:
            return None
        frame_id = str(self.counter)
        self.counter += 1
        self._played += 1
        try:
            image, error = to_bgr8(img, f"{self.kind} frame {frame_id}"), None
        except ImageError as exc:
            image, error = None, str(exc)
        return Frame(frame_id=frame_id, capture_ts=ts, image=image, error=error, read_ms=(time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ lossless (video file)
    def next(self, timeout: float) -> Frame | None:
        if self.live:
            return self._take(timeout)
        if self._cap is None:
            raise EndOfSource(str(self.target))
        frame = self._read(self._cap)
        if frame is None and self.loop and not self._closed.is_set():
            self._cap.release()
            self._cap = self._try_open()
            frame = self._read(self._cap) if self._cap is not None else None
            if frame is None:
                self.state = "ended"
                raise EndOfSource(f"{self.target}: cannot read a frame after looping")
        if frame is None:
            self.state = "ended"
            raise EndOfSource(str(self.target))
        return frame

    # ------------------------------------------------------------------ live (camera, stream, live video)
    def _take(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._slot is None:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            return frame

    def _put(self, frame: Frame) -> None:
        with self._cond:
            if self._slot is not None:
                self.dropped += 1
            self._slot = frame
            self._cond.notify()

    def _grab_loop(self) -> None:
        delay = self.reconnect_min_s
        down_since = 0.0
        attempts = 0
        cap: cv2.VideoCapture | None = None
        while not self._closed.is_set():
            if cap is None:
                cap = self._try_open()
                if cap is None:
                    attempts += 1
                    self.retry_in_s, self.attempts = delay, attempts
                    if self.state != "down":
                        self.state, down_since = "down", time.time()
                        self.on_event("source_down", f"cannot open {self.kind} {self.target}",
                                      retry_in_s=delay, attempts=attempts)
                    self._closed.wait(delay)
                    delay = min(delay * 2, self.reconnect_max_s)
                    continue
                if self.state == "down":
                    self.reconnects += 1
                    self.on_event("source_up", f"{self.kind} {self.target} is back",
                                  down_s=round(time.time() - down_since, 3), attempts=attempts)
                self.state, delay, attempts = "up", self.reconnect_min_s, 0
                self.retry_in_s, self.attempts = 0.0, 0
            frame = self._read(cap)
            if frame is not None:
                self._put(frame)
                continue
            cap.release()
            cap = self._try_open()  # one immediate reopen: a glitch, or the end of a live file
            if cap is not None and self._read_probe(cap):
                self.reconnects += 1
                continue
            if cap is not None:
                cap.release()
                cap = None
            if self._closed.is_set():
                break
            attempts = 1
            self.retry_in_s, self.attempts = delay, attempts
            self.state, down_since = "down", time.time()
            self.on_event("source_down", f"lost {self.kind} {self.target}", retry_in_s=delay, attempts=attempts)
            self._closed.wait(delay)
            delay = min(delay * 2, self.reconnect_max_s)
        if cap is not None:
            cap.release()

    def _read_probe(self, cap: cv2.VideoCapture) -> bool:
        """After a reopen, the first frame proves the source is really back."""
        frame = self._read(cap)
        if frame is None:
            return False
        self._put(frame)
        return True
