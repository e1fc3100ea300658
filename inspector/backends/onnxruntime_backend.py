"""onnxruntime backend: CPU everywhere, the CUDA provider where onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError
from ..modelmeta import META_KEY, ModelMeta
from .base import Backend


def read_onnx_meta(session: ort.InferenceSession, path: Path) -> ModelMeta:
    props = session.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise ModelError(f"{path}: not an inspector model (no {META_KEY!r} metadata); export it with `inspector train`")
    return ModelMeta.from_json(props[META_KEY], str(path))


def check_io(session: ort.InferenceSession, meta: ModelMeta, path: Path) -> None:
    ins = {i.name: i for i in session.get_inputs()}
    outs = {o.name: o for o in session.get_outputs()}
    img = ins.get("image")
    if img is None or img.type != "tensor(uint8)" or len(img.shape) != 4:
        raise ModelError(f"{path}: expected a uint8 [N, H, W, 3] input named 'image'")
    want = [meta.preprocess.crop_h, meta.preprocess.crop_w, 3]
    if list(img.shape[1:]) != want:
        raise ModelError(f"{path}: input is {img.shape[1:]} but its metadata says {want}")
    missing = {"score", "anomaly_map"} - set(outs)
    if missing:
        raise ModelError(f"{path}: missing outputs {sorted(missing)}")


GRAPH_OPT = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class OrtOptions:
    """Session settings (docs/bench.md measures each one). The defaults are the measured best for
    batch-1 latency on a small CPU; precision is not here: it is the model file's (metadata `precision`)."""

    intra_op_threads: int = 0  # 0 = all cores
    inter_op_threads: int = 0  # 0 = onnxruntime's default; only used with execution_mode "parallel"
    allow_spinning: bool = False  # spin between ops ("session.intra_op.allow_spinning"): off measured faster here, 2x under load
    execution_mode: str = "sequential"  # | "parallel" (independent branches concurrently)
    graph_optimization: str = "all"  # disable | basic | extended | all (all adds the NCHWc layout on x86)

    def session_options(self) -> ort.SessionOptions:
        if self.graph_optimization not in GRAPH_OPT:
            raise ModelError(f"graph_optimization: {self.graph_optimization!r} is not one of {sorted(GRAPH_OPT)}")
        if self.execution_mode not in ("sequential", "parallel"):
            raise ModelError(f"execution_mode: {self.execution_mode!r} is not sequential or parallel")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[self.graph_optimization])
        opts.intra_op_num_threads = self.intra_op_threads or (os.cpu_count() or 1)
        if self.inter_op_threads:
            opts.inter_op_num_threads = self.inter_op_threads
        opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                               else ort.ExecutionMode.ORT_SEQUENTIAL)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        opts.log_severity_level = 3
        return opts


class OnnxRuntimeBackend(Backend):
    def __init__(self, path: str | Path, threads: int = 0, device: str = "auto", options: OrtOptions | None = None):
        self.path = Path(path)
        self.options = options or OrtOptions()
        if threads:  # the agent's --threads
            self.options = dataclasses.replace(self.options, intra_op_threads=threads)
        opts = self.options.session_options()
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise ModelError(f"{self.path}: the CUDA provider is not available (install onnxruntime-gpu on a GPU machine)")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None
        self.meta = read_onnx_meta(self.session, self.path)
        check_io(self.session, self.meta, self.path)
        self.name = "onnxruntime-cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "onnxruntime-cpu"

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.check_input(images)
        score, amap = self.session.run(["score", "anomaly_map"], {"image": images})
        return score, amap
