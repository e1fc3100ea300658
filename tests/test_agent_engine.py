"""`--engine x.plan`: the TensorRT backend slots into the same pipeline (submit/collect, in-flight slots).

There is no GPU here, so the backend runs on tests/fake_gpu.py, the TensorRT backend's own CPU
stand-in for cuda-python and TensorRT (its engine runs the ONNX graph with onnxruntime). That
proves the agent's plumbing with the real backend class: routing through open_backend, the
asynchronous submit/collect path, frame order, scores; it proves nothing about the GPU itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from agentkit import config, link_images, run_agent
from inspector.backends import open_backend
from inspector.images import read_image
from inspector.preprocess import prepare

fake_gpu = pytest.importorskip("fake_gpu")
plan_mod = pytest.importorskip("build_engine.plan")
tiny = pytest.importorskip("build_engine.tiny")


@pytest.fixture()
def engine(monkeypatch, tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(tiny.tiny_model(seed=3).SerializeToString())
    fake_gpu.install(monkeypatch, batch=(1, 4, 4))
    plan = plan_mod.write_atomic(tmp_path / "tiny.plan", plan_mod.pack(
        tiny.tiny_meta(), b"FAKEENGINE" + onnx_path.read_bytes(), tensorrt="10.99.0.1", gpu_name="Fake GPU",
        compute_capability="9.0", precision="fp32", batch=plan_mod.BatchRange(1, 4, 4)))
    return plan, onnx_path


def test_engine_runs_through_the_same_pipeline(engine, piped, tmp_path):
    plan, onnx_path = engine
    folder = tmp_path / "in"
    files = link_images(piped / "test" / "defect", folder, 11)
    (folder / "zz_broken.png").write_bytes(b"")  # an error frame in the middle of the async stream
    cfg = config(tmp_path, plan, folder=str(folder), batch=4, in_flight=2)
    summary, col, agent = run_agent(cfg)
    col.close()
    assert agent.backend.name == "tensorrt" and agent.pipeline.async_infer
    res = col.results
    assert [r["frame_id"] for r in res] == [f.name for f in files] + ["zz_broken.png"]
    assert [r["seq"] for r in res] == list(range(1, 13)) and res[-1]["verdict"] == "error"
    with open_backend(onnx_path) as be:
        ref, _ = be.infer(np.stack([prepare(read_image(f), be.meta.preprocess) for f in files]))
    np.testing.assert_allclose([r["score"] for r in res[:-1]], ref, rtol=1e-5, atol=1e-6)
    assert summary["published"] == 12 and summary["errors"] == 1
