"""End to end: a folder of frames through the agent (inspector.agent: read -> preprocess -> backend ->
decision -> ZeroMQ PUB) to a real ZeroMQ subscriber on loopback, as a line's controller would see it.

Two runs of the same folder:
- throughput: the agent's default pipeline (micro-batching, batches in flight); frames are read
  as fast as the pipeline takes them, so this is the sustained rate, and its latency includes the
  wait in the queues;
- latency: batch 1, one batch in flight, and frames released at a fixed period longer than one
  frame's processing time (PacedSource around the agent's folder source), so each frame finds the
  station idle: the latency a line sees when the camera is slower than the inspector.
Latency per frame: the subscriber's receive time minus the frame's capture_ts (when the agent
started reading the file); both are this machine's time.time().
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import zmq

from .timing import summarize

STAGES = ("read", "queue", "preprocess", "infer", "post", "total")


class PacedSource:
    """Wraps the agent's source: hands out a frame at most every `period_s` (the rest is the source's own)."""

    def __init__(self, inner, period_s: float):
        self.inner, self.period_s, self._next = inner, period_s, 0.0

    def __getattr__(self, name):  # state, dropped, label, lossless, ... are the inner source's
        return getattr(self.inner, name)

    def next(self, timeout: float):
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            if time.monotonic() < self._next:
                return None
        frame = self.inner.next(timeout)
        if frame is not None:
            self._next = time.monotonic() + self.period_s
        return frame

    def close(self) -> None:
        self.inner.close()


class Subscriber:
    """SUB socket in a thread, keeping (receive time, result) for every result message."""

    def __init__(self, ctx: zmq.Context, endpoint: str, prefix: str):
        self.results: list[tuple[float, dict]] = []
        self.heartbeats = 0
        self._stop = threading.Event()
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self._sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
        self._sock.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name="bench-sub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(20):
                topic, payload = self._sock.recv_multipart()
                now = time.time()
                if topic.endswith(b"/result"):
                    self.results.append((now, json.loads(payload)))
                elif topic.endswith(b"/heartbeat"):
                    self.heartbeats += 1

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def run_folder(folder: Path, model: Path | None, engine: Path | None, *, max_frames: int | None, mode: str,
               backend: str = "auto", threads: int = 0, period_ms: float = 0.0, timeout: float = 600.0) -> dict:
    from ..agent.agent import Agent
    from ..agent.config import RunConfig

    kw = dict(batch=1, in_flight=1, queue_size=1) if mode == "latency" else {}
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        cfg = RunConfig(folder=str(folder), model=str(model) if model else None, engine=str(engine) if engine else None,
                        backend=backend, threads=threads, publish="tcp://127.0.0.1:*", recovery="tcp://127.0.0.1:*",
                        log_db=str(Path(tmp) / "bench-results.db"), station="bench", source_name="bench",
                        heartbeat_s=0.2, linger_s=0.0, max_frames=max_frames, log_level="warning", **kw)
        cfg.validate("inspector bench")
        from ..agent.jsonlog import setup

        setup("warning")
        agent = Agent(cfg).open()
        ctx = zmq.Context()
        sub = Subscriber(ctx, agent.endpoints["publish"], "bench/")
        try:
            if not sub.wait(lambda: sub.heartbeats > 0, 10):  # ZeroMQ's slow joiner: be connected first
                raise RuntimeError("the bench subscriber heard no heartbeat from the agent within 10 s")
            if mode == "latency" and period_ms > 0:
                agent.source = PacedSource(agent.source, period_ms / 1e3)
            t0 = time.time()
            agent.start()
            finished = agent.wait(timeout)
        finally:
            summary = agent.close(linger=False)
        sub.wait(lambda: len(sub.results) >= summary["published"], 10)
        sub.close()
        ctx.term()
    res = sub.results
    if not res:
        raise RuntimeError(f"{folder}: the agent published no result")
    span = res[-1][0] - t0
    stage = {k: summarize([m["latency_ms"][k] for _, m in res if k in m["latency_ms"]]) for k in STAGES}
    return {
        "mode": mode,
        "pipeline": {"batch": cfg.batch, "in_flight": cfg.in_flight, "queue_size": cfg.queue_size,
                     "infer_threads": cfg.infer_threads, "frame_period_ms": period_ms if mode == "latency" else 0.0},
        "backend": agent.backend.name if agent.backend else None,
        "frames": len(res),
        "errors": sum(m["verdict"] == "error" for _, m in res),
        "finished": finished,
        "seconds": round(span, 3),
        "throughput_fps": round(len(res) / span, 3) if span > 0 else None,
        "agent_throughput_fps": summary.get("throughput_fps"),
        "latency_ms": summarize([(t - m["capture_ts"]) * 1e3 for t, m in res]),  # read start -> received
        "agent_latency_ms": stage,  # the agent's own per-stage figures, from each result's latency_ms
    }
