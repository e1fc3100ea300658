"""Device check for a GPU machine: build, verify and time the TensorRT path; print one JSON line.

    benchmarks/device_check.sh [--model M.onnx] [--samples DIR] [--frames 1000] [--out DIR]

1. environment: cuda-python, the GPU (name, compute capability), TensorRT.
2. CUDA only (runs without TensorRT): the backend's own pinned/device buffers, two streams and
   events moving batch-32 frames host -> device -> host; bandwidth, and whether two streams overlap.
3. TensorRT: builds an FP16 and an FP32 engine of the model (default: the small synthetic model in
   build_engine/tiny.py, which needs no torch) with the builder's own functions, and measures each
   engine's max relative score deviation from onnxruntime FP32 on the sample images (no gate here:
   the numbers are the point; build-engine itself refuses engines over the tolerance).
4. The agent's TensorRT backend on the engine that passes the tolerance (FP16 if it does): 1,000
   frames at batch 1 (p50/p99 latency of a synchronous infer), and throughput at batch 8 and 32
   with submit/collect pipelining on two streams.

Whatever cannot run (no TensorRT, no GPU) is reported under "missing" and the rest still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"


def environment(report: dict) -> tuple:
    rt = gpu = trt = None
    try:
        from inspector.backends.tensorrt_backend import gpu_info, import_cudart

        rt = import_cudart()
        import cuda

        report["cuda_python"] = getattr(cuda, "__version__", None) or _pkg_version("cuda-python")
        report["cuda_runtime"] = rt.cudaRuntimeGetVersion()[1]
        report["cuda_driver"] = rt.cudaDriverGetVersion()[1]
        gpu = gpu_info(0)
        report["gpu"] = {"name": gpu.name, "compute_capability": gpu.compute_capability, "memory_mb": gpu.memory_mb}
    except Exception as exc:
        report["missing"].append(f"CUDA: {_err(exc)}")
    try:
        from inspector.backends.tensorrt_backend import import_tensorrt

        trt = import_tensorrt()
        report["tensorrt"] = trt.__version__
    except Exception as exc:
        report["missing"].append(f"TensorRT: {_err(exc)}")
    return rt, gpu, trt


def _pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def cuda_copies(report: dict, rt) -> None:
    """Batch-32 frames H2D + D2H through the backend's buffer classes, on one and on two streams."""
    import numpy as np

    from inspector.backends.tensorrt_backend import DeviceBuffer, PinnedArray, check

    shape = (32, 224, 224, 3)
    reps = 50
    bufs, streams, events = [], [], []
    try:
        for _ in range(2):
            h_in, h_out = PinnedArray(rt, shape, np.uint8), PinnedArray(rt, shape, np.uint8)
            d = DeviceBuffer(rt, h_in.nbytes)
            h_in.array[:] = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            bufs.append((h_in, h_out, d))
            streams.append(check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags"))
            events.append(check(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreateWithFlags"))
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost

        def run(n_streams: int) -> float:
            t0 = time.perf_counter()
            for i in range(reps):
                k = i % n_streams
                h_in, h_out, d = bufs[k]
                check(rt.cudaEventSynchronize(events[k]), "cudaEventSynchronize")
                check(rt.cudaMemcpyAsync(d.ptr, h_in.ptr, h_in.nbytes, h2d, streams[k]), "cudaMemcpyAsync")
                check(rt.cudaMemcpyAsync(h_out.ptr, d.ptr, h_in.nbytes, d2h, streams[k]), "cudaMemcpyAsync")
                check(rt.cudaEventRecord(events[k], streams[k]), "cudaEventRecord")
            for e in events:
                check(rt.cudaEventSynchronize(e), "cudaEventSynchronize")
            return time.perf_counter() - t0

        run(2)  # warm-up
        one, two = run(1), run(2)
        ok = all(np.array_equal(h_in.array, h_out.array) for h_in, h_out, _ in bufs)
        gb = reps * 2 * bufs[0][0].nbytes / 1e9
        report["cuda_copies"] = {"batch32_roundtrip_ok": ok, "GBps_one_stream": round(gb / one, 2),
                                 "GBps_two_streams": round(gb / two, 2)}
        report["ran"].append("cuda_copies")
    finally:
        for h_in, h_out, d in bufs:
            h_in.free(), h_out.free(), d.free()
        for e in events:
            rt.cudaEventDestroy(e)
        for s in streams:
            rt.cudaStreamDestroy(s)


def frames_for(samples: Path | None, meta, n: int):
    import numpy as np

    from build_engine import fp16

    if samples is not None:
        paths, images = fp16.load_samples(samples, meta, 64)
        src = f"{len(paths)} images from {samples}"
    else:
        images = np.random.default_rng(0).integers(0, 256, (32, meta.preprocess.crop_h, meta.preprocess.crop_w, 3), dtype=np.uint8)
        src = "32 random frames (no sample images found)"
    reps = -(-n // len(images))
    return images, np.concatenate([images] * reps)[:n], src


def tensorrt_checks(report: dict, args, trt, gpu) -> None:
    import numpy as np

    from build_engine import fp16
    from build_engine.builder import BuildOptions, build_engine_bytes, engine_graph, self_check
    from build_engine.plan import BatchRange, pack, write_atomic
    from build_engine.tiny import write_tiny
    from inspector.backends import open_backend

    out = Path(args.out)
    model_path = Path(args.model) if args.model else write_tiny(out / "tiny.onnx")
    model = fp16.load_model(model_path)
    meta = fp16.read_meta(model, str(model_path))
    samples = Path(args.samples) if args.samples else None
    images, frames, src = frames_for(samples, meta, args.frames)
    report["model"], report["samples"] = str(model_path), src
    pre = meta.preprocess
    batch = BatchRange(1, 8, 32)
    engines = {}
    for precision in ("fp16", "fp32"):
        opts = BuildOptions(precision=precision, batch=batch, timing_cache=out / "timing.cache")
        try:
            t0 = time.perf_counter()
            graph, _ = engine_graph(model, precision)
            engine = build_engine_bytes(trt, graph.SerializeToString(), opts, (pre.crop_h, pre.crop_w, 3), log=lambda m: None)
            build_s = time.perf_counter() - t0
            check = self_check(engine, meta, model, images)
            engines[precision] = (engine, check)
            report[f"build_{precision}_s"] = round(build_s, 1)
            report[f"max_rel_dev_{precision}"] = check["max_rel"]
            report[f"map_max_abs_{precision}"] = check["map_max_abs"]
            report["ran"].append(f"build_{precision}")
        except Exception as exc:
            report["errors"].append(f"build {precision}: {_err(exc)}")
    usable = [p for p in ("fp16", "fp32") if p in engines and engines[p][1]["max_rel"] <= args.tolerance]
    precision = usable[0] if usable else next(iter(engines), None)
    if precision is None:
        return
    engine, check = engines[precision]
    plan = write_atomic(out / f"model.{precision}.plan", pack(
        meta, engine, tensorrt=trt.__version__, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
        precision=precision, batch=batch, self_check=check))
    report["precision_timed"] = precision
    report["max_deviation"] = check["max_rel"]
    with open_backend(plan, streams=args.streams) as be:  # the agent's path: plan checks, then the backend
        be.infer(frames[:64])  # warm-up
        lat = []
        for i in range(len(frames)):
            t0 = time.perf_counter()
            be.infer(frames[i : i + 1])
            lat.append(time.perf_counter() - t0)
        lat = np.array(lat) * 1000
        report["batch1_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
        report["batch1_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
        for b in (8, 32):
            for mode in ("pipelined", "sync"):
                t0 = time.perf_counter()
                if mode == "sync":
                    for i in range(0, len(frames), b):
                        be.infer(frames[i : i + b])
                else:
                    pending = []
                    for i in range(0, len(frames), b):
                        pending.append(be.submit(frames[i : i + b]))
                        if len(pending) > args.streams:
                            be.collect(pending.pop(0))
                    for t in pending:
                        be.collect(t)
                fps = len(frames) / (time.perf_counter() - t0)
                key = f"batch{b}_fps" if mode == "pipelined" else f"batch{b}_sync_fps"
                report[key] = round(fps, 1)
        got, _ = be.infer(images)
    ref, _, _ = fp16.run_ort(model, images)
    report["backend_max_rel_dev"] = float(fp16.relative_deviation(ref, got).max())
    report["frames"] = int(len(frames))
    report["ran"].append("backend")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an inspector .onnx (default: the synthetic tiny model)")
    ap.add_argument("--samples", help="real images (MVTec category or folder); default ../shared/data/piped/PA_BDP01_TL if present")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument("--out", default=os.environ.get("OUT") or tempfile.mkdtemp(prefix="device_check_"))
    args = ap.parse_args()
    if args.samples is None:
        default = REPO.parent / "shared" / "data" / "piped" / "PA_BDP01_TL"
        args.samples = str(default) if default.is_dir() else None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    report: dict = {"check": "device_check/1", "ran": [], "missing": [], "errors": []}
    t0 = time.perf_counter()
    try:
        rt, gpu, trt = environment(report)
        if rt is not None and gpu is not None:
            try:
                cuda_copies(report, rt)
            except Exception as exc:
                report["errors"].append(f"cuda copies: {_err(exc)}")
        if trt is not None and gpu is not None:
            try:
                tensorrt_checks(report, args, trt, gpu)
            except Exception as exc:
                report["errors"].append(f"tensorrt: {_err(exc)}")
                traceback.print_exc(file=sys.stderr)
    except Exception as exc:  # an import missing on this machine (numpy, onnx, onnxruntime, cv2...)
        report["errors"].append(_err(exc))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, sort_keys=True))
    return 0 if "backend" in report["ran"] else (1 if not report["ran"] else 0)


if __name__ == "__main__":
    sys.exit(main())
