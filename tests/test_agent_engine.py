"""`--engine x.plan`: the TensorRT backend slots into the same pipeline (submit/collect, in-flight slots).

A real FP32 engine of the tiny synthetic model, built by build-engine on this machine's GPU, run by
the agent: routing through open_backend, the asynchronous submit/collect path, frame order, scores
against onnxruntime. It needs TensorRT and a CUDA GPU (the `tensorrt_gpu` fixture); elsewhere it
skips with a reason naming what is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from agentkit import config, link_images, run_agent
from inspector.backends import open_backend
from inspector.images import read_image
from inspector.preprocess import prepare

plan_mod = pytest.importorskip("build_engine.plan")
tiny = pytest.importorskip("build_engine.tiny")


@pytest.fixture()
def engine(tensorrt_gpu, piped, tmp_path):
    from build_engine.builder import BuildOptions, build

    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(tiny.tiny_model(seed=3).SerializeToString())
    opts = BuildOptions(precision="fp32", batch=plan_mod.BatchRange(1, 4, 4), samples=piped, max_samples=8)
    plan = build(onnx_path, tmp_path / "tiny.plan", opts, log=lambda m: None).output
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
    # a real FP32 engine vs onnxruntime FP32 on the CPU: other kernels, other rounding
    np.testing.assert_allclose([r["score"] for r in res[:-1]], ref, rtol=1e-3, atol=1e-6)
    assert summary["published"] == 12 and summary["errors"] == 1
