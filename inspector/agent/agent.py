"""The agent: wires a RunConfig's source, backend, pipeline, publisher and recovery endpoint together.

    agent = Agent(cfg)
    agent.open()     # model (+ warm-up), durable log, PUB and ROUTER sockets bound; heartbeats start
    agent.start()    # the source opens and frames flow
    agent.stop()     # stop reading; what was accepted drains (also on SIGINT/SIGTERM via cli_run)
    agent.wait()     # until every accepted frame's result is handed to the publisher
    agent.close()    # `stopping` event, linger_s of heartbeats and recovery, then everything closes
`agent.run()` does all of it and returns a summary.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import numpy as np
import zmq

from ..backends.base import Backend, open_backend
from ..errors import ConfigError, ModelError
from .config import RunConfig
from .jsonlog import log
from .messages import Event, Heartbeat
from .pipeline import Pipeline
from .publisher import Publisher
from .recovery import RecoveryServer
from .sources import Source, open_source
from .stats import Stats, rss_mb
from .tiling import Tiler


def open_model(cfg: RunConfig) -> Backend:
    """The backend for --engine / --model, with a one-line ModelError for every way that can fail."""
    path = cfg.model_file
    backend = "tensorrt" if cfg.engine is not None and cfg.backend == "auto" else cfg.backend
    try:
        if backend == "tensorrt":
            return open_backend(path, backend, streams=cfg.in_flight)  # one device slot per in-flight batch
        from ..backends.onnxruntime_backend import OrtOptions

        # Spinning threads would take the CPU the reader, batcher and publisher need (measured: docs/agent.md).
        return open_backend(path, backend, threads=cfg.threads, options=OrtOptions(allow_spinning=cfg.ort_spinning))
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing.endswith("tensorrt_backend"):
            raise ModelError(f"{path}: the TensorRT backend is not available in this installation yet "
                             f"(inspector.backends.tensorrt_backend); run the ONNX model with --model FILE.onnx") from None
        raise ModelError(f"{path}: the TensorRT backend needs the {missing!r} package, which is not installed "
                         f"(a machine with an NVIDIA GPU and TensorRT is needed for .plan engines)") from None


class Agent:
    def __init__(self, cfg: RunConfig, backend: Backend | None = None):
        """`backend`: an already open Backend to use instead of the one cfg's engine/model names (embedding)."""
        self.cfg = cfg
        self._given_backend = backend
        self.run_id = uuid.uuid4().hex[:12]
        self.stats = Stats()
        self.state = "starting"
        self.ctx = zmq.Context()
        self.backend: Backend | None = None
        self.source: Source | None = None
        self.pipeline: Pipeline | None = None
        self.publisher: Publisher | None = None
        self.recovery: RecoveryServer | None = None
        self.endpoints: dict[str, str] = {}
        self.threshold = 0.0
        self._started = time.time()
        self._closed = False
        self._stop_reason = ""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "Agent":
        cfg = self.cfg
        try:
            self._make_source()
            self.backend = self._given_backend if self._given_backend is not None else open_model(cfg)
            meta = self.backend.meta
            if cfg.infer_threads > 1 and getattr(self.backend, "thread_safe", True) is False:
                raise ConfigError(f"infer_threads: {self.backend.name} does not support concurrent inference; use 1")
            max_batch = getattr(self.backend, "max_batch", None)
            if max_batch is not None and cfg.batch > max_batch:
                log.warning("batch_above_engine_max", batch=cfg.batch, engine_max_batch=max_batch,
                            detail="larger batches are split into several inference calls")
            self.threshold = cfg.threshold if cfg.threshold is not None else float(meta.threshold.value)
            self.tiler = Tiler(meta.preprocess, (meta.map_h, meta.map_w), cfg.roi, cfg.tile, cfg.tile_stride)
            if cfg.warmup:
                pre = meta.preprocess
                self.backend.infer(np.zeros((cfg.batch, pre.crop_h, pre.crop_w, 3), np.uint8))
            self.publisher = Publisher(self.ctx, cfg.publish, cfg.log_db, cfg.log_sync, cfg.log_retain, cfg.station,
                                       cfg.source_label, cfg.heartbeat_s, self._heartbeat, self.stats)
            self.endpoints["publish"] = self.publisher.start()
            self.recovery = RecoveryServer(self.ctx, cfg.recovery, cfg.log_db, self.status)
            self.endpoints["recovery"] = self.recovery.start()
        except BaseException:
            self.close(linger=False)
            raise
        log.info("listening", station=cfg.station, source=cfg.source_label, publish=self.endpoints["publish"],
                 recovery=self.endpoints["recovery"], log_db=cfg.log_db, log_id=self.publisher.log_id,
                 first_seq=self.publisher.last_seq + 1)
        log.info("model_loaded", model=str(cfg.model_file), model_id=meta.model_id, backend=self.backend.name,
                 threshold=self.threshold, threshold_source="override" if cfg.threshold is not None else "model",
                 input=[meta.preprocess.crop_h, meta.preprocess.crop_w], tiles=cfg.tile, roi=cfg.roi, batch=cfg.batch,
                 in_flight=cfg.in_flight)
        return self

    def _make_source(self) -> None:
        cfg = self.cfg
        live = cfg.source_kind in ("camera", "stream") or cfg.live
        if live:
            return  # opened in start(): its grabber should not run before the pipeline does
        self.source = open_source(cfg, self._source_event)  # a missing folder or video fails before the model loads

    def start(self) -> "Agent":
        cfg = self.cfg
        if self.source is None:
            self.source = open_source(cfg, self._source_event)
        self.pipeline = Pipeline(self.source, self.backend, self.tiler, self.threshold, self.publisher, self.stats,
                                 batch=cfg.batch, in_flight=cfg.in_flight, infer_threads=cfg.infer_threads,
                                 queue_size=cfg.queue_size, max_frames=cfg.max_frames, duration=cfg.duration,
                                 publish_map=cfg.publish_map, station=cfg.station, source_label=cfg.source_label)
        self.state = "running"
        self.pipeline.start()
        target = cfg.camera if cfg.camera is not None else (cfg.video if cfg.video is not None else cfg.folder)
        self._event("started", f"{cfg.source_kind} {target}", run_id=self.run_id, model_id=self.backend.meta.model_id)
        log.info("started", source_kind=cfg.source_kind, target=target, run_id=self.run_id)
        if self._stop_reason:
            self.pipeline.request_stop(self._stop_reason)
        return self

    def stop(self, reason: str = "stop requested") -> None:
        """Stop reading new frames; everything already accepted is still published. Safe from any thread."""
        self._stop_reason = self._stop_reason or reason
        if self.pipeline is not None:
            self.pipeline.request_stop(reason)
        if self.state == "running":
            self.state = "draining"

    def wait(self, timeout: float | None = None) -> bool:
        """True once the source has ended or a stop has drained. Returns early on timeout."""
        if self.pipeline is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.pipeline.wait(0.2 if left is None else min(0.2, left)):
                return True
            if self.pipeline.stopping and self.state == "running":
                self.state = "draining"
            if left is not None and left <= 0:
                return False

    def close(self, linger: bool = True) -> dict[str, Any]:
        """Announce the stop, keep heartbeat and recovery up for linger_s, then close everything."""
        with self._lock:
            if self._closed:
                return self.summary()
            self._closed = True
        self.state = "stopping"
        if self.publisher is not None and self.publisher.bound:
            reason = self.pipeline.end_reason if self.pipeline else (self._stop_reason or "closed")
            if reason == "end of source":
                self._event("source_ended", f"{self.cfg.source_kind} {self.cfg.source_label} has no more frames")
            self._event("stopping", reason, published=self.stats.published)
            if linger and self.cfg.linger_s > 0:
                time.sleep(self.cfg.linger_s)
            self.publisher.close(timeout=10)
        elif self.publisher is not None:
            self.publisher.close(timeout=10)
        if self.recovery is not None:
            self.recovery.stop()
        if self.source is not None and self.pipeline is None:
            self.source.close()
        if self.backend is not None and self._given_backend is None:
            self.backend.close()  # (a backend handed in belongs to the caller)
        self.ctx.term()
        summary = self.summary()
        if self.publisher is not None and self.publisher.bound:
            log.info("stopped", **summary)
        return summary

    def run(self) -> dict[str, Any]:
        self.open()
        try:
            self.start()
            self.wait()
        finally:
            summary = self.close()
        return summary

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict[str, Any]:
        s = self.stats
        tput = s.throughput()
        cpu = s.cpu_ms_per_frame()
        return {
            "reason": (self.pipeline.end_reason if self.pipeline else "") or self._stop_reason,
            "failed": self.pipeline.failed if self.pipeline else "",
            "frames_in": s.frames_in, "published": s.published, "fails": s.fails, "errors": s.errors,
            "dropped": self.source.dropped if self.source else 0,
            "last_seq": self.publisher.last_seq if self.publisher else 0,
            "throughput_fps": round(tput, 3) if tput else None,
            "cpu_ms_per_frame": round(cpu, 3) if cpu else None,
            "uptime_s": round(time.time() - self._started, 3),
        }

    def _heartbeat(self) -> Heartbeat:
        src, pl, be = self.source, self.pipeline, self.backend
        state = self.state
        if state == "running" and pl is not None and pl.stopping:
            state = "draining"
        return Heartbeat(
            station=self.cfg.station, source=self.cfg.source_label, ts=time.time(), run_id=self.run_id, log_id="",
            state=state, uptime_s=time.time() - self._started, fps=self.stats.fps(), frames_in=self.stats.frames_in,
            published=self.stats.published, errors=self.stats.errors, dropped=src.dropped if src else 0,
            queue_depth=self.stats.frames_in - self.stats.published,
            queues=pl.queues() if pl else {"frames": 0, "batches": 0}, last_seq=0,
            source_state=src.state if src else "starting", source_retry_s=src.retry_in_s if src else 0.0,
            source_attempts=src.attempts if src else 0, reconnects=src.reconnects if src else 0,
            backend=be.name if be else "", model_id=be.meta.model_id if be else "", threshold=self.threshold,
            batch=self.cfg.batch, rss_mb=rss_mb(),
        )

    def status(self) -> dict[str, Any]:
        hb = self._heartbeat()
        if self.publisher is not None:
            hb.last_seq, hb.log_id = self.publisher.last_seq, self.publisher.log_id
        out = json.loads(hb.to_json())
        out["endpoints"] = dict(self.endpoints)
        out["source_kind"] = self.cfg.source_kind
        return out

    def _event(self, name: str, detail: str, **fields: Any) -> None:
        if self.publisher is not None:
            self.publisher.send_event(Event(self.cfg.station, self.cfg.source_label, time.time(), name, detail, fields))

    def _source_event(self, name: str, detail: str, **fields: Any) -> None:
        (log.warning if name == "source_down" else log.info)(name, detail=detail, source=self.cfg.source_label, **fields)
        self._event(name, detail, **fields)
