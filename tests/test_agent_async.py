"""The pipeline's asynchronous path (backends with submit/collect, as the TensorRT one has), on the CPU.

`TicketBackend` is a real backend, not a mock: the real onnxruntime session of the trained model,
run on its own worker thread behind the submit(images) -> ticket / collect(ticket) / ready(ticket)
interface, with `slots` batches at most in flight and a `max_batch`, like the TensorRT backend.
The agent must keep it fed, collect in order, respect in_flight, and fall back to infer() for a
batch larger than max_batch.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from agentkit import agent_model, config, image_frames, link_images
from inspector.agent.agent import Agent
from inspector.backends import open_backend
from inspector.dataset import TestItem as Item
from inspector.evaluate import score_items


class TicketBackend:
    def __init__(self, path, slots: int, max_batch: int, with_ready: bool):
        self._inner = open_backend(path)
        self.meta, self.path, self.name = self._inner.meta, self._inner.path, "ticketed-onnxruntime"
        self.max_batch, self.slots = max_batch, slots
        self._pool = ThreadPoolExecutor(1)
        self._jobs: dict[int, Future] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.max_outstanding = 0
        self.submitted: list[int] = []
        self.infer_calls = 0
        if with_ready:
            self.ready = lambda t: self._jobs[t].done()

    def submit(self, images):
        assert 1 <= len(images) <= self.max_batch
        with self._lock:
            assert len(self._jobs) < self.slots, "more batches in flight than the backend has slots"
            t = self._next
            self._next += 1
            self._jobs[t] = self._pool.submit(self._inner.infer, np.ascontiguousarray(images))
            self.max_outstanding = max(self.max_outstanding, len(self._jobs))
            self.submitted.append(len(images))
            return t

    def collect(self, ticket):
        fut = self._jobs[ticket]
        result = fut.result()
        with self._lock:
            del self._jobs[ticket]
        return result

    def infer(self, images):
        self.infer_calls += 1
        return self._inner.infer(images)

    def close(self):
        self._pool.shutdown()


@pytest.mark.parametrize("with_ready", [True, False])
def test_async_backend_is_kept_fed_in_order(agent_model, piped, tmp_path, with_ready):
    folder = tmp_path / "in"
    files = link_images(piped / "test" / "defect", folder, 14)
    (folder / "m_broken.png").write_bytes(b"\x89PNG broken")
    be = TicketBackend(agent_model, slots=3, max_batch=4, with_ready=with_ready)
    cfg = config(tmp_path, agent_model, folder=str(folder), batch=2, in_flight=3, queue_size=4, warmup=False)
    agent, col = open_agent_with(cfg, be)
    agent.start()
    assert agent.wait(60)
    summary = agent.close()
    col.wait_for(lambda c: len(c.results) == 15, timeout=5)
    col.close()
    assert agent.pipeline.async_infer
    names = sorted(p.name for p in folder.iterdir())
    assert [r["frame_id"] for r in col.results] == names
    assert [r["seq"] for r in col.results] == list(range(1, 16)) and summary["errors"] == 1
    assert be.max_outstanding >= 2  # several batches really were in flight at once ...
    assert be.max_outstanding <= 3  # ... and never more than in_flight
    ref = score_items(be._inner, [Item(f, "defect", None) for f in files]).scores
    got = [r["score"] for r in col.results if r["verdict"] != "error"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_async_batch_larger_than_max_batch_uses_infer(agent_model, piped, tmp_path):
    good = image_frames(piped / "test" / "good", 1)[0]
    folder = tmp_path / "wide"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.hstack([good] * 4))  # 4 tiles of 128: more than max_batch 2
    cv2.imwrite(str(folder / "b.png"), good)  # 1 tile
    be = TicketBackend(agent_model, slots=2, max_batch=2, with_ready=True)
    cfg = config(tmp_path, agent_model, folder=str(folder), tile=(128, 128), tile_stride=(128, 128), batch=4,
                 warmup=False)
    agent, col = open_agent_with(cfg, be)
    agent.start()
    assert agent.wait(60)
    agent.close()
    col.wait_for(lambda c: len(c.results) == 2, timeout=5)
    col.close()
    a, b = col.results
    assert (a["frame_id"], a["tiles"], b["frame_id"], b["tiles"]) == ("a.png", 4, "b.png", 1)
    assert be.infer_calls == 1 and be.submitted == [1]


def open_agent_with(cfg, backend):
    from agentkit import Collector

    agent = Agent(cfg, backend=backend).open()
    col = Collector(agent.endpoints["publish"])
    assert col.wait_for(lambda c: c.of("/heartbeat"), timeout=10)
    return agent, col
