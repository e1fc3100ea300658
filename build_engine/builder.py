"""The TensorRT build: inspector ONNX -> (FP16 graph) -> strongly typed engine -> self-check -> .plan.

One path serves TensorRT 10 and 11. TensorRT 11 removed the precision builder flags (FP16, BF16,
INT8, OBEY/PREFER_PRECISION_CONSTRAINTS) and makes every network strongly typed, so precision
comes from the graph: --precision fp16 first writes a mixed-precision ONNX (fp16.py), and both
versions build it with NetworkDefinitionCreationFlag.STRONGLY_TYPED (required on 10.x, accepted and
ignored on 11.x). No precision flag is ever set; TF32 is cleared where the flag exists, so the
FP32 parts (the scoring head, or the whole graph with --precision fp32) really run in FP32.

The self-check runs the new engine on real sample images through the agent's own TensorRT backend
and compares its scores with onnxruntime running the original FP32 ONNX on the CPU; an engine that
deviates by more than the tolerance (default 1e-3 relative) is not written.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from inspector.errors import InspectorError, ModelError

from . import fp16
from .plan import PRECISIONS, BatchRange, pack, write_atomic

Log = Callable[[str], None]


class MissingToolError(InspectorError):
    """What a TensorRT build needs and this machine lacks (TensorRT, cuda-python, a GPU)."""


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    batch: BatchRange = BatchRange(1, 8, 32)
    workspace_mb: int | None = None  # None: TensorRT's default (the device's memory)
    timing_cache: Path | None = None
    samples: Path | None = None  # default: the training data folder recorded in the metadata
    max_samples: int = 32
    tolerance: float = fp16.TOLERANCE
    profiles: int = 1  # identical profiles: one per concurrently running execution context
    raw: bool = False  # write the bare engine instead of the .plan container
    device: int = 0

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise InspectorError(f"--precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise InspectorError(f"--workspace: {self.workspace_mb} MB must be a positive number of megabytes")
        if not 1 <= self.max_samples <= 4096:
            raise InspectorError(f"--max-samples: {self.max_samples} must be between 1 and 4096")
        if not 0 < self.tolerance < 1:
            raise InspectorError(f"--tolerance: {self.tolerance} must be a relative deviation between 0 and 1")
        if not 1 <= self.profiles <= 8:
            raise InspectorError(f"--profiles: {self.profiles} must be between 1 and 8")
        if self.samples is not None and not Path(self.samples).is_dir():
            raise InspectorError(f"--samples: {self.samples}: no such folder")
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise InspectorError(f"--timing-cache: {self.timing_cache} is a folder, not a file")


@dataclass
class BuildResult:
    output: Path
    precision: str
    engine_bytes: int
    self_check: dict[str, Any]
    seconds: float
    conversion: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# What the machine has


def environment() -> tuple[Any, Any, Any]:
    """(tensorrt, cuda runtime, GpuInfo) or one MissingToolError naming everything that is missing."""
    from inspector.backends.tensorrt_backend import CudaError, gpu_info, import_cudart, import_tensorrt

    problems, trt, rt, gpu = [], None, None, None
    try:
        trt = import_tensorrt()
    except ModelError:
        problems.append("TensorRT is not installed (Python package 'tensorrt'; NVIDIA's TensorRT container has it)")
    try:
        rt = import_cudart()
    except ModelError:
        problems.append("cuda-python is not installed (pip install cuda-python)")
    if rt is not None:
        try:
            gpu = gpu_info()
        except CudaError as exc:
            problems.append(f"no usable CUDA GPU ({exc})")
    if problems:
        raise MissingToolError("cannot build a TensorRT engine on this machine: " + "; ".join(problems)
                                + ". Build on the target GPU machine (plans are tied to its GPU and TensorRT version); "
                                "`build-engine fp16` writes the mixed-precision ONNX without a GPU")
    return trt, rt, gpu


# ---------------------------------------------------------------------------------------------


class _Logger:
    """A TensorRT logger that prints warnings and keeps the errors for the failure message."""

    def __init__(self, trt, log: Log):
        outer = self

        class L(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
                if level <= int(trt.ILogger.Severity.ERROR):
                    outer.errors.append(str(msg))
                if level <= int(trt.ILogger.Severity.WARNING):
                    log(f"[tensorrt] {msg}")

        self.errors: list[str] = []
        self.trt_logger = L()


def _network_flags(trt) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine_bytes(trt, onnx_bytes: bytes, opts: BuildOptions, input_shape: tuple[int, int, int], log: Log) -> bytes:
    """A serialized engine of a (typed) ONNX graph, with the profile, workspace and timing cache asked for."""
    logger = _Logger(trt, log)
    builder = trt.Builder(logger.trt_logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger.trt_logger)
    if not parser.parse(onnx_bytes):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError("TensorRT's ONNX parser rejected the model: " + " | ".join(errs[:5] or logger.errors[-3:]))
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: the scoring head is sensitive
    if opts.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    b = opts.batch
    for _ in range(opts.profiles):
        profile = builder.create_optimization_profile()
        profile.set_shape(_input_name(network), (b.min, *input_shape), (b.opt, *input_shape), (b.max, *input_shape))
        config.add_optimization_profile(profile)
    cache = None
    if opts.timing_cache is not None:
        path = Path(opts.timing_cache)
        data = path.read_bytes() if path.is_file() else b""
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"[build] timing cache {path} does not fit this TensorRT/GPU; starting a fresh one")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=True)
        else:
            log(f"[build] timing cache {path}: {'reused' if data else 'new'}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError("TensorRT could not build the engine: " + (" | ".join(logger.errors[-3:]) or "see the log above"))
    if cache is not None:
        write_atomic(opts.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _input_name(network) -> str:
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    if names != ["image"]:
        raise ModelError(f"the network's inputs are {names}, expected ['image']")
    return "image"


def self_check(engine: bytes, meta, reference_onnx: onnx.ModelProto, images: np.ndarray, device: int = 0,
               batch: BatchRange | None = None) -> dict[str, Any]:
    """The engine's scores on real images vs onnxruntime FP32 on the CPU, through the agent's backend."""
    from inspector.backends.tensorrt_backend import TensorRTBackend

    ref, ref_map, _ = fp16.run_ort(reference_onnx, images)
    cap = None if batch is None else max(batch.min, min(batch.max, len(images)))  # no 4096-frame buffers for 32 images
    with TensorRTBackend.from_engine(engine, meta, "self-check", device=device, max_batch=cap) as be:
        got, got_map = be.infer(images)
    rel = fp16.relative_deviation(ref, got)
    return {"images": int(len(images)), "max_rel": float(rel.max()), "mean_rel": float(rel.mean()),
            "map_max_abs": float(np.abs(got_map.astype(np.float64) - ref_map).max())}


def engine_graph(model: onnx.ModelProto, precision: str, source: str = "model") -> tuple[onnx.ModelProto, str]:
    """The graph TensorRT gets: uint8 cast at the input (TensorRT's UINT8 may only feed a Cast), then
    for fp16 the mixed-precision conversion. (graph, conversion summary)"""
    graph = fp16.cast_inputs_first(model)
    if precision == "fp16":
        conv = fp16.convert_fp16(graph, source=source)
        return conv.model, conv.summary()
    return graph, ""


def default_output(model: Path, raw: bool) -> Path:
    return model.with_suffix(".engine" if raw else ".plan")


def build(model_path: str | Path, output: str | Path | None = None, opts: BuildOptions = BuildOptions(),
          log: Log = lambda m: print(m, file=sys.stderr)) -> BuildResult:
    t0 = time.perf_counter()
    model_path = Path(model_path)
    opts.validate()
    model = fp16.load_model(model_path)
    meta = fp16.read_meta(model, str(model_path))
    out = Path(output) if output else default_output(model_path, opts.raw)
    trt, _, gpu = environment()  # after the cheap checks, before the slow ones
    samples = opts.samples
    if samples is None:
        recorded = (meta.training or {}).get("data")
        if recorded and Path(recorded).is_dir():
            samples = Path(recorded)
            log(f"[build] self-check images: {samples} (the training data recorded in the model)")
        else:
            raise InspectorError("--samples DIR is needed: real images of the product for the self-check "
                                 f"(the model's training data {recorded!r} is not on this machine)")
    paths, images = fp16.load_samples(samples, meta, opts.max_samples)
    log(f"[build] TensorRT {trt.__version__} on {gpu.name} (compute capability {gpu.compute_capability})")

    notes: list[str] = []
    if opts.precision == "fp16" and getattr(meta, "precision", "fp32") not in ("fp32", ""):
        raise InspectorError(f"{model_path}: the graph is already {meta.precision}; build it with --precision fp32 "
                             "(a strongly typed build runs it in the precision its graph holds)")
    graph, conversion = engine_graph(model, opts.precision, str(model_path))
    if opts.precision == "fp16":
        log(f"[build] {conversion}")
        meta = fp16.read_meta(graph, str(model_path))  # its metadata says precision fp16
        # Cheap early refusal: onnxruntime's CPU run of the mixed graph is a lower bound of the GPU's deviation.
        ref, _, _ = fp16.run_ort(model, images)
        low, _, _ = fp16.run_ort(graph, images)
        cpu_rel = float(fp16.relative_deviation(ref, low).max())
        log(f"[build] FP16 graph on the CPU: max relative score deviation {cpu_rel:.2e} on {len(images)} images")
        if cpu_rel > opts.tolerance:
            raise ModelError(f"{model_path}: the FP16 graph already deviates {cpu_rel:.2e} relative from FP32 on the CPU "
                             f"({len(images)} images from {samples}), over the tolerance {opts.tolerance:.0e}; no engine "
                             "written. Build with --precision fp32, or accept more with --tolerance")
    pre = meta.preprocess
    log(f"[build] building ({opts.precision}, batch {opts.batch}, {opts.profiles} profile(s)); this takes a while")
    engine = build_engine_bytes(trt, graph.SerializeToString(), opts, (pre.crop_h, pre.crop_w, 3), log)
    check = self_check(engine, meta, model, images, opts.device, opts.batch)
    check.update({"tolerance": opts.tolerance, "samples": str(samples), "reference": "onnxruntime CPU FP32"})
    log(f"[build] self-check on {check['images']} images: max relative score deviation {check['max_rel']:.2e} "
        f"(anomaly map max abs {check['map_max_abs']:.2e})")
    if not check["max_rel"] <= opts.tolerance:
        raise ModelError(f"{model_path}: self-check failed: the engine's scores deviate up to {check['max_rel']:.2e} "
                         f"relative from onnxruntime FP32 on {check['images']} images (tolerance {opts.tolerance:.0e}); "
                         "no engine written")
    if opts.raw:
        write_atomic(out, engine)
        notes.append("raw engine: no model metadata; the agent needs the .plan")
    else:
        source = {"onnx": model_path.name, "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(), "conversion": conversion}
        write_atomic(out, pack(meta, engine, tensorrt=trt.__version__, gpu_name=gpu.name,
                               compute_capability=gpu.compute_capability, precision=opts.precision, batch=opts.batch,
                               profiles=opts.profiles, self_check=check, source=source))
    return BuildResult(out, opts.precision, len(engine), check, time.perf_counter() - t0, conversion, notes)
