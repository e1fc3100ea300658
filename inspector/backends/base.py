"""The backend interface: a batch of preprocessed uint8 BGR crops in, scores and anomaly maps out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..modelmeta import ModelMeta

BACKENDS = ("auto", "onnxruntime", "tensorrt")


class Backend(ABC):
    name: str  # "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt"
    meta: ModelMeta
    path: Path

    @abstractmethod
    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images uint8 [N, crop_h, crop_w, 3] BGR -> (score float32 [N], anomaly_map float32 [N, h, w])."""

    def submit(self, images: np.ndarray) -> int:
        """Start a batch and return a ticket for collect(). Backends that overlap batches (TensorRT)
        override submit/collect; this default runs infer() at once."""
        ticket = self.__dict__.get("_next_ticket", 0)
        self._next_ticket = ticket + 1
        self.__dict__.setdefault("_results", {})[ticket] = self.infer(images)
        return ticket

    def collect(self, ticket: int) -> tuple[np.ndarray, np.ndarray]:
        """The (score, anomaly_map) of a submitted batch; collect in submission order for frame order."""
        try:
            return self.__dict__.get("_results", {}).pop(ticket)
        except KeyError:
            raise ModelError(f"{self.path}: no pending batch with ticket {ticket} (already collected?)") from None

    def close(self) -> None:
        """Release sessions, streams and buffers."""

    def check_input(self, images: np.ndarray) -> None:
        pre = self.meta.preprocess
        want = (pre.crop_h, pre.crop_w, 3)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
            raise ModelError(f"{self.path}: input must be uint8 [N, {want[0]}, {want[1]}, 3], got {images.dtype} {images.shape}")

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_backend(path: str | Path, backend: str = "auto", threads: int = 0, **options) -> Backend:
    """An .onnx file runs on onnxruntime, a .plan on TensorRT ("auto" picks by the file)."""
    path = Path(path)
    if backend not in BACKENDS:
        raise ModelError(f"backend: {backend!r} is not one of {BACKENDS}")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if backend == "auto":
        backend = "tensorrt" if path.suffix in (".plan", ".engine") else "onnxruntime"
    if backend == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, **options)
    if path.suffix in (".plan", ".engine"):
        raise ModelError(f"{path}: a TensorRT plan cannot run on onnxruntime; use --backend tensorrt or the .onnx model")
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads, **options)
