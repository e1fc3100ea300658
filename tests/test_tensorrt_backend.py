"""The TensorRT backend.

Here (no GPU, no TensorRT): its import hygiene, its refusals (missing TensorRT, a foreign or
mismatched plan), and its own pipeline logic (slots, tickets, frame order, padding, chunking,
stream/event ordering) against tests/fake_gpu.py, a CPU stand-in for cuda-python and TensorRT.
On a machine with both: the real thing against onnxruntime.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fake_gpu
from build_engine.plan import BatchRange, pack, write_atomic
from build_engine.tiny import tiny_meta, tiny_model
from inspector.backends import open_backend
from inspector.errors import ModelError

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    path.write_bytes(tiny_model(seed=3).SerializeToString())
    return path


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (21, 224, 224, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference(tiny_onnx, frames):
    with open_backend(tiny_onnx) as be:
        return be.infer(frames)


def fake_plan(tmp_path, onnx_path, **kw) -> str:
    args = dict(tensorrt="10.99.0.1", gpu_name="Fake GPU", compute_capability="9.0", precision="fp32", batch=BatchRange(1, 8, 32))
    args.update(kw)
    return str(write_atomic(tmp_path / "m.plan", pack(tiny_meta(), b"FAKEENGINE" + onnx_path.read_bytes(), **args)))


def test_module_imports_neither_torch_timm_nor_tensorrt():
    code = ("import sys, inspector.backends.tensorrt_backend, build_engine.plan, build_engine.cli; "
            "bad = [m for m in ('torch', 'timm', 'tensorrt', 'cuda') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_missing_tensorrt_is_one_clear_error(tmp_path, tiny_onnx):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ModelError, match="TensorRT is not installed"):
        open_backend(fake_plan(tmp_path, tiny_onnx))


def test_foreign_plan_is_refused_before_tensorrt_loads(tmp_path):
    path = tmp_path / "m.plan"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not an inspector plan"):
        open_backend(path)


@pytest.mark.parametrize("plan_kw, words", [
    ({"tensorrt": "10.12.0.36"}, r"TensorRT 10\.12\.0\.36 built it, this machine runs TensorRT 10\.99\.0\.1"),
    ({"compute_capability": "8.6", "gpu_name": "NVIDIA A10"}, r"compute capability 8\.6 \(NVIDIA A10\), this GPU is 9\.0 \(Fake GPU\)"),
    ({"gpu_name": "Other GPU"}, "built for Other GPU, this GPU is Fake GPU"),
])
def test_mismatched_plan_is_refused(monkeypatch, tmp_path, tiny_onnx, plan_kw, words):
    rt, trt = fake_gpu.install(monkeypatch)
    with pytest.raises(ModelError, match=words):
        open_backend(fake_plan(tmp_path, tiny_onnx, **plan_kw))
    assert rt.host_allocs == 0 and rt.device_allocs == 0  # refused before touching the GPU


def test_no_gpu_is_named(monkeypatch, tmp_path, tiny_onnx):
    fake_gpu.install(monkeypatch, fake_gpu.FakeCudart(devices=0))
    with pytest.raises(Exception, match="cudaGetDeviceCount failed"):
        open_backend(fake_plan(tmp_path, tiny_onnx))


def test_infer_matches_onnxruntime_in_frame_order(monkeypatch, tmp_path, tiny_onnx, frames, reference):
    rt, trt = fake_gpu.install(monkeypatch, batch=(1, 8, 8))
    with open_backend(fake_plan(tmp_path, tiny_onnx, batch=BatchRange(1, 8, 8))) as be:
        assert be.name == "tensorrt" and be.max_batch == 8 and len(be._slots) == 2
        allocs = (rt.host_allocs, rt.device_allocs)
        assert allocs == (6, 6)  # per slot: pinned + device buffers for image, score, map
        score, amap = be.infer(frames)  # 21 frames: chunks of 8, 8, 5 over two slots
        assert (rt.host_allocs, rt.device_allocs) == allocs  # nothing allocated per batch
        runs = [n for c in trt_contexts(be) for n in c.runs]
        assert sorted(runs) == [5, 8, 8]
    np.testing.assert_allclose(score, reference[0], rtol=1e-6)
    np.testing.assert_allclose(amap, reference[1], rtol=1e-6, atol=1e-7)
    assert not rt.buffers and not rt.streams and not rt.events  # close() released everything


def trt_contexts(be):
    return be._contexts


def test_submit_collect_overlap_and_order(monkeypatch, tmp_path, tiny_onnx, frames, reference):
    rt, trt = fake_gpu.install(monkeypatch)
    with open_backend(fake_plan(tmp_path, tiny_onnx), streams=2) as be:
        batches = [frames[0:4], frames[4:9], frames[9:10]]
        tickets = [be.submit(b) for b in batches]  # three in flight on two slots: the oldest is finished on reuse
        assert tickets == [0, 1, 2]
        assert not be.ready(2)  # the fake GPU runs nothing until someone waits
        results = [be.collect(t) for t in tickets]
        with pytest.raises(ModelError, match="ticket 1"):
            be.collect(1)
    got = np.concatenate([r[0] for r in results])
    np.testing.assert_allclose(got, reference[0][:10], rtol=1e-6)
    # copies on the slots' two streams (batch 2 reused slot 0's), all compute on the context's own stream
    copies = [s for op, *_, s in rt.log if op == "memcpy"]
    computes = {s for op, *_, s in rt.log if op == "execute"}
    assert len(set(copies)) == 2 and copies[:3] == [copies[0]] * 3 and copies[3] != copies[0]
    assert len(computes) == 1 and not computes & set(copies)
    # ordered by events: compute waits for each upload, each download waits for its compute
    waits = [(e, s) for op, e, s in rt.log if op == "wait"]
    assert len(waits) == 6 and [s for _, s in waits[0::2]] == [computes.pop()] * 3


def test_collect_out_of_order_and_small_batches_are_padded(monkeypatch, tmp_path, tiny_onnx, frames, reference):
    rt, trt = fake_gpu.install(monkeypatch, batch=(4, 8, 16))
    with open_backend(fake_plan(tmp_path, tiny_onnx, batch=BatchRange(4, 8, 16))) as be:
        t0, t1 = be.submit(frames[:1]), be.submit(frames[1:3])
        s1, m1 = be.collect(t1)
        s0, m0 = be.collect(t0)
        assert s0.shape == (1,) and m1.shape == (2, 7, 7)
        assert sorted(n for c in be._contexts for n in c.runs) == [4, 4]  # padded up to the profile's min
    np.testing.assert_allclose(np.concatenate([s0, s1]), reference[0][:3], rtol=1e-6)


def test_submit_validates(monkeypatch, tmp_path, tiny_onnx, frames):
    fake_gpu.install(monkeypatch, batch=(1, 4, 4))
    with open_backend(fake_plan(tmp_path, tiny_onnx, batch=BatchRange(1, 4, 4))) as be:
        with pytest.raises(ModelError, match="1 to 4 frames"):
            be.submit(frames[:5])
        with pytest.raises(ModelError, match="uint8"):
            be.submit(frames[:2].astype(np.float32))
        assert be.infer(frames[:0])[0].shape == (0,)
    with pytest.raises(ModelError, match="closed"):
        be.submit(frames[:1])


def test_several_profiles_give_concurrent_contexts(monkeypatch, tmp_path, tiny_onnx, frames, reference):
    rt, trt = fake_gpu.install(monkeypatch, profiles=2, batch=(1, 8, 8))
    with open_backend(fake_plan(tmp_path, tiny_onnx, profiles=2, batch=BatchRange(1, 8, 8)), streams=2) as be:
        assert len(be._contexts) == 2 and [c.profile for c in be._contexts] == [0, 1]
        score, _ = be.infer(frames[:12])
    assert len({s for op, *_, s in rt.log if op == "execute"}) == 2  # each context on its own compute stream
    np.testing.assert_allclose(score, reference[0][:12], rtol=1e-6)


def test_onnxruntime_backend_has_the_same_async_interface(tiny_onnx, frames, reference):
    with open_backend(tiny_onnx) as be:
        tickets = [be.submit(frames[:3]), be.submit(frames[3:5])]
        got = np.concatenate([be.collect(t)[0] for t in tickets])
        with pytest.raises(ModelError, match="ticket 0"):
            be.collect(tickets[0])
    np.testing.assert_allclose(got, reference[0][:5], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The real thing (a GPU machine with TensorRT)


def _real_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (Python package 'tensorrt')")
    from inspector.backends.tensorrt_backend import CudaError, gpu_info

    try:
        gpu_info()
    except (CudaError, ModelError) as exc:
        pytest.skip(f"no usable CUDA GPU: {exc}")
    return trt


def test_real_tensorrt_matches_onnxruntime(tmp_path, tiny_onnx, frames, reference):
    _real_gpu()
    from build_engine.builder import BuildOptions, build

    samples = tmp_path / "samples"
    samples.mkdir()
    import cv2

    for i in range(8):
        cv2.imwrite(str(samples / f"{i}.png"), frames[i])
    result = build(tiny_onnx, tmp_path / "tiny.plan", BuildOptions(precision="fp32", batch=BatchRange(1, 4, 8), samples=samples),
                   log=lambda m: None)
    with open_backend(result.output) as be:
        score, amap = be.infer(frames)
        tickets = [be.submit(frames[i : i + 3]) for i in range(0, 9, 3)]
        pipelined = np.concatenate([be.collect(t)[0] for t in tickets])
    np.testing.assert_allclose(score, reference[0], rtol=1e-3)
    np.testing.assert_allclose(pipelined, reference[0][:9], rtol=1e-3)
