"""The pipeline: frame -> preprocess -> backend -> decision -> publisher, one way, in threads.

    reader --frames(queue_size)--> batcher --batches--> infer x infer_threads --> decider --> publisher
    (source)                       (ROI, tiles,          (backend.infer)          (reorder, score,
                                    prepare, batch)                                verdict)

- Bounded: the frames queue holds queue_size frames; at most in_flight batches are between the
  batcher and the publisher (a slot is taken before a batch is formed and given back once its
  results are published), so memory is bounded and preprocessing of the next frames overlaps the
  inference of the current ones.
- Micro-batching: the batcher takes the first waiting frame, then whatever else is already
  queued, up to `batch` model inputs; it never waits to fill a batch.
- Order: batches are numbered; the decider releases them in number order, so results keep frame
  order even with several inference threads.
- Backends with an asynchronous API (submit(images) -> ticket, collect(ticket), optionally
  ready(ticket): the TensorRT backend) are kept fed by one inference thread with up to in_flight
  batches submitted at once, so host-device copies and compute of consecutive batches overlap;
  other backends get infer() from infer_threads threads. The pipeline is the same either way.
- Nothing accepted is lost: a frame that cannot be read, tiled or scored becomes an `error`
  result. Stopping closes the source; everything already accepted still flows to the publisher.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..backends.base import Backend
from ..errors import InspectorError
from .channel import Channel, Closed
from .decision import decide
from .jsonlog import log
from .messages import Result
from .publisher import Publisher
from .sources import EndOfSource, Frame, Source
from .stats import Stats
from .tiling import Tile, Tiler


@dataclass
class Job:
    frame: Frame
    accepted: float  # perf_counter when the reader accepted it
    crops: np.ndarray | None = None  # uint8 [k, crop_h, crop_w, 3]
    tiles: list[Tile] = field(default_factory=list)
    roi_hw: tuple[int, int] = (0, 0)
    error: str | None = None
    queue_ms: float = 0.0
    preprocess_ms: float = 0.0

    @property
    def n(self) -> int:
        return 0 if self.crops is None else len(self.crops)


@dataclass
class Batch:
    no: int
    jobs: list[Job]
    x: np.ndarray | None  # all jobs' crops, concatenated; None when every job is an error
    scores: np.ndarray | None = None
    maps: np.ndarray | None = None
    error: str | None = None
    infer_ms: float = 0.0
    done_ts: float = 0.0


POLL_S = 0.002  # async backends: how long to wait for a next batch to submit before waiting on the oldest


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


class Pipeline:
    def __init__(self, source: Source, backend: Backend, tiler: Tiler, threshold: float, publisher: Publisher,
                 stats: Stats, *, batch: int, in_flight: int, infer_threads: int, queue_size: int,
                 max_frames: int | None = None, duration: float | None = None, publish_map: bool = False,
                 station: str = "", source_label: str = ""):
        self.source = source
        self.backend = backend
        self.tiler = tiler
        self.threshold = threshold
        self.publisher = publisher
        self.stats = stats
        self.batch = batch
        self.in_flight = in_flight
        self.max_frames = max_frames
        self.duration = duration
        self.publish_map = publish_map
        self.station = station
        self.source_label = source_label
        self.model_id = backend.meta.model_id
        self.frames = Channel(queue_size, "frames")
        self.batches = Channel(0, "batches")  # bounded by the in-flight slots
        self.decided = Channel(0, "decided")
        self.slots = threading.BoundedSemaphore(in_flight)
        self.batches_out = 0  # batches formed and not yet published
        self.end_reason = ""
        self.failed = ""  # the name of a stage thread that died of a bug (the run then exits non-zero)
        self._stop = threading.Event()
        self._dead = threading.Event()  # a stage died of a bug: the others unwind instead of waiting for it
        self._count_lock = threading.Lock()
        self.async_infer = callable(getattr(backend, "submit", None)) and callable(getattr(backend, "collect", None))
        if self.async_infer:
            infer_threads = 1  # one thread keeps up to in_flight batches submitted
        self._infer_alive = infer_threads
        self._threads = [threading.Thread(target=self._guard, args=(self._read_loop, self.frames), name="reader", daemon=True),
                         threading.Thread(target=self._guard, args=(self._batch_loop, self.batches), name="batcher", daemon=True)]
        self._threads += [threading.Thread(target=self._guard, args=(self._infer_loop, None), name=f"infer{i}", daemon=True)
                          for i in range(infer_threads)]
        self._decider = threading.Thread(target=self._guard, args=(self._decide_loop, None), name="decider", daemon=True)
        self._threads.append(self._decider)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self._t0 = time.monotonic()
        for t in self._threads:
            t.start()

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop accepting frames; what was accepted still drains to the publisher."""
        if not self._stop.is_set():
            self.end_reason = self.end_reason or reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once every accepted frame's result has been handed to the publisher."""
        self._decider.join(timeout)
        return not self._decider.is_alive()

    def queues(self) -> dict[str, int]:
        return {"frames": len(self.frames), "batches": self.batches_out}

    def _guard(self, loop, out: Channel | None) -> None:
        try:
            loop()
        except Exception as exc:  # a bug, not bad input: log it, stop reading, let the rest drain
            name = threading.current_thread().name
            log.error("pipeline_thread_failed", thread=name, error=one_line(exc), exc_info=True)
            self.failed = self.failed or name
            self.request_stop(f"{name} failed: {one_line(exc)}")
            self._dead.set()
        finally:
            if out is not None:
                out.close()

    # ------------------------------------------------------------------ reader
    def _limit_reached(self) -> str | None:
        if self.max_frames is not None and self.stats.frames_in >= self.max_frames:
            return f"max_frames {self.max_frames} reached"
        if self.duration is not None and time.monotonic() - self._t0 >= self.duration:
            return f"duration {self.duration:g} s reached"
        return None

    def _read_loop(self) -> None:
        try:
            while not self._stop.is_set():
                reason = self._limit_reached()
                if reason:
                    self.request_stop(reason)
                    break
                if not self.source.lossless and not self.frames.wait_room(0.1):
                    continue  # live: take the newest frame only once there is room for it
                try:
                    frame = self.source.next(timeout=0.1)
                except EndOfSource:
                    self.request_stop("end of source")
                    break
                if frame is None:
                    continue
                self.stats.accepted(frame.capture_ts)
                job = Job(frame, time.perf_counter())
                while not self.frames.put(job, timeout=0.2):  # waits for room: accepted frames are never dropped
                    if self._dead.is_set():
                        log.error("frame_lost", frame_id=frame.frame_id, reason="the pipeline failed")
                        return
        finally:
            try:
                self.source.close()
            except Exception as exc:
                log.warning("source_close_failed", error=one_line(exc))

    # ------------------------------------------------------------------ batcher (preprocessing)
    def _prepare(self, job: Job) -> Job:
        t0 = time.perf_counter()
        job.queue_ms = (t0 - job.accepted) * 1e3
        if job.frame.error is not None:
            job.error = job.frame.error
        else:
            try:
                job.crops, job.tiles, job.roi_hw = self.tiler.split(job.frame.image)
            except InspectorError as exc:
                job.error = f"{job.frame.frame_id}: {exc}"
            except Exception as exc:  # e.g. an OpenCV error on a strange frame: an error result, not a crash
                job.error = f"{job.frame.frame_id}: preprocessing failed ({one_line(exc)})"
        job.frame.image = None  # the crops are all that is needed from here on
        job.preprocess_ms = (time.perf_counter() - t0) * 1e3
        return job

    def _batch_loop(self) -> None:
        no = 0
        carry: Job | None = None
        while True:
            while not self.slots.acquire(timeout=0.2):
                if self._dead.is_set():
                    log.error("frames_lost", frames=len(self.frames), reason="the pipeline failed")
                    return
            jobs: list[Job] = []
            if carry is not None:
                jobs.append(carry)
                carry = None
            else:
                try:
                    jobs.append(self._prepare(self.frames.get()))
                except Closed:
                    self.slots.release()
                    break
            n = jobs[0].n
            while n < self.batch:
                nxt = self.frames.get_nowait()
                if nxt is None:
                    break
                job = self._prepare(nxt)
                if n + job.n > self.batch and n > 0:
                    carry = job  # it opens the next batch
                    break
                jobs.append(job)
                n += job.n
            crops = [j.crops for j in jobs if j.crops is not None]
            x = crops[0] if len(crops) == 1 else (np.concatenate(crops) if crops else None)
            with self._count_lock:
                self.batches_out += 1
            self.batches.put(Batch(no, jobs, x))
            no += 1

    # ------------------------------------------------------------------ inference
    def _infer_loop(self) -> None:
        try:
            if self.async_infer:
                self._infer_async()
                return
            while True:
                try:
                    b = self.batches.get()
                except Closed:
                    break
                self._infer_sync(b)
        finally:
            with self._count_lock:
                self._infer_alive -= 1
                last = self._infer_alive == 0
            if last:
                self.decided.close()

    def _infer_sync(self, b: Batch) -> None:
        if b.x is not None:
            t0 = time.perf_counter()
            try:
                b.scores, b.maps = self.backend.infer(b.x)
                self._check_outputs(b)
            except Exception as exc:  # an error result for each frame of the batch; carry on
                self._failed_batch(b, exc)
            b.infer_ms = (time.perf_counter() - t0) * 1e3
        b.done_ts = time.time()
        self.decided.put(b)

    def _check_outputs(self, b: Batch) -> None:
        n = len(b.x)
        if b.error is None and (len(b.scores) != n or len(b.maps) != n):
            b.error = f"inference failed (the backend returned {len(b.scores)} scores and {len(b.maps)} maps for {n} inputs)"
            log.error("inference_failed", batch=b.no, frames=len(b.jobs), error=b.error)

    def _failed_batch(self, b: Batch, exc: Exception) -> None:
        b.error = f"inference failed ({one_line(exc)})"
        log.error("inference_failed", batch=b.no, frames=len(b.jobs), error=b.error)

    def _infer_async(self) -> None:
        """submit() each batch as it comes, collect() them oldest first: up to in_flight on the device at once."""
        be = self.backend
        has_ready = callable(getattr(be, "ready", None))
        max_batch = getattr(be, "max_batch", None)
        pending: deque[tuple[Batch, int, float]] = deque()
        closed = False

        def collect() -> None:
            b, ticket, t0 = pending.popleft()
            try:
                b.scores, b.maps = be.collect(ticket)
                self._check_outputs(b)
            except Exception as exc:
                self._failed_batch(b, exc)
            b.infer_ms = (time.perf_counter() - t0) * 1e3
            b.done_ts = time.time()
            self.decided.put(b)

        while True:
            if pending and (closed or len(pending) >= self.in_flight or (has_ready and be.ready(pending[0][1]))):
                collect()
                continue
            if closed:
                break
            try:
                b = self.batches.get(timeout=None if not pending else (POLL_S if has_ready else 0.0))
            except TimeoutError:
                collect()  # nothing new to submit for now: wait for the oldest
                continue
            except Closed:
                closed = True
                continue
            if b.x is None or (max_batch is not None and len(b.x) > max_batch):
                self._infer_sync(b)  # nothing to score, or more tiles than one submit takes (infer() splits)
                continue
            t0 = time.perf_counter()
            try:
                pending.append((b, be.submit(b.x), t0))
            except Exception as exc:
                self._failed_batch(b, exc)
                b.infer_ms = (time.perf_counter() - t0) * 1e3
                b.done_ts = time.time()
                self.decided.put(b)

    # ------------------------------------------------------------------ decision (in order)
    def _decide_loop(self) -> None:
        pending: dict[int, Batch] = {}
        next_no = 0
        while True:
            try:
                b = self.decided.get()
            except Closed:
                break
            pending[b.no] = b
            while next_no in pending:
                ready = pending.pop(next_no)
                self.publisher.send_results(self._results(ready), done=self._published)
                next_no += 1
        if pending:
            log.error("pipeline_lost_batches", batches=sorted(pending))

    def _published(self) -> None:
        with self._count_lock:
            self.batches_out -= 1
        self.slots.release()

    def _results(self, b: Batch) -> list[Result]:
        out = []
        i = 0
        for job in b.jobs:
            k = job.n
            score = None
            amap = None
            max_tile = None
            error = job.error or (b.error if k else None)
            if error is None and k:
                tile_scores = np.asarray(b.scores[i : i + k], dtype=np.float64)
                best = int(np.argmax(tile_scores))
                score = float(tile_scores[best])
                if self.tiler.tiled:
                    max_tile = self.tiler.frame_box(job.tiles[best])
                if self.publish_map:
                    m, origin, cell = self.tiler.stitch(b.maps[i : i + k], job.tiles, job.roi_hw)
                    amap = {"h": int(m.shape[0]), "w": int(m.shape[1]), "origin": origin, "cell": cell,
                            "data": [round(float(v), 6) for v in m.ravel()]}
            i += k
            verdict, error = decide(score, self.threshold, error)
            out.append(Result(
                station=self.station, source=self.source_label, frame_id=job.frame.frame_id,
                capture_ts=job.frame.capture_ts, verdict=verdict, score=score, threshold=self.threshold, error=error,
                latency_ms={"read": job.frame.read_ms, "queue": job.queue_ms, "preprocess": job.preprocess_ms,
                            "infer": b.infer_ms if k else 0.0},
                model_id=self.model_id, tiles=k, map=amap, max_tile=max_tile,
                done_ts=b.done_ts,
            ))
        return out
