"""The TensorRT backend.

Everywhere: its import hygiene and its refusals that need no GPU (missing TensorRT, a foreign
plan). Where TensorRT and a CUDA GPU exist (the `tensorrt_gpu` fixture; elsewhere these skip with a
reason naming what is missing): real FP32 engines of the tiny model built by build-engine, run
against onnxruntime, checking frame order, submit/collect tickets, padding up to the profile's
minimum, several optimisation profiles, refusal of a mismatched plan, and a GPU hidden from CUDA.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from build_engine.plan import BatchRange, pack, write_atomic
from build_engine.tiny import tiny_meta, tiny_model
from inspector.backends import open_backend
from inspector.errors import ModelError

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
RTOL, MAP_ATOL = 1e-3, 1e-4  # a real FP32 engine vs onnxruntime FP32 on the CPU: other kernels, other rounding


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


def unbuilt_plan(tmp_path, **kw) -> str:
    """A plan container around bytes that are no engine: the refusals under test read only its header."""
    args = dict(tensorrt="10.99.0.1", gpu_name="Some GPU", compute_capability="9.0", precision="fp32", batch=BatchRange(1, 8, 32))
    args.update(kw)
    return str(write_atomic(tmp_path / "m.plan", pack(tiny_meta(), b"not a TensorRT engine", **args)))


@pytest.fixture(scope="module")
def engine_plan(tensorrt_gpu, tiny_onnx, frames, tmp_path_factory):
    """plan(min, opt, max, profiles=1): a real FP32 plan of the tiny model from build-engine, built once per shape."""
    import cv2

    from build_engine.builder import BuildOptions, build

    samples, out, built = tmp_path_factory.mktemp("samples"), tmp_path_factory.mktemp("plans"), {}
    for i in range(8):
        cv2.imwrite(str(samples / f"{i}.png"), frames[i])

    def plan(lo: int, opt: int, hi: int, profiles: int = 1):
        key = (lo, opt, hi, profiles)
        if key not in built:
            opts = BuildOptions(precision="fp32", batch=BatchRange(lo, opt, hi), profiles=profiles, samples=samples, max_samples=8)
            built[key] = build(tiny_onnx, out / f"tiny-{lo}-{opt}-{hi}-{profiles}.plan", opts, log=lambda m: None).output
        return built[key]

    return plan


def test_module_imports_neither_torch_timm_nor_tensorrt():
    code = ("import sys, inspector.backends.tensorrt_backend, build_engine.plan, build_engine.cli; "
            "bad = [m for m in ('torch', 'timm', 'tensorrt', 'cuda') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_missing_tensorrt_is_one_clear_error(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(ModelError, match="TensorRT is not installed"):
        open_backend(unbuilt_plan(tmp_path))


def test_foreign_plan_is_refused_before_tensorrt_loads(tmp_path):
    path = tmp_path / "m.plan"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not an inspector plan"):
        open_backend(path)


@pytest.mark.parametrize("plan_kw, words", [
    ({"tensorrt": "1.2.3.4"}, "TensorRT 1.2.3.4 built it, this machine runs TensorRT {trt}"),
    ({"compute_capability": "1.0", "gpu_name": "NVIDIA A10"}, "compute capability 1.0 (NVIDIA A10), this GPU is {cc} ({gpu})"),
    ({"gpu_name": "Other GPU"}, "built for Other GPU, this GPU is {gpu}"),
])
def test_mismatched_plan_is_refused(tensorrt_gpu, tmp_path, plan_kw, words):
    trt, _, gpu = tensorrt_gpu
    header = dict(tensorrt=trt.__version__, gpu_name=gpu.name, compute_capability=gpu.compute_capability)
    header.update(plan_kw)
    # the engine bytes are no engine: the plan's own header is refused before TensorRT deserializes anything
    with pytest.raises(ModelError, match=re.escape(words.format(trt=trt.__version__, cc=gpu.compute_capability, gpu=gpu.name))):
        open_backend(unbuilt_plan(tmp_path, **header))


def test_no_gpu_is_named(tensorrt_gpu, tmp_path):
    """TensorRT installed and the GPU really hidden from CUDA (CUDA_VISIBLE_DEVICES=''): the error names the CUDA call."""
    trt, _, gpu = tensorrt_gpu
    plan = unbuilt_plan(tmp_path, tensorrt=trt.__version__, gpu_name=gpu.name, compute_capability=gpu.compute_capability)
    code = ("from inspector.backends import open_backend\n"
            f"try:\n    open_backend({plan!r})\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("CudaError") and "cudaGetDeviceCount" in out.stdout, out.stdout + out.stderr


def buffers(be) -> list:
    return [b for s in be._slots for b in s.buffers]


def test_infer_matches_onnxruntime_in_frame_order(engine_plan, frames, reference):
    with open_backend(engine_plan(1, 8, 8)) as be:
        assert be.name == "tensorrt" and be.max_batch == 8 and len(be._slots) == 2 and len(be._contexts) == 1
        bufs = buffers(be)
        before = [(id(b), b.ptr) for b in bufs]
        assert len(bufs) == 12 and all(before)  # per slot: pinned + device buffers for image, score, map
        score, amap = be.infer(frames)  # 21 distinct frames: chunks of 8, 8, 5 over two slots
        assert [(id(b), b.ptr) for b in buffers(be)] == before  # nothing allocated per batch
    assert score.shape == (21,) and amap.shape == (21, 7, 7)
    np.testing.assert_allclose(score, reference[0], rtol=RTOL)
    np.testing.assert_allclose(amap, reference[1], rtol=RTOL, atol=MAP_ATOL)
    assert not any(b.ptr for b in bufs)  # close() freed every buffer


def test_submit_collect_overlap_and_order(engine_plan, frames, reference):
    with open_backend(engine_plan(1, 8, 8), streams=2) as be:
        batches = [frames[0:4], frames[4:9], frames[9:10]]
        tickets = [be.submit(b) for b in batches]  # three in flight on two slots: the oldest is finished on reuse
        assert tickets == [0, 1, 2]
        assert be.ready(0)  # slot 0 was reused for ticket 2, so batch 0 was waited for and its result kept
        results = [be.collect(t) for t in tickets]
        with pytest.raises(ModelError, match="ticket 1"):
            be.collect(1)
        with pytest.raises(ModelError, match="ticket 1"):
            be.ready(1)
        copies = {int(s.stream) for s in be._slots}
        computes = {int(s) for s in be._compute_streams}
    # copies on the slots' own two streams, all compute on the one context's own stream
    assert len(copies) == 2 and len(computes) == 1 and not copies & computes
    assert [len(r[0]) for r in results] == [4, 5, 1]
    np.testing.assert_allclose(np.concatenate([r[0] for r in results]), reference[0][:10], rtol=RTOL)


def test_collect_out_of_order_and_small_batches_are_padded(engine_plan, frames, reference):
    with open_backend(engine_plan(4, 8, 16)) as be:
        assert be.batch_min == 4
        # 1 and 2 frames run padded up to the profile's minimum of 4 (TensorRT refuses a smaller shape)
        t0, t1 = be.submit(frames[:1]), be.submit(frames[1:3])
        s1, m1 = be.collect(t1)
        s0, m0 = be.collect(t0)
        assert s0.shape == (1,) and m1.shape == (2, 7, 7)
    np.testing.assert_allclose(np.concatenate([s0, s1]), reference[0][:3], rtol=RTOL)
    np.testing.assert_allclose(np.concatenate([m0, m1]), reference[1][:3], rtol=RTOL, atol=MAP_ATOL)


def test_submit_validates(engine_plan, frames):
    with open_backend(engine_plan(1, 8, 8)) as be:
        with pytest.raises(ModelError, match="1 to 8 frames"):
            be.submit(frames[:9])
        with pytest.raises(ModelError, match="uint8"):
            be.submit(frames[:2].astype(np.float32))
        assert be.infer(frames[:0])[0].shape == (0,)
    with pytest.raises(ModelError, match="closed"):
        be.submit(frames[:1])


def test_several_profiles_give_concurrent_contexts(engine_plan, frames, reference):
    with open_backend(engine_plan(1, 8, 8, profiles=2), streams=2) as be:
        assert be.profiles == 2 and len(be._contexts) == 2
        assert [c.active_optimization_profile for c in be._contexts] == [0, 1]
        assert len({int(s) for s in be._compute_streams}) == 2  # each context on its own compute stream
        score, _ = be.infer(frames[:12])  # 8 frames on context 0, 4 on context 1
    np.testing.assert_allclose(score, reference[0][:12], rtol=RTOL)


def test_onnxruntime_backend_has_the_same_async_interface(tiny_onnx, frames, reference):
    with open_backend(tiny_onnx) as be:
        tickets = [be.submit(frames[:3]), be.submit(frames[3:5])]
        got = np.concatenate([be.collect(t)[0] for t in tickets])
        with pytest.raises(ModelError, match="ticket 0"):
            be.collect(tickets[0])
    np.testing.assert_allclose(got, reference[0][:5], rtol=1e-5)
