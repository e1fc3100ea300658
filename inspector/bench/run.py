"""`inspector bench`: every backend this machine has, timed on one model, beside the paper's figures.

For each backend: latency percentiles at batch 1, throughput at each batch size; then the host
preprocessing cost per frame, and the agent end to end on a folder (inspector.bench.e2e).
Backends: onnxruntime CPU (always), onnxruntime CUDA (onnxruntime-gpu and a GPU), TensorRT (an
--engine plan and the tensorrt package), PyTorch eager CPU/CUDA (the train extra: torch, timm;
an untrained InferenceModel of the same backbone and head, see trainer.torch_eager).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import InspectorError, ModelError
from ..images import read_image
from ..modelmeta import ModelMeta
from ..preprocess import prepare
from .hardware import hardware, load_average
from .timing import repeat, summarize

SCHEMA = "inspector.bench/1"

# ../shared/docs/cse-method.md, the paper's inference table (RTX 3090 Ti; the reference code times
# without CUDA synchronisation, so its own figure is likely optimistic).
PAPER = {
    "hardware": "NVIDIA RTX 3090 Ti (paper, Table 3)",
    "rows": [
        {"method": "CSE", "backbone": "EfficientNet-B3", "latency_ms": 18.0, "fps": 56.0},
        {"method": "PatchCore", "backbone": "WRN50", "latency_ms": 172.0},
        {"method": "FastFlow", "backbone": "WRN50", "latency_ms": 45.9},
        {"method": "Reverse Distillation", "backbone": "WRN50", "latency_ms": 30.0},
        {"method": "Reverse Distillation", "backbone": "ResNet18", "latency_ms": 16.0},
    ],
}
TARGET_MS = 18.0


@dataclass
class BenchConfig:
    model: Path | None = None
    engine: Path | None = None
    batches: tuple[int, ...] = (1, 8, 32)
    seconds: float = 3.0  # per measurement (batch-1 latency, each batch size's throughput)
    warmup_s: float = 0.5
    folder: Path | None = None
    seed: int = 0
    backends: tuple[str, ...] | None = None  # only these (names or prefixes, e.g. "onnxruntime"); None = all
    torch: bool = True  # include PyTorch eager when the train extra is installed
    threads: int = 0  # CPU threads for onnxruntime and torch; 0 = all cores
    e2e_frames: int | None = 200  # frames of --folder through the agent (None = all)
    preprocess_frames: int = 64
    notes: list[str] = field(default_factory=list)


@dataclass
class Candidate:
    name: str
    open: Callable[[], object]  # -> an object with .infer(images) (and .close())
    precision: str
    options: dict


def _wanted(cfg: BenchConfig, name: str) -> bool:
    return cfg.backends is None or any(name == b or name.startswith(b) for b in cfg.backends)


def candidates(cfg: BenchConfig, meta: ModelMeta, log) -> list[Candidate]:
    out: list[Candidate] = []
    if cfg.model is not None:
        import onnxruntime as ort

        from ..backends.onnxruntime_backend import OnnxRuntimeBackend, OrtOptions

        opts = OrtOptions(intra_op_threads=cfg.threads)
        out.append(Candidate("onnxruntime-cpu", lambda: OnnxRuntimeBackend(cfg.model, device="cpu", options=opts),
                             meta.precision, {**opts.__dict__, "intra_op_threads": opts.intra_op_threads or os.cpu_count()}))
        if "CUDAExecutionProvider" in ort.get_available_providers():
            out.append(Candidate("onnxruntime-cuda", lambda: OnnxRuntimeBackend(cfg.model, device="cuda", options=opts),
                                 meta.precision, {}))
        else:
            cfg.notes.append("onnxruntime-cuda: not available (needs onnxruntime-gpu and an NVIDIA GPU)")
    if cfg.engine is not None:
        def open_trt():
            from ..backends import open_backend

            try:
                return open_backend(cfg.engine, "tensorrt")
            except ImportError as exc:
                raise ModelError(f"{cfg.engine}: TensorRT is not usable here ({exc.name or exc} missing)") from None

        out.append(Candidate("tensorrt", open_trt, meta.precision, {}))
    elif importlib.util.find_spec("tensorrt") is not None:
        cfg.notes.append("tensorrt: installed; pass --engine FILE.plan (build-engine) to time it")
    else:
        cfg.notes.append("tensorrt: not installed (needs an NVIDIA GPU and the tensorrt package)")
    if cfg.torch:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("timm") is None:
            cfg.notes.append("pytorch-eager: the train extra (torch, timm) is not installed")
        else:
            import trainer.torch_eager as eager  # lives in the train extra, outside the runtime package

            shapes = eager.onnx_shapes(cfg.model) if cfg.model is not None and meta.head != "cse" else {}
            out.append(Candidate("pytorch-eager-cpu", lambda: eager.TorchEager(meta, "cpu", cfg.threads, cfg.seed, shapes),
                                 "fp32", {"threads": cfg.threads or os.cpu_count(), "weights": "untrained (timing only)",
                                          "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}))
            if eager.cuda_available():
                out.append(Candidate("pytorch-eager-cuda", lambda: eager.TorchEager(meta, "cuda", 0, cfg.seed, shapes),
                                     "fp32", {"weights": "untrained (timing only)"}))
    return [c for c in out if _wanted(cfg, c.name)]


def read_meta(cfg: BenchConfig) -> ModelMeta:
    from ..backends import open_backend

    if cfg.model is None and cfg.engine is None:
        raise InspectorError("give --model FILE.onnx or --engine FILE.plan (or both)")
    if cfg.model is not None:
        if cfg.model.suffix in (".plan", ".engine"):
            raise InspectorError(f"--model {cfg.model}: a TensorRT plan; pass it as --engine")
        with open_backend(cfg.model, "onnxruntime") as be:
            return be.meta
    with open_backend(cfg.engine, "tensorrt") as be:
        return be.meta


def time_backend(be, cand: Candidate, cfg: BenchConfig, meta: ModelMeta, rng: np.random.Generator, log) -> dict:
    pre = meta.preprocess
    big = rng.integers(0, 256, size=(max(cfg.batches), pre.crop_h, pre.crop_w, 3), dtype=np.uint8)
    header = getattr(be, "header", None)  # a TensorRT plan's own record of its precision
    precision = getattr(header, "precision", None) or cand.precision
    row: dict = {"backend": getattr(be, "name", cand.name), "precision": precision, "options": cand.options}
    one = np.ascontiguousarray(big[:1])
    ms = repeat(lambda: be.infer(one), cfg.seconds, min_iters=5, warmup_iters=3, warmup_s=cfg.warmup_s)
    row["latency_ms"] = {"batch": 1, **summarize(ms)}
    log(f"[bench] {cand.name}: batch 1 p50 {row['latency_ms']['p50']:.2f} ms "
        f"p90 {row['latency_ms']['p90']:.2f} p99 {row['latency_ms']['p99']:.2f} ({len(ms)} runs)")
    row["throughput"] = []
    for b in cfg.batches:
        x = np.ascontiguousarray(big[:b])
        ms = ms if b == 1 else repeat(lambda: be.infer(x), cfg.seconds, min_iters=3, warmup_iters=2)
        s = summarize(ms)
        fps = b * len(ms) / (sum(ms) / 1e3)
        row["throughput"].append({"batch": b, "fps": round(fps, 2), "ms_per_batch": s, "ms_per_frame": round(1e3 / fps, 3)})
        log(f"[bench] {cand.name}: batch {b}: {fps:.1f} frames/s ({s['p50']:.1f} ms per batch)")
    return row


def preprocess_cost(cfg: BenchConfig, meta: ModelMeta, rng: np.random.Generator) -> dict:
    """Host cost per frame, one thread: read + decode (read_image), resize + centre crop (prepare)."""
    pre = meta.preprocess
    tmp = None
    if cfg.folder is not None:
        from ..dataset import list_images

        files = list_images(cfg.folder)[: cfg.preprocess_frames]
        if not files:
            raise InspectorError(f"--folder {cfg.folder}: no images in it")
        source = str(cfg.folder)
    else:  # seeded synthetic frames, PNG-encoded, so decoding is part of the figure too
        tmp = tempfile.TemporaryDirectory(prefix="inspector-bench-")
        files = []
        for i in range(8):
            img = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
            files.append(Path(tmp.name) / f"frame{i}.png")
            cv2.imwrite(str(files[-1]), img)
        source = "synthetic 640x480 PNG (seeded)"
    read_ms, prep_ms, sizes = [], [], set()
    try:
        for _ in range(2):  # warm the file cache and OpenCV
            for f in files[:4]:
                prepare(read_image(f), pre)
        t_stop = time.perf_counter() + max(cfg.seconds, 0.05)
        i = 0
        while i < len(files) or time.perf_counter() < t_stop:
            f = files[i % len(files)]
            t0 = time.perf_counter()
            img = read_image(f)
            t1 = time.perf_counter()
            prepare(img, pre)
            t2 = time.perf_counter()
            read_ms.append((t1 - t0) * 1e3)
            prep_ms.append((t2 - t1) * 1e3)
            sizes.add(f"{img.shape[1]}x{img.shape[0]}")
            i += 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    total = np.add(read_ms, prep_ms)
    return {"source": source, "files": len(files), "frame_sizes": sorted(sizes)[:8], "threads": 1,
            "steps": f"read_image (decode to BGR) + prepare (resize {pre.resize_w}x{pre.resize_h} {pre.interpolation}, "
                     f"crop {pre.crop_w}x{pre.crop_h})",
            "read_ms": summarize(read_ms), "resize_crop_ms": summarize(prep_ms), "total_ms": summarize(total)}


def run_bench(cfg: BenchConfig, log=print) -> dict:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (PyTorch eager)
    if any(b < 1 for b in cfg.batches) or not cfg.batches:
        raise InspectorError("--batch: batch sizes must be integers >= 1, e.g. 1,8,32")
    if cfg.seconds <= 0:
        raise InspectorError("--seconds: must be > 0")
    if cfg.folder is not None and not cfg.folder.is_dir():
        raise InspectorError(f"--folder {cfg.folder}: not a folder")
    cfg.batches = tuple(sorted(set(cfg.batches) | {1}))
    meta = read_meta(cfg)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = load_average()
    hw = hardware()
    log(f"[bench] {meta.model_id}: {meta.backbone}, {meta.head} head, {meta.precision}, "
        f"{meta.preprocess.crop_w}x{meta.preprocess.crop_h}; load average {load_before}")
    out: dict = {
        "schema": SCHEMA, "started": started,
        "model": {"file": str(cfg.model) if cfg.model else None, "engine": str(cfg.engine) if cfg.engine else None,
                  "model_id": meta.model_id, "backbone": meta.backbone, "head": meta.head, "precision": meta.precision,
                  "input": [meta.preprocess.crop_h, meta.preprocess.crop_w, 3], "weights_id": meta.weights_id},
        "settings": {"batches": list(cfg.batches), "seconds": cfg.seconds, "warmup_s": cfg.warmup_s, "seed": cfg.seed,
                     "threads": cfg.threads or os.cpu_count(), "input": "seeded uniform random uint8 crops",
                     "sync": "each call returns host arrays (onnxruntime/TensorRT copy outputs back before returning; "
                             "PyTorch CUDA: torch.cuda.synchronize) before the clock is read",
                     "warmup": f"3 calls and at least {cfg.warmup_s} s before batch 1; 2 calls before each batch size"},
        "hardware": hw,
        "load_average": {"before": load_before},
        "backends": [],
        "errors": {},
        "paper": PAPER,
        "target_ms": TARGET_MS,
    }
    rng = np.random.default_rng(cfg.seed)
    for cand in candidates(cfg, meta, log):
        log(f"[bench] {cand.name}: opening")
        try:
            be = cand.open()
        except Exception as exc:  # a backend that cannot start here is reported, not fatal
            out["errors"][cand.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            log(f"[bench] {cand.name}: skipped ({out['errors'][cand.name]})")
            continue
        try:
            out["backends"].append(time_backend(be, cand, cfg, meta, np.random.default_rng(cfg.seed), log))
            if hasattr(be, "versions"):
                out["backends"][-1]["versions"] = be.versions
        finally:
            be.close()
    if not out["backends"]:
        raise InspectorError("no backend could run here: " + "; ".join(f"{k}: {v}" for k, v in out["errors"].items()))
    out["preprocess"] = preprocess_cost(cfg, meta, rng)
    log(f"[bench] host preprocessing: {out['preprocess']['total_ms']['p50']:.2f} ms per frame "
        f"(read {out['preprocess']['read_ms']['p50']:.2f} + resize/crop {out['preprocess']['resize_crop_ms']['p50']:.2f})")
    if cfg.folder is not None:
        from .e2e import run_folder

        out["end_to_end"] = {}
        period = 0.0
        for mode in ("throughput", "latency"):
            if mode == "latency":  # frames twice as far apart as the sustained rate allows: each finds the station idle
                fps = out["end_to_end"].get("throughput", {}).get("throughput_fps")
                period = round(2e3 / fps, 1) if fps else 2 * max(r["latency_ms"]["p50"] for r in out["backends"])
            log(f"[bench] end to end ({mode}): {cfg.folder} through the agent to a ZeroMQ subscriber")
            try:
                use_engine = cfg.engine is not None and (cfg.model is None or any(b["backend"] == "tensorrt" for b in out["backends"]))
                r = run_folder(cfg.folder, None if use_engine else cfg.model, cfg.engine if use_engine else None,
                               max_frames=cfg.e2e_frames, mode=mode, threads=cfg.threads, period_ms=period)
            except Exception as exc:
                out["errors"][f"end_to_end_{mode}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                log(f"[bench] end to end ({mode}) failed: {out['errors'][f'end_to_end_{mode}']}")
                continue
            out["end_to_end"][mode] = r
            log(f"[bench] end to end ({mode}): {r['frames']} frames, {r['throughput_fps']:.1f} frames/s, "
                f"latency p50 {r['latency_ms']['p50']:.1f} ms p99 {r['latency_ms']['p99']:.1f} ms")
    else:
        cfg.notes.append("end to end: pass --folder DIR to run the agent on a folder of frames")
    out["load_average"]["after"] = load_average()
    out["notes"] = cfg.notes
    out["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return out
