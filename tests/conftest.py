"""Shared fixtures: the real data in ../shared/data and one small model trained on it, once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("INSPECTOR_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INSPECTOR_DATA", REPO.parent / "shared" / "data")).resolve()
PIPED = DATA / "piped" / "PA_BDP01_TL"
MAGNETIC = DATA / "magnetic_tile"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set INSPECTOR_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def piped() -> Path:
    return need(PIPED)


@pytest.fixture(scope="session")
def magnetic() -> Path:
    return need(MAGNETIC)


@pytest.fixture(scope="session")
def trained(piped, tmp_path_factory):
    """A real CSE model: lite0, 2 epochs on one PIPED class, exported to ONNX. (TrainResult, onnx path)."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from trainer.config import TrainConfig
    from trainer.export import export_onnx
    from trainer.train import train

    result = train(piped, TrainConfig(backbone="efficientnet_lite0", epochs=2, seed=0), log=lambda m: None)
    path = export_onnx(result.model, result.meta, tmp_path_factory.mktemp("model") / "piped.onnx")
    return result, path


@pytest.fixture(scope="session")
def model_path(trained) -> Path:
    return trained[1]


@pytest.fixture(scope="session")
def tensorrt_gpu():
    """Real TensorRT and a real CUDA GPU, or a skip naming what is missing. (tensorrt, cuda runtime, GpuInfo)."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (Python package 'tensorrt')")
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        pytest.skip(f"no CUDA GPU: cuda-python is not installed (module cuda.bindings.runtime: {exc})")
    from inspector.backends.tensorrt_backend import CudaError, gpu_info

    try:
        gpu = gpu_info()
    except CudaError as exc:
        pytest.skip(f"no CUDA GPU: {exc}")
    return trt, runtime, gpu
